"""`make bench-dataplane`: blixt's dataplane against two baselines, measured
in one run on one machine, and the time to program a large table.

Paths, each from the client namespace to the same pod through the node:
  direct   the pod's own address (veth + forwarding, no NAT)
  nft      a VIP translated by one nftables DNAT rule
  blixt    a VIP marked by blixt's TCX program, translated by its nft map
Workloads (tests/bench/rrbench.c): TCP_RR (1-byte transactions on one
connection) and TCP_CRR (a connection per transaction). Each figure is the
median of ROUNDS runs, the paths interleaved within each round so drift hits
them alike. Ratios are blixt / baseline; higher is better.

Then: programming 10,000 services x 10 backends (100,000 distinct endpoints)
into the maps and the nft map from empty, re-applying it unchanged, and
changing one backend in 1,000 services.
"""

from __future__ import annotations

import argparse
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from harness import paths  # noqa: E402
from harness.bpfman import BpfmanServer  # noqa: E402
from harness.netns import Topology  # noqa: E402

from blixt.bpfman import client as bc  # noqa: E402
from blixt.node import bpf  # noqa: E402
from blixt.node.manager import Attachment, Manager, Settings  # noqa: E402
from blixt.dataplane.marks import MarkConfig  # noqa: E402
from blixt.dataplane.model import Backend, Dataplane, Service  # noqa: E402

PORT = 7000
NFT_VIP = "198.18.100.20"
BLIXT_VIP = "198.18.100.10"
RRBENCH = paths.BUILD / "rrbench"
# 20 id bits: 100,000 endpoints do not fit the default 16.
WIDE_MARKS = MarkConfig(id_shift=8, id_mask=0x0FFFFF00, masq_mark=0x10000000, reject_mark=0x20000000)


def rate(topo: Topology, mode: str, addr: str, seconds: float) -> float:
    out = topo.client.exec(str(RRBENCH), mode, addr, str(PORT), str(seconds), timeout=seconds + 30).stdout
    fields = dict(kv.split("=") for kv in out.split())
    return float(fields["rate"])


