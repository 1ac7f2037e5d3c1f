"""`make bench-convergence`: how long traffic takes to follow a change, from
the API write to the first connection that lands on the new backend
(apiserver -> agent watch -> translation -> maps -> conntrack NAT), with the
real controller and agent processes. Prints p50/p90/p99 over N changes of
an EndpointSlice and of a route. The clock starts as the write is sent
through the API client (the object made before): no kubectl start-up in it.
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
from harness.blixt import Node  # noqa: E402
from harness.scenario import Scenario  # noqa: E402
from harness.stack import local_stack  # noqa: E402

PROBE = """
import socket, sys, time
addr, port, want, deadline = sys.argv[1], int(sys.argv[2]), sys.argv[3], time.monotonic() + 20
while time.monotonic() < deadline:
    try:
        s = socket.create_connection((addr, port), timeout=0.2)
        s.sendall(b"bye\\n")
        data = s.makefile().read()
        s.close()
        if data.split()[0] == want:
            print(time.time()); sys.exit(0)
    except OSError:
        pass
    time.sleep(0.002)
sys.exit(1)
"""


def percentiles(xs: list[float]) -> str:
    xs = sorted(xs)
    q = statistics.quantiles(xs, n=100, method="inclusive") if len(xs) > 1 else xs * 99
    return f"p50 {q[49] * 1000:6.0f} ms   p90 {q[89] * 1000:6.0f} ms   p99 {q[98] * 1000:6.0f} ms   max {xs[-1] * 1000:6.0f} ms"


def measure(node: Node, addr: str, change, want: str) -> float:
    probe = node.topo.client.popen(sys.executable, "-c", PROBE, addr, "9000", want,
                                   stdout=subprocess.PIPE, text=True)
    time.sleep(0.05)  # the probe is polling before the change is written
    start = time.time()
    change()
    out, _ = probe.communicate(timeout=30)
    if probe.returncode != 0:
        raise RuntimeError(f"traffic never reached {want}")
    return float(out) - start


def changes(node: Node, n: int) -> tuple[list[float], list[float]]:
    """On a node whose controller and agent run: n EndpointSlice changes and
    n TCPRoute changes, each moving the Gateway's traffic to another pod;
    seconds from the write to the first connection on the new pod."""
    from kubernetes import client
    node.apply(Scenario.CLASS_MANIFEST)
    sc = Scenario(node, "conv")
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [Scenario.listener("l", "TCP", 9000)])
    for i in range(3):
        sc.service(ns, f"s{i}", [i], "TCP")
    sc.service(ns, "moving", [0], "TCP")
    sc.route("TCPRoute", ns, "r", [{"name": "gw"}], [{"name": "moving", "port": 8080}])
    addr = sc.address(ns, "gw")
    sc.wait_traffic("TCP", addr, 9000, {"pod0"}, timeout=30)
    api = node.cluster.api_client()
    disc, custom = client.DiscoveryV1Api(api), client.CustomObjectsApi(api)
    slices, routes, current = [], [], 0
    for _ in range(n):
        current = (current + 1) % 3
        body = node.endpoint_slice(ns, "moving", [current], ports=[("p", "TCP", 8080)])
        slices.append(measure(node, addr, lambda b=body: disc.replace_namespaced_endpoint_slice(
            b["metadata"]["name"], ns, b), f"pod{current}"))
    for _ in range(n):
        current = (current + 1) % 3
        patch = {"spec": {"rules": [{"backendRefs": [{"name": f"s{current}", "port": 8080}]}]}}
        routes.append(measure(node, addr, lambda b=patch: custom.patch_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", ns, "tcproutes", "r", b), f"pod{current}"))
    return slices, routes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--changes", type=int, default=50)
    args = parser.parse_args(argv)
    paths.require_file(paths.BYTECODE_OBJECT, "the compiled object (make bytecode)")
    with tempfile.TemporaryDirectory(prefix="blixt-conv-") as tmp, local_stack(pathlib.Path(tmp)) as node:
        node.start_controller()
        node.start_agent()
        slices, routes = changes(node, args.changes)
        print(f"\nConvergence over {args.changes} changes each (API write -> first connection on the new backend)")
        print(f"  EndpointSlice change   {percentiles(slices)}")
        print(f"  TCPRoute change        {percentiles(routes)}")


if __name__ == "__main__":
    main()
