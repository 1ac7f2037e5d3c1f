"""Real traffic between namespaces through programs bpfman loaded from the
OCI image, in both attach modes (the `node` fixture is parametrized)."""

from __future__ import annotations

import collections
import dataclasses
import json
import subprocess
import sys

import pytest

from blixt.bpfman import client as bc
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.plan import CapacityError
from blixt.node.manager import Attachment, Manager, Settings
from harness import paths
from harness.traffic import PORT, VIP, start_echo, stop_echo


def service(node, weights=(1, 1, 1), proto="tcp", masquerade=False, port=PORT, **kw):
    backends = [Backend(pod.address, PORT, w, masquerade) for pod, w in zip(node.topo.pods, weights)]
    return Service(VIP, port, proto, tuple(backends), name="test", **kw)


def who(answers):
    return collections.Counter(a.split()[0] for a in answers)


def test_tcp_and_udp_reach_every_backend_and_replies_come_from_the_vip(node):
    node.manager.apply(Dataplane.of([service(node), service(node, proto="udp")]))
    tcp = node.client("tcp", VIP, PORT, "--count", 60, "--sport-base", 20000)
    assert not tcp["errors"]
    assert set(who(tcp["answers"])) == {"pod0", "pod1", "pod2"}
    # The backend sees the client's own address: no masquerade by default.
    assert all(a.split()[1].startswith(node.topo.client.address + ":") for a in tcp["answers"])
    # Connected UDP sockets only accept replies from the VIP: each answer proves reverse NAT.
    udp = node.client("udp", VIP, PORT, "--count", 60, "--sport-base", 30000)
    assert not udp["errors"]
    assert set(who(udp["answers"])) == {"pod0", "pod1", "pod2"}


def test_weights_hold_over_new_connections_and_udp_flows(node):
    node.manager.apply(Dataplane.of([service(node, (70, 30, 0)), service(node, (70, 30, 0), proto="udp")]))
    for proto, base in (("tcp", 21000), ("udp", 31000)):
        res = node.client(proto, VIP, PORT, "--count", 500, "--sport-base", base)
        assert not res["errors"], res["errors"][:5]
        counts = who(res["answers"])
        assert counts["pod2"] == 0, f"{proto}: weight 0 got traffic: {counts}"
        share = counts["pod0"] / 500
        assert 0.65 <= share <= 0.75, f"{proto}: pod0 share {share:.3f} outside 70% ±5: {counts}"


def test_conntrack_shows_the_dnat_reply_tuple(node):
    node.manager.apply(Dataplane.of([service(node, (1, 0, 0))]))
    res = node.client("tcp", VIP, PORT, "--count", 1)
    assert res["answers"][0].startswith("pod0")
    table = node.conntrack()
    pod0 = node.topo.pods[0].address
    lines = [l for l in table.splitlines() if f"dst={VIP}" in l and f"src={pod0}" in l]
    assert lines, f"no DNAT entry for {VIP} -> {pod0} in:\n{table}"
    assert f"dport={PORT}" in lines[0] and "tcp" in lines[0]


def test_service_without_backends_rejects(node):
    node.manager.apply(Dataplane.of([service(node, (0, 0, 0)), service(node, (0, 0, 0), proto="udp")]))
    tcp = node.client("tcp", VIP, PORT, "--count", 1)
    assert tcp["errors"] and "ConnectionRefusedError" in tcp["errors"][0], tcp
    assert tcp["max_ms"] < 1000  # a reset, not a timeout
    udp = node.client("udp", VIP, PORT, "--count", 1)
    assert udp["errors"] and "ConnectionRefusedError" in udp["errors"][0], udp


def test_masquerade_bit_shows_node_address_to_backend(node):
    node.manager.apply(Dataplane.of([service(node, (1, 0, 0), masquerade=True)]))
    res = node.client("tcp", VIP, PORT, "--count", 3)
    assert not res["errors"]
    node_side = node.topo.pods[0].address.rsplit(".", 1)[0] + ".1"
    assert all(a.split()[1].startswith(node_side + ":") for a in res["answers"]), res["answers"]


