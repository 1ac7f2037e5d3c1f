"""`make bench-proxies`: blixt's Service proxy (`blixt agent --proxy-services`)
side by side with real kube-proxy v1.35.4 in nftables and in iptables mode:
one node namespace, one kube-apiserver, the same Services, one run, the
proxies taking turns within each round (only one serves at a time; the
namespace is wiped between turns, so each starts from empty).

For each size (frontends = ClusterIP:port pairs, made as Services of up to
100 ports each, every port with the same B backend addresses; a probe
Service whose backend is a real pod serves the traffic):

  programming  the first full sync with every object already in the API:
               blixt's first `blixt_dataplane_sync_duration_seconds`,
               kube-proxy's first `kubeproxy_sync_full_proxy_rules_duration_seconds`
  ready        from starting the process to that sync done (includes
               loading the program through bpfman, listing the API)
  rss          the proxy process's VmRSS after it
  crr          TCP_CRR (tests/bench/rrbench.c) from the client namespace
               to the probe Service's ClusterIP; `direct` is the pod's own
               address, measured in the same round
  change       (the --change-size only) one endpoint of one Service
               replaced, --changes times: the sync it caused (blixt: its
               pass; kube-proxy: its partial sync)

Sizes past what the default build's maps fit (--large-maps-above) run blixt
on `make bytecode-large`'s build; kube-proxy runs up to --kube-proxy-up-to.
--add-to measures sizes into an earlier run's JSON (its other rows kept, the
report saying which rows came later).

At the smallest size, also: TCP_RR, UDP_RR, TCP_STREAM through each proxy
and direct, and convergence: an EndpointSlice moving a Service to another
pod, from the API write returning to the first connection answered by the
new pod.

Writes build/bench/proxies.json, PNG plots in tests/bench/plots/ and the
section of tests/bench/README.md between its `proxies` markers (--no-readme:
leave the README alone, as `make test`'s tiny run does).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import datetime
import json
import math
import os
import pathlib
import platform
import re
import signal
import statistics
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from convergence import PROBE  # noqa: E402  (tests/bench: the probe that stops the clock)
from harness import paths  # noqa: E402
from harness.kube_proxy import KubeProxy  # noqa: E402
from harness.stack import local_stack  # noqa: E402

from blixt.bpfman.client import BpfmanClient  # noqa: E402
from blixt.dataplane.fit import Budget  # noqa: E402
from blixt.node import inspection  # noqa: E402
from blixt.node.manager import programs_of  # noqa: E402

RRBENCH = paths.BUILD / "rrbench"
NS = "bench"
POD_NET = "10.244"  # pods 10.244.{1,2,3}.2
CLUSTER_CIDR = "10.244.0.0/16"
NODE_IP = "198.18.0.1"
PROBE_PORT = 7000
ECHO_PORT = 8080
PORTS_PER_SERVICE = 100
# kube-proxy's nftables mode writes an anonymous map per Service port, which
# the kernel makes slower the more there are: minutes at 10,000 (README).
FIRST_SYNC_TIMEOUT = 3600.0
PROXIES = ("blixt", "kube-proxy-nft", "kube-proxy-iptables")
README = HERE / "README.md"
PLOTS = HERE / "plots"
BEGIN, END = "<!-- proxies:begin -->", "<!-- proxies:end -->"



def backend_address(k: int) -> str:
    """The k-th made-up backend: 10.200.0.0 onwards (outside the pod and Service CIDRs)."""
    return f"10.{200 + (k >> 16)}.{(k >> 8) & 255}.{k & 255}"


def services_for(frontends: int, backends: int) -> list[tuple[dict, dict]]:
    """(Service, EndpointSlice) pairs giving `frontends` ClusterIP:port
    frontends of `backends` backends each. Pure."""
    out = []
    n = math.ceil(frontends / PORTS_PER_SERVICE)
    for i in range(n):
        count = min(PORTS_PER_SERVICE, frontends - i * PORTS_PER_SERVICE)
        name = f"s{i}"
        ports = [{"name": f"p{j}", "protocol": "TCP", "port": 1000 + j, "targetPort": ECHO_PORT} for j in range(count)]
        svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS},
               "spec": {"ports": ports}}
        out.append((svc, endpoint_slice(name, [backend_address(i * backends + b) for b in range(backends)],
                                        [(p["name"], "TCP", ECHO_PORT) for p in ports])))
    return out


def endpoint_slice(service: str, addresses: list[str], ports: list[tuple[str, str, int]]) -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": f"{service}-bench", "namespace": NS,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by": "blixt-bench"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}, "nodeName": "bench-node"}
                          for a in addresses],
            "ports": [{"name": n, "protocol": p, "port": port} for n, p, port in ports]}


class Objects:
    """The bench namespace's Services and EndpointSlices, written through the API."""

    def __init__(self, node):
        from kubernetes import client
        self.node = node
        self.client = client
        self.api = node.cluster.api_client()
        self.core = client.CoreV1Api(self.api)
        self.disc = client.DiscoveryV1Api(self.api)
        node.cluster.kubectl("create", "namespace", NS, check=False)  # there already on a second run

    def create(self, pairs: list[tuple[dict, dict]]) -> None:
        def one(pair):
            svc, eps = pair
            self.core.create_namespaced_service(NS, svc)
            self.disc.create_namespaced_endpoint_slice(NS, eps)
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(one, pairs))

    def cluster_ip(self, name: str) -> str:
        return self.core.read_namespaced_service(name, NS).spec.cluster_ip

    def write_slice(self, body: dict) -> None:
        self.disc.replace_namespaced_endpoint_slice(body["metadata"]["name"], NS, body)

    def clear(self) -> None:
        for kind in ("services", "endpointslices"):
            self.node.cluster.kubectl("delete", kind, "--all", "-n", NS, "--wait=true", "--timeout=600s")


