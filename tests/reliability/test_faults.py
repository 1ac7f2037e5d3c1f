"""Faults while traffic flows, with real components (harness.blixt.Node:
kube-apiserver, bpfman-rpc, blixt's controller and agent as processes, netns
pods): an established TCP connection and a UDP flow are counted through the
fault, and nothing established may drop."""

from __future__ import annotations

import collections
import ctypes
import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import threading
import time
import urllib.parse

import killed_apply
import pytest

from blixt.dataplane.plan import plan
from harness import bpftest, paths
from harness import packets as P
from harness.blixt import running
from harness.forward import CuttableProxy
from harness.scenario import Scenario

PORT = 9000


def hold(blixt, addr: str, seconds: float, udp: bool = False) -> subprocess.Popen:
    """A flow held from the client namespace; returns once it is established."""
    proc = blixt.topo.client.popen(
        sys.executable, "-m", "harness.traffic", "hold", addr, str(PORT), "--seconds", str(seconds),
        *(["--udp"] if udp else []),
        cwd=str(paths.REPO / "tests"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().strip()
    if line != "connected":
        proc.kill()
        raise AssertionError(f"held {'UDP' if udp else 'TCP'} flow did not start: {line} {proc.stderr.read()}")
    return proc


def held(proc: subprocess.Popen) -> dict:
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    return json.loads(out)


def test_bpfman_restart_drops_no_flow_and_leaves_one_program(blixt, bpfman, bpfman_server):
    """bpfman-rpc SIGKILLed and back 3 s later: the pinned maps and the
    attached program outlive it, so held TCP and UDP flows see every answer
    from their pod; bpfman lists the same one program afterwards, and an
    agent restarted against it adopts that program; the agent keeps
    programming (a later EndpointSlice change moves new flows)."""
    sc = Scenario(blixt, "bpfman-restart")
    ns, addr = sc.serving_gateway(pods=(0,), protocols=("TCP", "UDP"))
    mine = {"blixt.io/node": blixt.name}
    before = sorted(p.id for p in bpfman.list(match_metadata=mine))
    assert len(before) == 1
    tcp, udp = hold(blixt, addr, 8), hold(blixt, addr, 8, udp=True)
    try:
        time.sleep(1)
        old_pid = bpfman_server.proc.popen.pid
        bpfman_server.restart(down=3)
        assert bpfman_server.proc.popen.pid != old_pid
        t, u = held(tcp), held(udp)
    finally:
        tcp.kill()
        udp.kill()
    assert not t["errors"] and len(t["answers"]) > 40 and {a.split()[0] for a in t["answers"]} == {"pod0"}, t
    assert not u["errors"] and len(u["answers"]) > 40 and {a.split()[0] for a in u["answers"]} == {"pod0"}, u
    with bpfman_server.client() as c:
        after = sorted(p.id for p in c.list(match_metadata=mine))
    assert after == before, "bpfman lists other programs for the node after its restart"
    # An agent started against the restarted bpfman adopts that program.
    blixt.stop_agent(kill=True)
    blixt.start_agent()
    with bpfman_server.client() as c:
        assert sorted(p.id for p in c.list(match_metadata=mine)) == before
    assert "adopted loaded programs" in blixt.agent.log.read_text()
    # The agent still programs the node: new flows follow an EndpointSlice change.
    for p in ("tcp", "udp"):
        blixt.write_endpoints(ns, f"svc-{p}", [1], ports=[("p", p.upper(), 8080)])
    sc.wait_traffic("TCP", addr, PORT, {"pod1"})
    sc.wait_traffic("UDP", addr, PORT, {"pod1"})
    assert blixt.agent.alive(), blixt.agent.describe_exit()


# -- kube-apiserver out of reach ------------------------------------------------

OUTAGE = 60.0 if os.environ.get("BLIXT_SOAK") == "1" else 15.0


def test_apiserver_out_of_reach_keeps_the_dataplane_and_resyncs(kube, bpfman, bpfman_server, bytecode_image,
                                                              workdir):
    """blixt's controller and agent reach kube-apiserver through a forwarder
    that the test cuts for OUTAGE seconds (15, 60 under BLIXT_SOAK): held TCP
    and UDP flows keep every answer, new connections keep working, and the
    changes made meanwhile (an EndpointSlice moved, a new route) are applied
    after it by the same processes (no restart), statuses included."""
    server = urllib.parse.urlsplit(kube.server)
    proxy = CuttableProxy((server.hostname, server.port))
    kubeconfig = workdir / "through-proxy.kubeconfig"
    kubeconfig.write_text(kube.kubeconfig.read_text().replace(kube.server, f"https://127.0.0.1:{proxy.port}"))
    try:
        with running(kube, bpfman_server.socket, bytecode_image, workdir / "e2e-apiserver-outage",
                     kubeconfig=kubeconfig) as blixt:
            sc = Scenario(blixt, "outage")
            ns, addr = sc.serving_gateway(pods=(0,), protocols=("TCP", "UDP"))
            pids = (blixt.controller.popen.pid, blixt.agent.popen.pid)
            # Flows held through the outage (they end before it does: once blixt
            # sees the moved endpoints, it rightly ends the UDP flow to pod0).
            tcp, udp = hold(blixt, addr, OUTAGE - 1), hold(blixt, addr, OUTAGE - 1, udp=True)
            try:
                proxy.cut()
                cut_at = time.monotonic()
                # Changes while blixt cannot see them: the Services move to pod1,
                # and a new TCP listener gets a route to pod2.
                for p in ("tcp", "udp"):
                    blixt.write_endpoints(ns, f"svc-{p}", [1], ports=[("p", p.upper(), 8080)])
                sc.gateway(ns, "gw", [Scenario.listener("tcp", "TCP", PORT), Scenario.listener("udp", "UDP", PORT),
                                      Scenario.listener("late", "TCP", PORT + 1)])
                sc.service(ns, "svc-late", [2], "TCP")
                sc.route("TCPRoute", ns, "r-late", [{"name": "gw", "sectionName": "late"}],
                         [{"name": "svc-late", "port": 8080}])
                # The dataplane stays as it was: new connections still reach pod0.
                assert sc.who("TCP", addr, PORT, count=5) == {"pod0": 5}
                t, u = held(tcp), held(udp)
                assert sc.who("TCP", addr, PORT, count=5) == {"pod0": 5}
                time.sleep(max(0.0, cut_at + OUTAGE - time.monotonic()))
            finally:
                tcp.kill()
                udp.kill()
                proxy.resume()
            for name, h in (("TCP", t), ("UDP", u)):
                assert not h["errors"] and {a.split()[0] for a in h["answers"]} == {"pod0"}, (name, h)
                assert len(h["answers"]) > 4 * OUTAGE, (name, len(h["answers"]))
            # After it: the same processes apply what changed.
            sc.wait_traffic("TCP", addr, PORT, {"pod1"}, timeout=60)
            sc.wait_traffic("UDP", addr, PORT, {"pod1"}, timeout=60)
            sc.wait_traffic("TCP", addr, PORT + 1, {"pod2"}, timeout=60)
            sc.wait_route("TCPRoute", ns, "r-late", {"Accepted": ("True", "Accepted")}, timeout=60)
            assert (blixt.controller.popen.pid, blixt.agent.popen.pid) == pids
            assert blixt.controller.alive() and blixt.agent.alive()
    finally:
        proxy.close()


# -- controller failover --------------------------------------------------------

LEASE_SECONDS = 15  # blixt.kube.leader's default lease duration
FAILOVER_CONTROLLER = "example.net/blixt-failover"  # apart from every other test's controller and Lease


def test_controller_failover_resumes_status_within_the_lease(blixt, kube):
    """Two controller replicas on a Lease of their own, serving a
    controllerName and GatewayClass of their own (an agent serves it too);
    the leader SIGKILLed: the other takes the Lease and writes the status of
    a Gateway and route made after the kill within the lease duration (plus
    a reconcile), traffic follows, and nothing settled is rewritten (no
    status flapping)."""
    own = ("--controller-name=" + FAILOVER_CONTROLLER, "--lease-name=blixt-failover")
    blixt.stop_agent()
    blixt.start_agent("--controller-name=" + FAILOVER_CONTROLLER)
    first = blixt.start_controller("failover-a", *own)
    second = blixt.start_controller("failover-b", *own)
    sc = Scenario(blixt, "failover")
    blixt.apply(Scenario.CLASS_MANIFEST)
    sc.create({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
               "metadata": {"name": "blixt-failover"},
               "spec": {"controllerName": FAILOVER_CONTROLLER, "parametersRef": {
                   "group": "", "kind": "ConfigMap", "name": "blixt-pool", "namespace": "blixt-system"}}})
    ns = sc.namespace("a")
    sc.service(ns, "svc", [0])
    sc.gateway(ns, "gw", [Scenario.listener("tcp", "TCP", PORT)], class_name="blixt-failover")
    sc.route("TCPRoute", ns, "r", [{"name": "gw"}], [{"name": "svc", "port": 8080}])
    sc.wait_route("TCPRoute", ns, "r", {"Accepted": ("True", "Accepted")}, timeout=30,
                  controller=FAILOVER_CONTROLLER)
    sc.wait_traffic("TCP", sc.address(ns, "gw"), PORT, {"pod0"})

    def holder():
        return kube.kubectl("-n", "default", "get", "lease", "blixt-failover", "-o",
                            "jsonpath={.spec.holderIdentity}").stdout.strip()
    assert holder() == "failover-a"
    settled = {k: sc.get(k, ns, n)["metadata"]["resourceVersion"] for k, n in (("gateway", "gw"), ("tcproute", "r"))}
    os.killpg(first.popen.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    sc.gateway(ns, "gw2", [Scenario.listener("tcp", "TCP", PORT)], class_name="blixt-failover")
    sc.route("TCPRoute", ns, "r2", [{"name": "gw2"}], [{"name": "svc", "port": 8080}])
    sc.wait_route("TCPRoute", ns, "r2", {"Accepted": ("True", "Accepted")}, timeout=LEASE_SECONDS + 30,
                  controller=FAILOVER_CONTROLLER)
    addr2 = sc.address(ns, "gw2")
    took = time.monotonic() - killed_at
    assert holder() == "failover-b"
    assert took <= LEASE_SECONDS + 10, f"status resumed {took:.1f}s after the leader died"
    print(f"failover: status of objects made after the kill written {took:.1f}s after it")
    sc.wait_traffic("TCP", addr2, PORT, {"pod0"})
    assert second.alive()
    # The new leader has reconciled everything by now; a while more: nothing settled rewritten.
    time.sleep(3)
    assert {k: sc.get(k, ns, n)["metadata"]["resourceVersion"]
            for k, n in (("gateway", "gw"), ("tcproute", "r"))} == settled


# -- the agent killed in the middle of a large apply ---------------------------

SEED = int(os.environ.get("BLIXT_FUZZ_SEED", "20261201"))
FRONTENDS = 10_000 if os.environ.get("BLIXT_SOAK") == "1" else 1_000
KILLS = 10 if os.environ.get("BLIXT_SOAK") == "1" else 3


@pytest.fixture
def node_manager(bpfman_server, bytecode_image):
    """A Manager of the test's own (no agent process), its program loaded."""
    from harness.netns import Topology
    topo = Topology(pods=0, name="kill")
    args = (str(bpfman_server.socket), bytecode_image, topo.node.netns, "killed-apply-test")
    mgr = killed_apply.manager(*args)
    fd = bpftest.prog_fd_by_id(mgr.programs[0].id)
    try:
        yield mgr, fd, args
    finally:
        os.close(fd)
        mgr.remove()
        topo.close()


class Probe(threading.Thread):
    """Packets to kept frontends through the program, as fast as it goes:
    (frontend index, mark) for every one."""

    def __init__(self, fd: int, indexes: list[int]):
        super().__init__(daemon=True)
        self.fd, self.indexes, self.seen, self.stop = fd, indexes, [], threading.Event()

    def run(self):
        ctx = bytes(bpftest.SkBuff())
        n = 0
        while not self.stop.is_set():
            i = self.indexes[n % len(self.indexes)]
            frame = P.tcp_frame("198.18.0.2", str(killed_apply.frontend(i)), 10000 + n % 50000, 80)
            out = bpftest.test_run(self.fd, frame, ctx=ctx, ctx_out_size=ctypes.sizeof(bpftest.SkBuff))
            self.seen.append((i, bpftest.SkBuff.from_buffer_copy(out.ctx_out).mark))
            n += 1


def endpoints_by_id(state) -> dict[int, tuple[int, int]]:
    return {bid: (int(ep[0]), ep[1]) for bid, ep in state.backends.items()}


def assert_settled(mgr, desired) -> None:
    """The kernel, read back, is what `desired` plans to: no write left to
    make, and no slot or member of a service id or generation not in use."""
    cur = mgr.current()
    p = plan(desired, cur, mgr.settings.marks)
    assert p.empty, p.summary()
    live = {(v.id, v.gen): v.slot_count for v in cur.services.values()}
    per_gen = collections.Counter((k.service_id, k.gen) for k in cur.slots)
    assert per_gen == {g: n for g, n in live.items() if n}, "slots outside the live generations"
    ids = {v.id for v in cur.services.values()}
    assert {k.service_id for k in cur.members} <= ids, "members of services that are gone"
    assert len(cur.services) == len(desired.services)


def test_agent_killed_mid_apply_leaves_nothing_half_written(node_manager):
    """A process applying a large change (1000 frontends: a tenth removed, a
    tenth added, two of three backends moved in the rest) is SIGKILLed just
    before a random one of its writes (map batches, nft scripts, netlink
    batches); packets probe the kept frontends the whole time. Every probe gets a backend of
    its frontend, old or new (never no decision, never a reject, never
    another frontend's backend), and after a fresh apply the maps and table
    are exactly the desired state, with no stale slot."""
    mgr, fd, args = node_manager
    rng = random.Random(SEED)
    child = [sys.executable, str(pathlib.Path(killed_apply.__file__)), *args, str(FRONTENDS)]
    old, new = killed_apply.old(FRONTENDS), killed_apply.new(FRONTENDS)
    want = {s.address: {(int(b.address), b.port) for b in s.backends} for s in (*old.services, *new.services)}
    for s in old.services:
        if s.address in {t.address for t in new.services}:
            want[s.address] |= {(int(b.address), b.port) for b in s.backends}
    kept = list(range(FRONTENDS // 10, FRONTENDS))
    # An apply left to finish: how many writes it makes.
    mgr.apply(old)
    proc = subprocess.Popen(child, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0 and out.splitlines()[-1] == "applied", err
    writes = sum(line.startswith("write ") for line in out.splitlines())
    assert writes >= 4, out
    print(f"unkilled child apply of {FRONTENDS} frontends: {writes} writes")
    mid_apply = 0
    for round_ in range(KILLS):
        mgr.refresh()
        mgr.apply(old)
        old_ids = endpoints_by_id(mgr.current())
        at = rng.randrange(1, writes + 1)
        proc = subprocess.Popen([*child, str(at)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        probe = Probe(fd, rng.sample(kept, 200))
        try:
            assert proc.stdout.readline().strip() == "applying", proc.stderr.read()
            probe.start()
            # The child stops itself just before write `at`: probes see the
            # kernel as the writes before it left it, then it dies there.
            _, status = os.waitpid(proc.pid, os.WUNTRACED)
            assert os.WIFSTOPPED(status), f"the child ended before write {at}: {proc.stderr.read()}"
            time.sleep(rng.uniform(0.02, 0.2))
            proc.kill()
            proc.wait()
        finally:
            probe.stop.set()
            probe.join()
            proc.kill()
        mid_apply += "applied" not in proc.stdout.read()
        print(f"round {round_}: killed at write {at} of {writes}, {len(probe.seen)} probes")
        mgr.refresh()  # the kernel as the killed process left it
        mgr.apply(new)
        assert_settled(mgr, new)
        ids = {**old_ids, **endpoints_by_id(mgr.current())}
        wrong = []
        for i, mark in probe.seen:
            bid = (mark & mgr.settings.marks.id_mask) >> mgr.settings.marks.id_shift
            if mark & (mgr.settings.marks.reject_mark | mgr.settings.marks.masq_mark) or \
                    ids.get(bid) not in want[killed_apply.frontend(i)]:
                wrong.append((i, hex(mark), ids.get(bid)))
        assert len(probe.seen) > 100
        assert not wrong, f"round {round_}: {len(wrong)} of {len(probe.seen)} probes: {wrong[:10]}"
    assert mid_apply >= KILLS - 1, f"only {mid_apply} of {KILLS} kills landed before the apply finished"
