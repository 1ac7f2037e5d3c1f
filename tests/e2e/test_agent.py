"""The agent as a process: restarts keep traffic flowing and adopt what is
loaded; changes converge quickly."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from harness import paths
from harness.scenario import Scenario

def test_agent_restart_keeps_established_flows_and_adopts_programs(blixt, bpfman):
    sc = Scenario(blixt, "restart")
    ns, addr = sc.serving_gateway()
    before = sorted(p.id for p in bpfman.list(match_metadata={"blixt.io/node": blixt.name}))
    assert len(before) == 1
    hold = blixt.topo.client.popen(
        sys.executable, "-m", "harness.traffic", "hold", addr, "9000", "--seconds", "8",
        cwd=str(paths.REPO / "tests"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "connected"
        blixt.stop_agent(kill=True)  # SIGKILL: no chance to clean up
        time.sleep(1)
        blixt.start_agent()
        out, _ = hold.communicate(timeout=30)
    finally:
        hold.kill()
    held = json.loads(out)
    assert not held["errors"], held
    assert len(held["answers"]) > 40 and {a.split()[0] for a in held["answers"]} == {"pod0"}
    after = sorted(p.id for p in bpfman.list(match_metadata={"blixt.io/node": blixt.name}))
    assert after == before, "the restarted agent loaded its programs again instead of adopting them"
    assert "adopted loaded programs" in blixt.agent.log.read_text()
    sc.wait_traffic("TCP", addr, 9000, {"pod0"})


def test_route_and_endpoint_changes_converge(blixt):
    sc = Scenario(blixt, "converge")
    ns, addr = sc.serving_gateway()
    timings = {}
    # An EndpointSlice change: the Service moves to pod1.
    start = time.monotonic()
    blixt.write_endpoints(ns, "svc-tcp", [1], ports=[("p", "TCP", 8080)])
    sc.wait_traffic("TCP", addr, 9000, {"pod1"}, timeout=10)
    timings["endpoints"] = time.monotonic() - start
    # A route change: a second Service on pod2 takes the route.
    sc.service(ns, "svc2", [2], "TCP")
    start = time.monotonic()
    sc.route("TCPRoute", ns, "r-tcp", [{"name": "gw"}], [{"name": "svc2", "port": 8080}])
    sc.wait_traffic("TCP", addr, 9000, {"pod2"}, timeout=10)
    timings["route"] = time.monotonic() - start
    print(f"convergence (including traffic probes): {timings}")
