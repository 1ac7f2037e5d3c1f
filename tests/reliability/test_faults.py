"""Faults while traffic flows, with real components (harness.blixt.Node:
kube-apiserver, bpfman-rpc, blixt's controller and agent as processes, netns
pods): an established TCP connection and a UDP flow are counted through the
fault, and nothing established may drop."""

from __future__ import annotations

import json
import subprocess
import sys
import time

from harness import paths
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