def traffic(bpfman: bc.BpfmanClient, rounds: int, seconds: float) -> None:
    topo = Topology(pods=1, name="bench")
    server = None
    manager = None
    try:
        pod = topo.pods[0]
        topo.client.exec("ip", "route", "add", "198.18.100.0/24", "via", topo.node.address)
        # The CRR client closes first (as netperf's does) and reuses ports in
        # TIME_WAIT; otherwise runs slow down as TIME_WAIT piles up, whatever the path.
        topo.client.exec("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
        server = pod.popen(str(RRBENCH), "serve", str(PORT), stdout=subprocess.PIPE, text=True)
        assert server.stdout.readline().strip() == "ready"
        topo.node.exec("nft", "-f", "-", input=(
            "add table ip bench_dnat\n"
            "add chain ip bench_dnat pre { type nat hook prerouting priority dstnat; }\n"
            f"add rule ip bench_dnat pre ip daddr {NFT_VIP} tcp dport {PORT} dnat to {pod.address}:{PORT}\n"))
        manager = Manager(bpfman, Settings(node="bench", bytecode=bc.File(str(paths.BYTECODE_OBJECT)),
                                           attachments=(Attachment("eth-client"),), mode="tcx",
                                           netns=topo.node.netns))
        manager.ensure_loaded()
        manager.apply(Dataplane.of([Service(BLIXT_VIP, PORT, "tcp", (Backend(pod.address, PORT),))]))

        targets = {"direct": pod.address, "nft": NFT_VIP, "blixt": BLIXT_VIP}
        results = {(m, p): [] for m in ("rr", "crr") for p in targets}
        for r in range(rounds):
            for mode in ("rr", "crr"):
                for path, addr in targets.items():
                    results[(mode, path)].append(rate(topo, mode, addr, seconds))
            print(f"round {r + 1}/{rounds} done", file=sys.stderr)

        med = {k: statistics.median(v) for k, v in results.items()}
        print(f"\nTCP request/response, {rounds} rounds x {seconds:g} s, median transactions/s")
        print(f"{'workload':10}{'direct':>12}{'nft DNAT':>12}{'blixt':>12}{'vs nft':>10}{'vs direct':>11}")
        for mode, name in (("rr", "TCP_RR"), ("crr", "TCP_CRR")):
            d, n, b = med[(mode, "direct")], med[(mode, "nft")], med[(mode, "blixt")]
            print(f"{name:10}{d:12.0f}{n:12.0f}{b:12.0f}{b / n:10.2f}x{b / d:10.2f}x")
    finally:
        if manager is not None:
            manager.remove()
        if server is not None:
            server.kill()
            server.wait()
        topo.close()


def programming(bpfman: bc.BpfmanClient, services: int, backends: int) -> None:
    topo = Topology(pods=0, name="prog")
    manager = None
    try:
        manager = Manager(bpfman, Settings(node="bench-programming", bytecode=bc.File(str(paths.BYTECODE_OBJECT)),
                                           attachments=(Attachment("eth-client"),), mode="tcx",
                                           netns=topo.node.netns, marks=WIDE_MARKS))
        manager.ensure_loaded()
        empty_memlock = {name: m.memlock() for name, m in manager.maps.items()}

        def build(changed: int = 0) -> Dataplane:
            out = []
            for s in range(services):
                base = s * backends
                bes = [Backend(f"10.{(base + b) >> 16 & 255}.{(base + b) >> 8 & 255}.{(base + b) & 255}", 8080)
                       for b in range(backends)]
                if s < changed:
                    bes[0] = Backend(f"11.{s >> 8 & 255}.{s & 255}.1", 8080)
                out.append(Service(f"172.{16 + (s >> 16)}.{s >> 8 & 255}.{s & 255}", 80, "tcp", tuple(bes)))
            return Dataplane.of(out)

        t0 = time.monotonic()
        full = build()
        t_build = time.monotonic() - t0
        t0 = time.monotonic()
        plan = manager.apply(full)
        t_fill = time.monotonic() - t0
        full_memlock = {name: m.memlock() for name, m in manager.maps.items()}
        t0 = time.monotonic()
        again = manager.apply(full)
        t_same = time.monotonic() - t0
        churned = build(changed=1000)
        t0 = time.monotonic()
        churn = manager.apply(churned)
        t_churn = time.monotonic() - t0
        assert not again.nft_put and not again.slots_put
        print(f"\nProgramming {services:,} services x {backends} backends")
        print(f"  building the desired value (Python objects)     {t_build:7.2f} s")
        print(f"  apply from empty ({plan.summary()})")
        print(f"                                                   {t_fill:7.2f} s")
        print(f"  apply unchanged (plans against the kept state)   {t_same:7.2f} s")
        print(f"  one backend changed in 1,000 services ({churn.summary()})")
        print(f"                                                   {t_churn:7.2f} s")
        print(f"\nMap memory (fdinfo memlock, {bpf.num_possible_cpus()} possible CPUs)")
        print(f"  {'map':20}{'empty':>12}{f'{services:,} x {backends}':>16}")
        for name in empty_memlock:
            print(f"  {name:20}{empty_memlock[name] / 2**20:10.2f} MB{full_memlock[name] / 2**20:14.2f} MB")
        print(f"  {'total':20}{sum(empty_memlock.values()) / 2**20:10.2f} MB"
              f"{sum(full_memlock.values()) / 2**20:14.2f} MB")
    finally:
        if manager is not None:
            manager.remove()
        topo.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--services", type=int, default=10_000)
    parser.add_argument("--backends", type=int, default=10)
    parser.add_argument("--only", choices=("traffic", "programming"), help="run one part")
    args = parser.parse_args()
    paths.require_file(RRBENCH, "rrbench (make build/rrbench)")
    paths.require_file(paths.BYTECODE_OBJECT, "the compiled object (make bytecode)")
    with tempfile.TemporaryDirectory(prefix="blixt-bench-") as tmp:
        server = BpfmanServer(pathlib.Path(tmp) / "bpfman")
        try:
            with server.client() as client:
                if args.only != "programming":
                    traffic(client, args.rounds, args.seconds)
                if args.only != "traffic":
                    programming(client, args.services, args.backends)
        finally:
            server.stop()


if __name__ == "__main__":
    main()