def scrape(text: str, name: str) -> tuple[float, float]:
    """(count, sum) of histogram `name` in a /metrics text (summed over labels)."""
    count = sum(float(v) for v in re.findall(rf"^{name}_count(?:{{[^}}]*}})? (\S+)$", text, re.M))
    total = sum(float(v) for v in re.findall(rf"^{name}_sum(?:{{[^}}]*}})? (\S+)$", text, re.M))
    return count, total


def rss_mib(pid: int) -> float:
    status = pathlib.Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"^VmRSS:\s+(\d+) kB", status, re.M).group(1)) / 1024


class Proxy:
    """One of PROXIES serving the node namespace, started from empty."""

    def __init__(self, kind: str, node, workdir: pathlib.Path, image: str | None = None):
        """image: blixt's bytecode (default: the node's)."""
        self.kind, self.node = kind, node
        self.kp: KubeProxy | None = None
        start = time.monotonic()
        if kind == "blixt":
            node.start_agent_with(f"--bpfman-socket={node.bpfman_socket}",
                                  f"--bytecode-image={image or node.bytecode_image}", "--interface=eth-client",
                                  f"--attach-mode={node.mode}", "--proxy-services",
                                  f"--cluster-cidr={CLUSTER_CIDR}", f"--node-ip={NODE_IP}", "--pod-interfaces=eth-pod",
                                  wait=False)
            self.pid = node.agent.popen.pid
            self.metric = "blixt_dataplane_sync_duration_seconds"
        else:
            mode = "nftables" if kind == "kube-proxy-nft" else "iptables"
            self.kp = KubeProxy(workdir / kind, node.cluster, node.topo.node.netns, node.name, NODE_IP,
                                CLUSTER_CIDR, f"{NODE_IP}/32", mode=mode, table_timeout=FIRST_SYNC_TIMEOUT)
            self.pid = self.kp.proc.popen.pid
            self.metric = "kubeproxy_sync_full_proxy_rules_duration_seconds"
        try:
            self._first_sync(kind, start)
        except BaseException:  # a timeout, SIGTERM: nothing left running
            self.stop()
            raise

    def _first_sync(self, kind: str, start: float) -> None:
        deadline = time.monotonic() + FIRST_SYNC_TIMEOUT
        while True:
            count, total = scrape(self.metrics(self.metric), self.metric)
            if count >= 1:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{kind}: no sync within {FIRST_SYNC_TIMEOUT:.0f} s")
            time.sleep(0.05)
        self.ready = time.monotonic() - start
        # The first sync's own duration; should a second have landed between
        # two scrapes (50 ms apart), their mean.
        self.programming = total / count

    def metrics(self, name: str) -> str:
        """The proxy's metric `name`. Only that one is asked of blixt: its full
        /metrics reads every frontend's counters from the kernel (30,000
        series at 10,000 frontends), and polled every 10 ms that alone
        starved the passes being timed (kube-proxy has no per-Service series)."""
        if self.kind == "blixt":
            try:
                return self.node.metrics(self.node.agent_port, f"{name}_count", f"{name}_sum")
            except OSError:
                return ""
        res = subprocess.run(["ip", "netns", "exec", self.node.topo.node.netns, "curl", "-s",
                              "http://127.0.0.1:10249/metrics"], capture_output=True, text=True)
        return res.stdout

    def map_memory(self) -> float:
        """MiB the kernel charges for blixt's maps (the memlock `blixt
        dataplane show` prints per map; read alone: show decodes every entry)."""
        with BpfmanClient(str(self.node.bpfman_socket)) as c:
            reader = inspection.reader(c, programs_of(c, self.node.name, self.node.topo.node.netns), "blixt")
        try:
            return sum(m.memlock() for m in reader.maps.values()) / 2**20
        finally:
            for m in reader.maps.values():
                m.close()

    def change_metric(self) -> str:
        return ("blixt_dataplane_sync_duration_seconds" if self.kind == "blixt"
                else "kubeproxy_sync_partial_proxy_rules_duration_seconds")

    def rss(self) -> float:
        return rss_mib(self.pid)

    def stop(self) -> None:
        if self.kind == "blixt":
            self.node.stop_agent()
            with BpfmanClient(str(self.node.bpfman_socket)) as c:  # the agent leaves its program loaded, by design
                for p in c.list(match_metadata={"blixt.io/node": self.node.name}):
                    c.unload(p.id)
        else:
            self.kp.close()
        # Whatever either left: tables, chains, conntrack entries.
        self.node.topo.node.exec("nft", "flush", "ruleset")
        self.node.topo.node.exec("conntrack", "-F", check=False)