def test_backend_change_keeps_established_connections(node):
    node.manager.apply(Dataplane.of([service(node, (1, 0, 0))]))
    hold = node.topo.client.popen(
        sys.executable, "-m", "harness.traffic", "hold", VIP, str(PORT), "--seconds", "3",
        cwd=str(paths.REPO / "tests"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert hold.stdout.readline().strip() == "connected"
        # Move the service to pod1 while the connection to pod0 is open.
        node.manager.apply(Dataplane.of([service(node, (0, 1, 0))]))
        fresh = node.client("tcp", VIP, PORT, "--count", 20, "--sport-base", 22000)
        out, err = hold.communicate(timeout=30)
    finally:
        hold.kill()
    held = json.loads(out)
    assert not held["errors"], held
    assert len(held["answers"]) > 10
    assert set(who(held["answers"])) == {"pod0"}, "established flow moved or broke"
    assert set(who(fresh["answers"])) == {"pod1"}, "new connections did not use the new set"


def test_port_reuse_loop_does_not_stall(node):
    """2,000 short connections from 20 source ports: each port is reused 100
    times while conntrack still holds the previous flow in TIME_WAIT."""
    node.manager.apply(Dataplane.of([service(node)]))
    res = node.client("tcp", VIP, PORT, "--count", 2000, "--sport-base", 40000, "--sport-range", 20,
                      timeout=300)
    assert not res["errors"], res["errors"][:5]
    assert len(res["answers"]) == 2000
    slow = [d for d in res["durations_ms"] if d > 100]
    assert not slow, f"{len(slow)} connections stalled over 100 ms (worst {max(slow):.0f} ms)"


def test_capacity_error_names_map_and_keeps_state(node):
    node.manager.apply(Dataplane.of([service(node)], local_addresses=["198.18.0.1"]))
    before = node.manager.current()
    too_many = [f"203.0.113.{i}" for i in range(1, 255)] + [f"198.51.100.{i}" for i in range(1, 10)]
    with pytest.raises(CapacityError) as exc:
        node.manager.apply(Dataplane.of([service(node, (0, 1, 0))], local_addresses=too_many))
    assert "blixt_local_addrs" in str(exc.value) and "256" in str(exc.value)
    assert node.manager.current() == before
    res = node.client("tcp", VIP, PORT, "--count", 30, "--sport-base", 23000)
    assert len(who(res["answers"])) == 3  # still the old, three-backend set


def test_counters_count_packets_bytes_and_new_flows(node):
    plan = node.manager.apply(Dataplane.of([service(node), service(node, proto="udp")]))
    node.client("tcp", VIP, PORT, "--count", 5, "--sport-base", 24000)
    node.client("udp", VIP, PORT, "--count", 7, "--sport-base", 34000)
    stats = node.manager.stats()
    tcp_id = next(i for k, i in plan.service_ids.items() if k[2] == 6)
    udp_id = next(i for k, i in plan.service_ids.items() if k[2] == 17)
    assert stats[tcp_id].new_flows == 5
    assert stats[udp_id].new_flows == 0  # UDP counts packets and bytes only (blixt.h)
    assert stats[tcp_id].packets >= 5 * 4  # SYN, ACK, data, FIN, ACK at least per flow
    assert stats[udp_id].packets == 7
    assert stats[udp_id].bytes >= 7 * (14 + 20 + 8)


def test_restart_adopts_programs_and_rewrites_nothing(node, bpfman):
    from blixt.node.manager import Manager
    node.manager.apply(Dataplane.of([service(node)]))
    ids = sorted(p.id for p in node.manager.programs)
    again = Manager(bpfman, node.manager.settings)
    again.ensure_loaded()
    assert again.adopted
    assert sorted(p.id for p in again.programs) == ids
    assert again.apply(Dataplane.of([service(node)])).empty
    res = node.client("tcp", VIP, PORT, "--count", 10, "--sport-base", 25000)
    assert not res["errors"]


def test_restart_after_the_uplink_was_made_again_attaches_again(node, bpfman):
    """A restarted agent adopts the loaded program only where its TCX link is
    live: deleting the interface leaves bpfman listing a link whose kernel
    link is defunct (no device), and the new interface of the same name would
    get no classification at all."""
    from blixt.node import links
    from blixt.node.manager import Manager
    node.manager.apply(Dataplane.of([service(node)]))
    topo = node.topo
    prog = node.manager.programs[0]
    topo.node.exec("ip", "link", "del", "eth-client")  # takes the client's eth0 with it
    topo._link(topo.node.netns, "eth-client", "198.18.0.1", topo.client.netns, "eth0", "198.18.0.2")
    topo.client.exec("ip", "route", "add", "default", "via", topo.node.address)
    topo.client.exec("ip", "route", "add", "198.18.100.0/24", "via", topo.node.address)
    before = links.tcx_ingress(prog.id, topo.node.netns)
    assert "eth-client" not in before and links.GONE in before, before
    again = Manager(bpfman, node.manager.settings)
    again.ensure_loaded()
    assert again.adopted and [p.id for p in again.programs] == [prog.id]
    assert links.tcx_ingress(prog.id, topo.node.netns) == sorted(a.iface for a in node.manager.settings.attachments)
    res = node.client("tcp", VIP, PORT, "--count", 10, "--sport-base", 25500)
    assert not res["errors"] and len(who(res["answers"])) == 3


def test_udp_flows_follow_a_removed_backend_and_a_removed_service(node):
    """UDP conntrack entries keep their DNAT binding while packets flow; the
    manager flushes those of removed backends and services, as kube-proxy does."""
    node.manager.apply(Dataplane.of([service(node, (1, 0, 0), proto="udp")]))
    first = node.client("udp", VIP, PORT, "--count", 1, "--sport-base", 36000)
    assert who(first["answers"]) == {"pod0": 1}
    node.manager.apply(Dataplane.of([service(node, (0, 1, 0), proto="udp")]))
    again = node.client("udp", VIP, PORT, "--count", 1, "--sport-base", 36000)
    assert who(again["answers"]) == {"pod1": 1}, "the flow stayed on the removed backend"
    # A deleted service's flows go too: the next packet is not DNATed at all.
    node.manager.apply(Dataplane())
    assert f"dport={PORT}" not in node.conntrack()


def _background(host, *args) -> subprocess.Popen:
    return host.popen(sys.executable, "-m", "harness.traffic", *map(str, args), cwd=str(paths.REPO / "tests"),
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


# A layout sharing no bit with the default one (0xffff3000).
OTHER_MARKS = MarkConfig(id_shift=4, id_mask=0x00000FF0, masq_mark=0x1, reject_mark=0x2)


@pytest.mark.parametrize("change", ["marks", "priority"])
def test_a_settings_change_reloads_with_no_gap(node, bpfman, change):
    """New connections, an established one and client-IP affinity all carry
    on while the program is replaced: the new one gets filled maps before it
    is attached, and the old one goes last."""
    desired = Dataplane.of([service(node), service(node, proto="udp"), service(node, port=8081, affinity_timeout=600)])
    node.manager.apply(desired)
    sticky = who(node.client("tcp", VIP, 8081, "--count", 5)["answers"])
    assert len(sticky) == 1
    old_ids = {p.id for p in node.manager.programs}
    hold = _background(node.topo.client, "hold", VIP, PORT, "--seconds", 6)
    loops = [_background(node.topo.client, proto, VIP, PORT, "--count", 150, "--interval", 0.03,
                         "--timeout", 2, "--sport-base", base) for proto, base in (("tcp", 50000), ("udp", 51000))]
    try:
        assert hold.stdout.readline().strip() == "connected"
        settings = node.manager.settings
        new = dataclasses.replace(settings, **({"marks": OTHER_MARKS} if change == "marks" else {"priority": 60}))
        successor = Manager(bpfman, new)
        successor.ensure_loaded()
        results = [json.loads(p.communicate(timeout=60)[0]) for p in (hold, *loops)]
    finally:
        for p in (hold, *loops):
            p.kill()
    held, tcp, udp = results
    assert not held["errors"] and set(who(held["answers"])) and len(who(held["answers"])) == 1, held
    assert not tcp["errors"], f"new TCP connections failed across the reload: {tcp['errors'][:3]}"
    assert not udp["errors"], f"new UDP flows failed across the reload: {udp['errors'][:3]}"
    assert len(tcp["answers"]) == len(udp["answers"]) == 150
    # The old program is gone; the new one holds everything, affinity included.
    assert not old_ids & {p.id for p in bpfman.list()}
    assert successor.apply(desired).empty
    assert who(node.client("tcp", VIP, 8081, "--count", 5)["answers"]) == sticky
    node.manager = successor  # the fixture removes what is loaded now


def test_a_layer3_device_is_classified_from_its_ip_header(attach_mode, bpfman, bytecode_image, netns):
    """On a device whose packets carry no Ethernet header (tun here; ipip and
    wireguard are the same to TC), the program still finds the IP header."""
    topo = netns(pods=1)
    node = topo.node
    node.exec("ip", "tuntap", "add", "dev", "tun0", "mode", "tun")
    node.exec("ip", "addr", "add", "198.19.0.1/30", "dev", "tun0")
    node.exec("ip", "link", "set", "tun0", "up")
    manager = Manager(bpfman, Settings(node="l3-node", bytecode=bc.Image(bytecode_image),
                                       attachments=(Attachment("tun0"),), mode=attach_mode, netns=node.netns))
    servers = start_echo(topo.pods)
    try:
        manager.ensure_loaded()
        vip = "198.18.101.10"
        manager.apply(Dataplane.of([Service(vip, PORT, "udp", (Backend(topo.pods[0].address, PORT),))]))
        res = json.loads(node.exec(sys.executable, "-m", "harness.tunpeer", "tun0", "198.19.0.2", vip, str(PORT),
                                   cwd=str(paths.REPO / "tests")).stdout)
        assert res["from"] == f"{vip}:{PORT}", f"no translated reply through the tun device: {res}"
        assert res["payload"].startswith("pod0 198.19.0.2:"), res
    finally:
        stop_echo(servers)
        manager.remove()


def test_memory_follows_what_is_programmed(node):
    """Maps are not preallocated: an empty node locks little, 10k frontends x
    10 backends far less than the capacity would."""
    node.manager.apply(Dataplane())
    empty = {name: m.memlock() for name, m in node.manager.maps.items()}
    assert sum(empty.values()) <= 20 * 2**20, empty
    pool = [(f"10.1.{i // 250}.{i % 250 + 1}", 8080) for i in range(1000)]
    services = [Service(f"10.96.{i // 250}.{i % 250 + 1}", 80, "tcp",
                        tuple(Backend(*pool[(i + 97 * j) % 1000]) for j in range(10))) for i in range(10_000)]
    node.manager.apply(Dataplane.of(services))
    full = {name: m.memlock() for name, m in node.manager.maps.items()}
    assert sum(full.values()) <= 150 * 2**20, full
    assert full["blixt_slots"] > empty["blixt_slots"]  # it follows the entries
    node.manager.apply(Dataplane())


def test_the_nodes_own_traffic_to_a_frontend_is_balanced_with_its_weights(node):
    """Processes on the node never pass TC ingress: the nft output path serves
    them from the same slot table (a Gateway's frontend here)."""
    from harness.traffic import run_client
    node.topo.node.exec("ip", "route", "add", "198.18.100.0/24", "dev", "eth-client")  # connect() needs a route
    node.manager.apply(Dataplane.of([service(node, weights=(3, 1, 0)), service(node, proto="udp")]))
    tcp = run_client(node.topo.node, "tcp", VIP, PORT, "--count", 80)
    assert not tcp["errors"]
    counts = who(tcp["answers"])
    assert set(counts) == {"pod0", "pod1"} and counts["pod0"] > counts["pod1"], counts  # 3:1, pod2 weight 0
    udp = run_client(node.topo.node, "udp", VIP, PORT, "--count", 30)
    assert not udp["errors"] and set(who(udp["answers"])) == {"pod0", "pod1", "pod2"}
    # Without backends the output path rejects, as the TC path does for others.
    node.manager.apply(Dataplane.of([service(node, weights=(0, 0, 0))]))
    res = run_client(node.topo.node, "tcp", VIP, PORT, "--count", 2)
    assert len(res["errors"]) == 2 and all("Refused" in e for e in res["errors"]), res
