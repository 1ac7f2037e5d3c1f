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
    """`make bench-convergence` in miniature: an EndpointSlice and a TCPRoute
    change each move the Gateway's traffic to another pod (the bench's own
    code; two changes' timings say nothing, tests/bench/README.md has a run)."""
    sys.path.insert(0, str(paths.REPO / "tests" / "bench"))
    import convergence
    slices, routes = convergence.changes(blixt, 2)
    assert len(slices) == len(routes) == 2 and all(0 < t < 30 for t in slices + routes), (slices, routes)
    print(f"convergence: EndpointSlice {slices}, TCPRoute {routes}")