def rate(node, mode: str, addr: str, port: int, seconds: float) -> float:
    out = node.topo.client.exec(str(RRBENCH), mode, addr, str(port), str(seconds), timeout=seconds + 60).stdout
    return float(dict(kv.split("=") for kv in out.split())["rate"])


def converge(node, objects: Objects, addr: str, target: int) -> float:
    probe = node.topo.client.popen(sys.executable, "-c", PROBE, addr, "80", f"pod{target}",
                                   stdout=subprocess.PIPE, text=True)
    time.sleep(0.05)  # polling before the change is written
    objects.write_slice(endpoint_slice("moving", [node.topo.pods[target].address], [("http", "TCP", ECHO_PORT)]))
    start = time.time()
    out, _ = probe.communicate(timeout=60)
    if probe.returncode != 0:
        raise RuntimeError(f"traffic never reached pod{target}")
    return max(0.0, float(out) - start)


def median(xs):
    return statistics.median(xs) if xs else float("nan")


def quantile(xs, q):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, math.ceil(q * len(xs)) - 1))] if xs else float("nan")


def measure(node, args, workdir: pathlib.Path, save=lambda res: None) -> dict:
    """Every measurement on `node` (a harness.blixt.Node with pods in POD_NET
    and no agent running); the results as report() reads them. save(results)
    is called after every proxy's turn (a long run cut short keeps what it
    measured)."""
    results: dict = {"machine": {"cores": os.cpu_count(), "kernel": platform.release(),
                                 "date": datetime.date.today().isoformat()},
                     "rounds": args.rounds, "seconds": args.seconds, "sizes": {}, "small": {}}
    node.topo.node.exec("ip", "route", "replace", "default", "via", node.topo.client.address)
    node.topo.client.exec("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1")
    pod = node.topo.pods[0]
    server = pod.popen(str(RRBENCH), "serve", str(PROBE_PORT), stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "ready"
        objects = Objects(node)
        for size in args.sizes:
            backends = args.backends if size <= args.change_size else args.backends_large
            print(f"== {size:,} frontends x {backends} backends", file=sys.stderr)
            t0 = time.monotonic()
            objects.create(services_for(size - 1, backends))
            probe = ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "probe", "namespace": NS},
                      "spec": {"ports": [{"name": "tcp", "protocol": "TCP", "port": PROBE_PORT},
                                         {"name": "udp", "protocol": "UDP", "port": PROBE_PORT}]}},
                     endpoint_slice("probe", [pod.address], [("tcp", "TCP", PROBE_PORT), ("udp", "UDP", PROBE_PORT)]))
            small = size == min(args.sizes) and not args.add_to  # the earlier run has the small round
            moving = ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "moving", "namespace": NS},
                       "spec": {"ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": ECHO_PORT}]}},
                      endpoint_slice("moving", [pod.address], [("http", "TCP", ECHO_PORT)]))
            objects.create([probe] + ([moving] if small else []))
            print(f"   objects written in {time.monotonic() - t0:.1f} s", file=sys.stderr)
            vip = objects.cluster_ip("probe")
            build = "large" if size > args.large_maps_above else "default"
            image = node.variant_images["large"] if build == "large" else None
            row: dict = {"backends": backends, "direct_crr": [], "map_memory": [], "bytecode": build,
                         "date": results["machine"]["date"],
                         **{k: {p: [] for p in PROXIES} for k in ("programming", "ready", "rss", "crr", "change")}}
            results["sizes"][str(size)] = row
            rounds = args.rounds if size <= args.full_rounds_up_to else args.rounds_large
            row["rounds"] = rounds
            run = [p for p in PROXIES if p in args.proxies and (p == "blixt" or size <= args.kube_proxy_up_to)]
            for kind in sorted(k for k in PROXIES if k != "blixt" and size > args.kube_proxy_up_to):
                row.setdefault("errors", {})[kind] = [f"not run above {args.kube_proxy_up_to:,} frontends "
                                                      f"(--kube-proxy-up-to)"]
            for r in range(rounds):
                order = run[r % len(run):] + run[:r % len(run)]
                row["direct_crr"].append(rate(node, "crr", pod.address, PROBE_PORT, args.seconds))
                for kind in order:
                    try:
                        proxy = Proxy(kind, node, workdir / f"{size}-{r}", image if kind == "blixt" else None)
                    except Exception as e:  # noqa: BLE001  (a proxy that never syncs: said, and the run goes on)
                        row.setdefault("errors", {}).setdefault(kind, []).append(f"round {r + 1}: {e}")
                        print(f"   round {r + 1} {kind}: {e}", file=sys.stderr)
                        save(results)
                        continue
                    try:
                        row["programming"][kind].append(proxy.programming)
                        row["ready"][kind].append(proxy.ready)
                        row["rss"][kind].append(proxy.rss())
                        if kind == "blixt":
                            row["map_memory"].append(proxy.map_memory())
                        row["crr"][kind].append(rate(node, "crr", vip, PROBE_PORT, args.seconds))
                        if size == args.change_size:
                            try:
                                row["change"][kind] += changes(node, objects, proxy, args.changes, backends,
                                                               min(PORTS_PER_SERVICE, size - 1), args.change_budget)
                            except TimeoutError as e:
                                row.setdefault("errors", {}).setdefault(kind, []).append(f"round {r + 1}: {e}")
                                print(f"   round {r + 1} {kind}: {e}", file=sys.stderr)
                        if small:
                            small_round(node, objects, proxy, vip, pod.address, args, results["small"])
                        print(f"   round {r + 1} {kind}: sync {proxy.programming:.3f} s, "
                              f"ready {proxy.ready:.1f} s, rss {row['rss'][kind][-1]:.0f} MiB, "
                              f"crr {row['crr'][kind][-1]:.0f}/s", file=sys.stderr)
                    finally:
                        proxy.stop()
                        save(results)
            objects.clear()
    finally:
        server.kill()
        server.wait()
    if not args.add_to:
        results["translation"] = translation(args.rounds)
    return results


