"""The dataplane next to ordinary, hostile neighbours and odd traffic: other
tables setting and restoring marks, hairpin flows, UDP clients that were
there first, INVALID packets, traffic to a VIP's other ports, and routing
loops. Real bpfman, kernel, nft and traffic between namespaces."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from blixt.dataplane.model import Backend, Dataplane, Service
from harness import packets as P
from harness import paths
from harness.traffic import PORT, VIP, run_client

from test_traffic import service, who


def foreign(node, script: str) -> None:
    """Another table in the node namespace, as a CNI, mesh or VPN would add."""
    node.topo.node.exec("nft", "-f", "-", input=script)


def backend_id(node, pod: int) -> int:
    addr = node.topo.pods[pod].address
    return next(bid for bid, (a, _) in node.manager.current().backends.items() if str(a) == addr)


def route_vips_back_to_the_client(node, forward: bool = False) -> None:
    """The node routes the VIP range on to a router (the client): what was not
    translated leaves the node instead of dying for want of a route. With
    forward, the client routes it back: a loop, as between a node and its
    default router."""
    node.topo.node.exec("ip", "route", "add", "198.18.100.0/24", "via", node.topo.client.address)
    if forward:
        node.topo.client.exec("sysctl", "-qw", "net.ipv4.ip_forward=1")


def observer(node, *rules: str) -> None:
    """Counters after every NAT hook, in a table of their own."""
    body = "\n".join(f"  {r} counter" for r in rules)
    foreign(node, f"table ip observer {{ chain post {{ type filter hook postrouting priority 300; "
                  f"policy accept;\n{body}\n}}\n}}\n")


def observed(node) -> list[int]:
    text = node.topo.node.exec("nft", "-j", "list", "table", "ip", "observer").stdout
    return [e["counter"]["packets"] for o in json.loads(text)["nftables"] if "rule" in o
            for e in o["rule"]["expr"] if "counter" in e]


# 1. Only blixt's own decision triggers NAT.

def test_foreign_marks_on_traffic_to_other_destinations_change_nothing(node):
    node.manager.apply(Dataplane.of([service(node, (1, 0, 0)), service(node, (1, 0, 0), proto="udp")]))
    mark = node.manager.settings.marks.backend_mark(backend_id(node, 0))
    # A CNI's identity in the top 16 bits of every packet not to the VIP,
    # before conntrack: the mark names pod0's backend id.
    foreign(node, f"table ip cni {{ chain pre {{ type filter hook prerouting priority raw; policy accept;\n"
                  f"ip daddr != {VIP} meta mark set meta mark | 0x{mark:08x}\n}}\n}}\n")
    pod1 = node.topo.pods[1].address
    for proto in ("tcp", "udp"):
        direct = node.client(proto, pod1, PORT, "--count", 3)
        assert not direct["errors"], direct
        assert who(direct["answers"]) == {"pod1": 3}, f"{proto} to pod1 was redirected: {direct['answers']}"
        via_vip = node.client(proto, VIP, PORT, "--count", 3)
        assert who(via_vip["answers"]) == {"pod0": 3}, via_vip


# 2. A mark restored from the ct mark does not wipe the decision.

RESTORES = {
    "nft": ["nft", "-f", "-"],
    "iptables": ["iptables", "-t", "mangle", "-A", "PREROUTING", "-j", "CONNMARK", "--restore-mark"],
}


@pytest.mark.parametrize("restore", RESTORES)
def test_a_mark_restore_from_the_ct_mark_keeps_the_decision(node, restore):
    node.manager.apply(Dataplane.of([service(node), service(node, proto="udp")]))
    if restore == "nft":
        foreign(node, "table ip mesh { chain restore { type filter hook prerouting priority mangle; "
                      "policy accept;\nmeta mark set ct mark\n}\n}\n")
    else:
        paths.require_tool("iptables")
        node.topo.node.exec(*RESTORES[restore])
    for proto in ("tcp", "udp"):
        res = node.client(proto, VIP, PORT, "--count", 30, "--timeout", 2)
        assert not res["errors"], f"{proto}: {res['errors'][:3]}"
        assert set(who(res["answers"])) == {"pod0", "pod1", "pod2"}
    # The decision was consumed: established flows carry no blixt bits in their ct mark.
    field = node.manager.settings.marks.field
    marks = [int(m) for m in re.findall(r"mark=(\d+)", node.conntrack())]
    assert marks and not any(m & field for m in marks), marks


# 4. Hairpin: a backend reaching itself through its own frontend.

def test_a_backend_reaches_itself_through_the_vip(node):
    pod0 = node.topo.pods[0]
    node.manager.apply(Dataplane.of([
        Service(VIP, PORT, proto, (Backend(pod0.address, PORT),), name="self") for proto in ("tcp", "udp")]))
    for proto in ("tcp", "udp"):
        res = run_client(pod0, proto, VIP, PORT, "--count", 3)
        assert not res["errors"], f"{proto}: {res['errors']}"
        assert who(res["answers"]) == {"pod0": 3}
        # Masqueraded to the node, or the reply would skip the reverse NAT.
        assert all(a.split()[1].startswith("198.18.1.1:") for a in res["answers"]), res["answers"]


# 5. A UDP client that was there first.

def early_udp_client(node, sport: int, meanwhile) -> dict:
    """A UDP socket sends to the VIP, `meanwhile(node)` programs the dataplane,
    then the same socket tries again for up to a second."""
    client = node.topo.client.popen(
        sys.executable, "-m", "harness.traffic", "udp-wait", VIP, str(PORT), "--sport", str(sport),
        "--seconds", "1", cwd=str(paths.REPO / "tests"), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        assert client.stdout.readline().strip() == "sent"
        meanwhile(node)
        client.stdin.write("go\n")
        client.stdin.flush()
        out, err = client.communicate(timeout=30)
    finally:
        client.kill()
    res = json.loads(out)
    assert res["answer"], f"no answer within 1 s on the same socket: {res} {err}"
    return res


def test_a_udp_client_that_was_there_first_is_answered_once_programmed(node):
    route_vips_back_to_the_client(node)

    def program(node):
        early = node.topo.node.exec("conntrack", "-L", "-p", "udp", "--orig-dst", VIP, check=False).stdout
        assert "sport=45000" in early, f"the early datagram left no conntrack entry: {early}"
        node.manager.apply(Dataplane.of([service(node, proto="udp")]))

    res = early_udp_client(node, 45000, program)
    assert res["answer"].split()[0] in {"pod0", "pod1", "pod2"}


def test_a_udp_client_of_a_frontend_without_backends_is_answered_once_it_has_one(node):
    route_vips_back_to_the_client(node)
    node.manager.apply(Dataplane.of([service(node, (0, 0, 0), proto="udp")]))
    res = early_udp_client(node, 45001, lambda n: n.manager.apply(Dataplane.of([service(n, (1, 0, 0), proto="udp")])))
    assert res["answer"].split()[0] == "pod0", res


# 7. INVALID packets of blixt's flows are dropped, not leaked un-NATed.

def test_invalid_packets_of_blixt_flows_do_not_leak(node):
    node.manager.apply(Dataplane.of([service(node, (1, 0, 0))]))
    route_vips_back_to_the_client(node)
    pod0, client = node.topo.pods[0], node.topo.client
    observer(node, f"ip daddr {VIP} tcp dport {PORT}",                     # a request not DNATed
             f"ip saddr {pod0.address} tcp sport {PORT} ip daddr {client.address}")  # a reply not un-NATed
    assert not node.client("tcp", VIP, PORT, "--count", 2)["errors"]
    # A bad checksum makes conntrack call a packet INVALID (no entry, no NAT).
    bad_request = P.ipv4(client.address, VIP, 6, P.tcp(41000, PORT, flags=0x10))
    bad_reply = P.ipv4(pod0.address, client.address, 6, P.tcp(PORT, 41000, flags=0x18, payload=b"x"))
    for host, pkt in ((client, bad_request), (pod0, bad_reply)):
        _send_raw(host, _corrupt_tcp_checksum(pkt))
    assert observed(node) == [0, 0], "INVALID packets left the node untranslated"
    dropped = [int(re.search(r"packets (\d+)", line)[1])
               for line in node.manager.nft.dump().splitlines() if "ct state invalid" in line]
    assert len(dropped) == 2 and all(n >= 3 for n in dropped), dropped  # by blixt's rules


def _corrupt_tcp_checksum(pkt: bytes) -> bytes:
    ihl = (pkt[0] & 0xF) * 4
    return pkt[:ihl + 16] + b"\xde\xad" + pkt[ihl + 18:]


def _send_raw(host, pkt: bytes, count: int = 3) -> None:
    code = ("import socket,sys;s=socket.socket(socket.AF_INET,socket.SOCK_RAW,socket.IPPROTO_RAW);"
            f"p=bytes.fromhex('{pkt.hex()}');[s.sendto(p,(socket.inet_ntoa(p[16:20]),0)) for _ in range({count})]")
    host.exec(sys.executable, "-c", code)


# 9. Anything else sent to a VIP is refused, never routed on.

def test_other_ports_protocols_and_pings_to_a_vip_are_refused_not_looped(node):
    node.manager.apply(Dataplane.of([service(node)]))
    route_vips_back_to_the_client(node, forward=True)
    observer(node, f"ip daddr {VIP}")
    tcp = node.client("tcp", VIP, 9999, "--timeout", 3)
    assert tcp["errors"] and "ConnectionRefusedError" in tcp["errors"][0], tcp
    assert tcp["max_ms"] < 1000, "refused by a reset, not after a loop"
    udp = node.client("udp", VIP, PORT, "--timeout", 3)  # UDP is no listener here
    assert udp["errors"] and "ConnectionRefusedError" in udp["errors"][0], udp
    ping = node.topo.client.exec("ping", "-c", "2", "-W", "1", VIP, check=False)
    assert " 0 received" in ping.stdout, ping.stdout
    assert observed(node) == [0], "a packet to the VIP was routed on"
    # The listener itself still works.
    assert not node.client("tcp", VIP, PORT, "--count", 3)["errors"]
