"""`blixt dataplane show` and the per-frontend metrics, against a program
bpfman loaded and real TCP connections through it."""

from __future__ import annotations

import json
import subprocess
import sys

from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.slots import slot_counts
from blixt.node.frontend_metrics import FrontendCollector
from blixt.node.manager import PROGRAMS
from harness.traffic import PORT, VIP

WEIGHTS = (2, 1, 0)
NAME = "gateway/default/gw/tcp"
CONNECTIONS = 25


def show(bpfman_server, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "blixt", "dataplane", "show", "--bpfman-socket", str(bpfman_server.socket), *args],
        capture_output=True, text=True, timeout=120)


def show_node(node, bpfman_server, *args) -> subprocess.CompletedProcess:
    return show(bpfman_server, "--node", node.manager.settings.node, "--netns", node.topo.node.netns, *args)


def test_show_and_metrics_report_what_the_kernel_counted(node, bpfman_server, attach_mode):
    pods = node.topo.pods
    backends = [Backend(pod.address, PORT, w, masquerade=(i == 1)) for i, (pod, w) in enumerate(zip(pods, WEIGHTS))]
    plan = node.manager.apply(Dataplane.of([Service(VIP, PORT, "tcp", tuple(backends), name=NAME)]))
    res = node.client("tcp", VIP, PORT, "--count", CONNECTIONS, "--sport-base", 24000)
    assert not res["errors"], res["errors"][:5]

    out = show_node(node, bpfman_server, "--json")
    assert out.returncode == 0, out.stderr
    rep = json.loads(out.stdout)

    [prog] = rep["programs"]
    assert prog["name"] == PROGRAMS[attach_mode][0]
    assert len(prog["links"]) == len(node.manager.settings.attachments)
    # Where the kernel runs it, by interface name in the node's namespace.
    assert prog["attached"] == sorted(a.iface for a in node.manager.settings.attachments)
    assert rep["maps_of_program"] == prog["id"]

    [fe] = rep["frontends"]
    assert fe["frontend"] == f"{VIP}:{PORT}/tcp"
    assert fe["slot_count"] == sum(slot_counts(WEIGHTS))
    assert fe["new_flows"] == CONNECTIONS  # one SYN each
    # At least SYN, ACK and FIN from the client per connection, each at
    # least an IPv4 and a TCP header.
    assert fe["packets"] >= 3 * CONNECTIONS
    assert fe["bytes"] >= 40 * fe["packets"]
    shown = {(b["address"], b["port"]): (b["weight"], b["masquerade"]) for b in fe["backends"]}
    want = {(str(b.address), PORT): (n, b.masquerade) for b, n in zip(backends, slot_counts(WEIGHTS)) if n}
    assert shown == want

    fill = {m["name"]: m for m in rep["maps"]}
    assert (fill["blixt_services"]["entries"], fill["blixt_members"]["entries"]) == (1, 2)
    assert fill["blixt_slots"]["entries"] == sum(slot_counts(WEIGHTS))
    assert fill["blixt_stats"]["entries"] == 1
    assert all(m["max_entries"] > 0 for m in fill.values())
    # An empty LPM trie (no pod CIDRs, no source ranges here) is charged nothing.
    assert all(m["memlock"] > 0 for m in fill.values() if m["entries"]), fill

    text = show_node(node, bpfman_server)
    assert text.returncode == 0, text.stderr
    assert f"{VIP}:{PORT}/tcp  service {fe['service_id']}" in text.stdout
    assert f"new flows {CONNECTIONS}" in text.stdout

    collector = FrontendCollector(node.manager.stats)
    collector.track(plan)
    got = {s.name: s.value for m in collector.collect() for s in m.samples
           if s.labels == {"frontend": fe["frontend"], "name": NAME}}
    assert got["blixt_frontend_new_connections_total"] == CONNECTIONS
    # A late FIN may still land after `show` read the map; nothing goes back.
    assert got["blixt_frontend_packets_total"] >= fe["packets"]
    assert got["blixt_frontend_bytes_total"] >= fe["bytes"]


def test_show_fails_clearly_for_a_node_without_blixt(bpfman_server):
    out = show(bpfman_server, "--node", "no-such-node")
    assert out.returncode == 1
    assert "no blixt program for node 'no-such-node'" in out.stderr


def test_remove_undoes_what_the_agent_set_up(node, bpfman_server, bpfman):
    from test_traffic import service
    from blixt.dataplane.model import Dataplane
    from harness.traffic import PORT, VIP
    node.manager.apply(Dataplane.of([service(node)]))
    assert not node.client("tcp", VIP, PORT, "--count", 2)["errors"]
    res = subprocess.run(
        [sys.executable, "-m", "blixt", "dataplane", "remove", "--bpfman-socket", str(bpfman_server.socket),
         "--node", node.manager.settings.node, "--netns", node.topo.node.netns], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "removed 1 program(s)" in res.stdout, res.stdout
    assert not [p for p in bpfman.list() if p.metadata.get("blixt.io/node") == node.manager.settings.node]
    assert "blixt" not in node.topo.node.exec("nft", "list", "tables").stdout
    assert node.client("tcp", VIP, PORT, "--timeout", 1)["errors"]  # nothing translates any more