def merged(base: dict, added: dict, proxies: list[str]) -> dict:
    """An earlier run's results with `added`'s new sizes put in, said so in
    ["added"]. Sizes the earlier run has are kept as it measured them; the
    later run's rows for them go to ["reference"] (TCP_CRR flat compares
    rows of one run: traffic rates drift between runs)."""
    run = len(base.get("added", [])) + 1
    new = {s: {**r, "run": run} for s, r in added["sizes"].items() if s not in base["sizes"]}
    again = {s: {**r, "run": run} for s, r in added["sizes"].items() if s in base["sizes"]}
    out = {**base, "sizes": {**base["sizes"], **new}}
    out["reference"] = {**base.get("reference", {}), **again}
    out["added"] = base.get("added", []) + [{"date": added["machine"]["date"], "sizes": sorted(new, key=int),
                                             "reference": sorted(again, key=int), "proxies": proxies,
                                             "machine": added["machine"]}]
    return out


def translation(rounds: int) -> dict:
    """tests/bench/translate_bench.py's 10,000 routes over 1,000 Gateways:
    seconds per translation from nothing, and with a memo after one
    EndpointSlice changed (the controller's and agent's steady state)."""
    import translate_bench as tb
    snap = tb.build(1000, 10_000)
    times, result = tb.timed(snap, max(3, rounds))
    steady = tb.steady(tb.with_statuses(snap, result.statuses), max(3, rounds))
    return {"gateways": 1000, "routes": 10_000, "seconds": times, "memo_seconds": steady}


def changes(node, objects: Objects, proxy: Proxy, n: int, backends: int, nports: int, budget: float) -> list[float]:
    """One endpoint of Service s0 (nports ports) replaced, up to n times
    within `budget` seconds (kube-proxy nftables takes minutes per sync at
    10,000 frontends); the sync each caused."""
    out = []
    ports = [(f"p{j}", "TCP", ECHO_PORT) for j in range(nports)]
    name = proxy.change_metric()
    stop = time.monotonic() + budget
    for i in range(n):
        if out and time.monotonic() > stop:
            break
        before = scrape(proxy.metrics(name), name)
        addrs = [backend_address(b) for b in range(1, backends)] + [backend_address(1_000_000 + i)]
        objects.write_slice(endpoint_slice("s0", addrs, ports))
        deadline = time.monotonic() + max(30.0, stop - time.monotonic())
        while (after := scrape(proxy.metrics(name), name))[0] == before[0]:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{proxy.kind}: no sync within {budget:.0f} s after an endpoint change")
            time.sleep(0.01)
        out.append((after[1] - before[1]) / (after[0] - before[0]))
        time.sleep(0.2 if proxy.kind == "blixt" else 1.1)  # kube-proxy's --min-sync-period is 1 s
    return out


def small_round(node, objects: Objects, proxy: Proxy, vip: str, pod_addr: str, args, small: dict) -> None:
    """RR, UDP_RR, STREAM through the proxy and direct; convergence of the moving Service."""
    for mode in ("rr", "urr", "stream"):
        small.setdefault(mode, {}).setdefault(proxy.kind, []).append(
            rate(node, mode, vip, PROBE_PORT, args.seconds))
        small[mode].setdefault("direct", []).append(rate(node, mode, pod_addr, PROBE_PORT, args.seconds))
    addr = objects.cluster_ip("moving")
    conv = small.setdefault("convergence", {}).setdefault(proxy.kind, [])
    current = 0
    # Where the Service points now: traffic there first.
    objects.write_slice(endpoint_slice("moving", [node.topo.pods[0].address], [("http", "TCP", ECHO_PORT)]))
    converge(node, objects, addr, 0)
    for _ in range(args.convergence):
        current = (current + 1) % len(node.topo.pods)
        conv.append(converge(node, objects, addr, current))


# -- report ------------------------------------------------------------------

def spread(xs: list[float], fmt: str) -> str:
    """The median, and the range over the rounds."""
    if not xs:
        return "not measured"
    if len(xs) < 2:
        return fmt.format(median(xs))
    return f"{fmt.format(median(xs))} ({fmt.format(min(xs))}–{fmt.format(max(xs))})"


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and not math.isnan(a / b) else "n/a"


def num(x: float, spec: str, unit: str = "") -> str:
    """x formatted, or "not measured" (the median of no rounds)."""
    return "not measured" if math.isnan(x) else f"{x:{spec}}{unit}"


def verdict(ok: bool, why: str = "") -> str:
    return "met" if ok else f"not met{': ' + why if why else ''}"


def report(res: dict, args) -> str:
    m = res["machine"]
    per_size = ", ".join(f"{int(s):,}: {r.get('rounds', res['rounds'])}" for s, r in
                         sorted(res["sizes"].items(), key=lambda kv: int(kv[0])))
    lines = [f"One run on {m['date']}: {m['cores']} cores, kernel {m['kernel']}; medians of the "
             f"rounds (frontends: rounds {per_size}; proxies interleaved, each from empty), {res['seconds']:g} s per "
             f"traffic measurement. kube-proxy v1.35.4 (nftables, iptables) and blixt serve the same "
             f"Services in turn; Services have up to {PORTS_PER_SERVICE} ports, each port a frontend.", ""]
    for a in res.get("added", []):
        again = (f"; it measured blixt at {', '.join(f'{int(s):,}' for s in a['reference'])} frontends again for "
                 f"the flatness row" if a.get("reference") else "")
        lines += [f"The {', '.join(f'{int(s):,}' for s in a['sizes'])}-frontend row(s) come from a later run on "
                  f"{a['date']} (same machine: {a['machine']['cores']} cores, kernel {a['machine']['kernel']}; "
                  f"{', '.join(a['proxies'])}{again}), added to this one.", ""]
    large = [f"{int(s):,}" for s in sorted(res["sizes"], key=int) if res["sizes"][s].get("bytecode") == "large"]
    if large:
        lines += [f"At {', '.join(large)} frontends blixt ran `make bytecode-large`'s build (maps for 100,000 "
                  f"frontends; the default build's fit 32,768).", ""]
    sizes = sorted(res["sizes"], key=int)
    lines += ["| frontends x backends | | blixt | kube-proxy nftables | kube-proxy iptables | direct |",
              "|---|---|---|---|---|---|"]
    for s in sizes:
        row = res["sizes"][s]
        label = f"{int(s):,} x {row['backends']}"
        for key, unit, fmt in (("programming", "first full sync (s)", "{:.3f}"), ("ready", "start to synced (s)", "{:.1f}"),
                               ("rss", "RSS (MiB)", "{:.0f}"), ("crr", "TCP_CRR (/s)", "{:.0f}")):
            cells = [spread(row[key][p], fmt) for p in PROXIES]
            direct = spread(row["direct_crr"], fmt) if key == "crr" else ""
            lines.append(f"| {label} | {unit} | {' | '.join(cells)} | {direct} |")
            label = ""
    lines += ["", "Cells: median (lowest–highest) over the rounds.", ""]
    errors = [f"* {int(s):,} frontends, {kind}: {msg}" for s in sizes
              for kind, msgs in sorted(res["sizes"][s].get("errors", {}).items()) for msg in msgs]
    if errors:
        lines += ["What a proxy did not finish in this run:", "", *errors, ""]
    targets = targets_table(res, args)
    return "\n".join(lines + targets)


def targets_table(res: dict, args) -> list[str]:
    out = ["| target | measured | verdict |", "|---|---|---|"]
    sizes = sorted(res["sizes"], key=int)
    big = res["sizes"].get(str(args.change_size))
    if big:
        b, n = median(big["programming"]["blixt"]), median(big["programming"]["kube-proxy-nft"])
        out.append(f"| programming {args.change_size:,} x {big['backends']} from empty <= 0.5 s and <= 0.5x "
                   f"kube-proxy nftables | blixt {num(b, '.3f', ' s')}, kube-proxy nftables {num(n, '.3f', ' s')} "
                   f"({ratio(b, n)}) | {verdict(b <= 0.5 and b <= 0.5 * n)} |")
        ch = big["change"]
        if ch["blixt"]:
            p99 = quantile(ch["blixt"], 0.99)
            out.append(f"| one endpoint change at {args.change_size:,} frontends <= 10 ms p99 | blixt p99 "
                       f"{p99 * 1000:.1f} ms (kube-proxy nftables partial sync p99 "
                       f"{num(quantile(ch['kube-proxy-nft'], 0.99) * 1000, '.1f', ' ms')}, iptables "
                       f"{num(quantile(ch['kube-proxy-iptables'], 0.99) * 1000, '.1f', ' ms')}) | "
                       f"{verdict(p99 <= 0.010)} |")
        rss_b, rss_k = median(big["rss"]["blixt"]), median(big["rss"]["kube-proxy-nft"])
        rss_ok = rss_b <= 300 and rss_b <= rss_k
        out.append(f"| agent RSS at {args.change_size:,} frontends <= 300 MB and <= kube-proxy | blixt "
                   f"{rss_b:.0f} MiB, kube-proxy nftables {num(rss_k, '.0f', ' MiB')}, iptables "
                   f"{num(median(big['rss']['kube-proxy-iptables']), '.0f', ' MiB')} | "
                   f"{verdict(rss_ok) if not math.isnan(rss_k) else 'not met: kube-proxy not measured'} |")
    if "translation" in res:
        tr = res["translation"]
        t = median(tr["seconds"])
        steady = (f"; with a memo, one EndpointSlice changed: {median(tr['memo_seconds']):.2f} s"
                  if tr.get("memo_seconds") else "")
        out.append(f"| translation of {tr['routes']:,} routes over {tr['gateways']:,} Gateways <= 0.3 s | "
                   f"{t:.2f} s from nothing (median of {len(tr['seconds'])}){steady} | {verdict(t <= 0.3)} |")
    for s in sizes:
        row = res["sizes"][s]
        if row.get("map_memory"):
            build = " (large build)" if row.get("bytecode") == "large" else ""
            out.append(f"| kernel memory of the maps at {int(s):,} x {row['backends']}{build} (dataplane issue: "
                       f"<= 150 MB at 10k x 10) | {median(row['map_memory']):.1f} MiB | "
                       f"{verdict(median(row['map_memory']) <= 150)} |")
    for s in sizes:
        row = res["sizes"][s]
        if not row["crr"]["kube-proxy-nft"]:
            out.append(f"| TCP_CRR at {int(s):,} frontends >= 1.0x kube-proxy nftables | blixt "
                       f"{median(row['crr']['blixt']):.0f}/s; kube-proxy not measured | not measured |")
            continue
        b, n = median(row["crr"]["blixt"]), median(row["crr"]["kube-proxy-nft"])
        out.append(f"| TCP_CRR at {int(s):,} frontends >= 1.0x kube-proxy nftables | {b:.0f} vs {n:.0f}/s "
                   f"({ratio(b, n)}) | {verdict(b >= n)} |")
    if len(sizes) > 1:
        top = res["sizes"][sizes[-1]]
        ref = res.get("reference", {}).get(sizes[0])
        same_run = ref is not None and ref.get("run") == top.get("run")
        bottom = ref if same_run else res["sizes"][sizes[0]]
        lo, hi = median(bottom["crr"]["blixt"]), median(top["crr"]["blixt"])
        where = " (both from the later run)" if same_run else ""
        out.append(f"| TCP_CRR flat: {int(sizes[-1]):,} >= 0.9x {int(sizes[0]):,} frontends | "
                   f"{hi:.0f} vs {lo:.0f}/s ({ratio(hi, lo)}){where} | {verdict(hi >= 0.9 * lo)} |")
    small = res["small"]
    for mode, name in (("rr", "TCP_RR"), ("urr", "UDP_RR"), ("stream", "TCP_STREAM")):
        if mode in small:
            b, d = median(small[mode]["blixt"]), median(small[mode]["direct"])
            unit = "MB/s" if mode == "stream" else "/s"
            scale = 1e6 if mode == "stream" else 1
            out.append(f"| {name} >= 0.95x direct | {b / scale:.0f} vs {d / scale:.0f} {unit} ({ratio(b, d)}); "
                       f"kube-proxy nftables {num(median(small[mode].get('kube-proxy-nft', [])) / scale, '.0f')} | "
                       f"{verdict(b >= 0.95 * d)} |")
    if "convergence" in small:
        c = small["convergence"]
        p99 = quantile(c["blixt"], 0.99)
        out.append(f"| EndpointSlice write -> traffic on the new pod, p99 <= 100 ms | blixt p50 "
                   f"{median(c['blixt']) * 1000:.0f} ms, p99 {p99 * 1000:.0f} ms; kube-proxy nftables p99 "
                   f"{num(quantile(c.get('kube-proxy-nft', []), 0.99) * 1000, '.0f', ' ms')}, iptables "
                   f"{num(quantile(c.get('kube-proxy-iptables', []), 0.99) * 1000, '.0f', ' ms')} | "
                   f"{verdict(p99 <= 0.100)} |")
    return out


def plots(res: dict, where: pathlib.Path = PLOTS) -> list[str]:
    """PNGs in `where`; their names."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    where.mkdir(parents=True, exist_ok=True)
    sizes = sorted(res["sizes"], key=int)
    xs = [int(s) for s in sizes]
    made = []
    labels = {"blixt": "blixt", "kube-proxy-nft": "kube-proxy nftables", "kube-proxy-iptables": "kube-proxy iptables"}
    for key, ylabel, name in (("crr", "TCP_CRR transactions/s (median)", "crr.png"),
                              ("programming", "first full sync, s (median)", "programming.png")):
        fig, ax = plt.subplots(figsize=(6, 4))
        for p in PROXIES:
            ax.plot(xs, [median(res["sizes"][s][key][p]) for s in sizes], marker="o", label=labels[p])
        if key == "crr":
            ax.plot(xs, [median(res["sizes"][s]["direct_crr"]) for s in sizes], marker="o", linestyle="--",
                    label="direct (no proxy)")
            ax.set_ylim(bottom=0)
        else:
            ax.set_yscale("log")
        ax.set_xscale("log")
        ax.set_xlabel("frontends (ClusterIP:port)")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(where / name, dpi=100)
        plt.close(fig)
        made.append(name)
    conv = res["small"].get("convergence")
    if conv:
        fig, ax = plt.subplots(figsize=(6, 4))
        for p in PROXIES:
            xs_ = sorted(v * 1000 for v in conv[p])
            ax.step(xs_, [(i + 1) / len(xs_) for i in range(len(xs_))], where="post", label=labels[p])
        ax.set_xlabel("EndpointSlice write -> first connection on the new pod (ms)")
        ax.set_ylabel("fraction of changes")
        ax.grid(True, alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(where / "convergence.png", dpi=100)
        plt.close(fig)
        made.append("convergence.png")
    return made


def write_readme(text: str, made: list[str]) -> None:
    body = README.read_text()
    section = f"{BEGIN}\n{text}\n\n" + "".join(f"![{m}](plots/{m})\n" for m in made) + END
    if BEGIN in body:
        body = body[:body.index(BEGIN)] + section + body[body.index(END) + len(END):]
    else:
        body = body.rstrip() + "\n\n## blixt and kube-proxy (`make bench-proxies`)\n\n" + section + "\n"
    README.write_text(body)


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10, 10_000, 100_000],
                        help="frontend counts, comma-separated (default 10,10000,100000)")
    parser.add_argument("--large-maps-above", type=int, default=Budget.of_maps().services, metavar="N",
                        help="sizes above N run blixt on the large build (default %(default)s: what the default "
                             "build's maps fit)")
    parser.add_argument("--kube-proxy-up-to", type=int, default=10_000, metavar="N",
                        help="run kube-proxy at sizes up to N only (default %(default)s: at 10,000 its nftables "
                             "mode syncs in minutes and its iptables mode did not finish in 17 minutes)")
    parser.add_argument("--add-to", type=pathlib.Path, metavar="JSON",
                        help="measure --sizes (no small round, no translation) into this earlier run's results; "
                             "the merged results go to --out")
    parser.add_argument("--backends", type=int, default=10, help="backends per frontend up to --change-size")
    parser.add_argument("--backends-large", type=int, default=2,
                        help="backends per frontend above --change-size (100,000 x 2 fit the large build)")
    parser.add_argument("--change-size", type=int, default=10_000,
                        help="the size at which single endpoint changes are timed")
    parser.add_argument("--changes", type=int, default=20, help="endpoint changes timed per proxy at --change-size")
    parser.add_argument("--change-budget", type=float, default=600.0, metavar="SECONDS",
                        help="stop timing changes after this long (at least one is timed)")
    parser.add_argument("--convergence", type=int, default=20, help="Service moves per proxy and round")
    parser.add_argument("--proxies", type=lambda s: s.split(","), default=list(PROXIES),
                        help=f"which to run, comma-separated (default {','.join(PROXIES)}; the report "
                             "needs all of them)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--full-rounds-up-to", type=int, default=1_000_000, metavar="N",
                        help="sizes above N get --rounds-large rounds (kube-proxy takes minutes there)")
    parser.add_argument("--rounds-large", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--out", type=pathlib.Path, default=paths.BUILD / "bench" / "proxies.json")
    parser.add_argument("--no-readme", action="store_true", help="write the JSON only: no plots, no README")
    parser.add_argument("--report-only", type=pathlib.Path, metavar="JSON",
                        help="measure nothing: the report, plots and README section from an earlier run's JSON")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.report_only:
        res = json.loads(args.report_only.read_text())
    else:
        # SIGTERM (a timeout, a kill) tears down as Ctrl-C does: netns, processes, programs.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        paths.require_file(RRBENCH, "rrbench (make build/rrbench)")
        paths.require_file(paths.KUBE_PROXY, "kube-proxy (make deps-cluster)")
        args.out.parent.mkdir(parents=True, exist_ok=True)
        variants = ("large",) if max(args.sizes) > args.large_maps_above else ()
        with tempfile.TemporaryDirectory(prefix="blixt-bench-proxies-") as tmp, \
                local_stack(pathlib.Path(tmp), pod_net=POD_NET, variants=variants) as node:
            res = measure(node, args, pathlib.Path(tmp), lambda r: args.out.write_text(json.dumps(r, indent=1)))
        if args.add_to:
            res = merged(json.loads(args.add_to.read_text()), res, args.proxies)
        args.out.write_text(json.dumps(res, indent=1))
    if set(args.proxies) != set(PROXIES) and not args.add_to:
        print(f"{args.out}: measured {', '.join(args.proxies)} only; the report compares all of them")
        return 0
    text = report(res, args)
    print(text)
    if not args.no_readme:
        write_readme(text, plots(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
