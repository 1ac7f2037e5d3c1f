"""The nftables NAT table against the real kernel, in namespaces. A separate
marker table stands in for the BPF program: it sets skb->mark at priority
raw, before conntrack and NAT, on packets to a fake VIP."""

from __future__ import annotations

import json
import re
import selectors
import subprocess
import sys
import time
from ipaddress import IPv4Address

import pytest

from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.nft import Diff, NatTable, NftError
from harness import paths

pytestmark = pytest.mark.netns

MARKS = MarkConfig()
VIP = "198.18.100.1"
VIP_PORT = 80  # backends listen elsewhere, so the port translation shows too
POD_PORTS = (8080, 9090)
MARKER = "blixt_test_marker"


class Lab:
    """Client, node (with the NatTable) and two pods serving their names."""

    def __init__(self, topo):
        self.topo = topo
        self.node = topo.node
        self.table = NatTable(topo.node.netns, MARKS)
        self.servers: list[subprocess.Popen] = []
        try:
            topo.client.exec("ip", "route", "add", "198.18.100.0/24", "via", topo.node.address)
            for i, pod in enumerate(topo.pods):
                proc = pod.popen(sys.executable, "-m", "harness.traffic", "serve", f"pod{i}", "--port",
                                 str(POD_PORTS[i]), cwd=str(paths.REPO / "tests"), stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, text=True)
                self.servers.append(proc)
                _wait_ready(proc, f"server in {pod.netns}")
        except BaseException:
            self.close()
            raise

    def backend(self, i: int) -> tuple[str, int]:
        return (self.topo.pods[i].address, POD_PORTS[i])

    def mark(self, value: int, hook: str = "prerouting") -> None:
        """Mark every packet to VIP:VIP_PORT with `value`, like the classifier would."""
        t = f"ip {MARKER}"
        script = (f"add table {t}\ndelete table {t}\n"
                  f"table {t} {{ chain stamp {{ type filter hook {hook} priority raw; policy accept;\n"
                  f"  ip daddr {VIP} meta l4proto {{ tcp, udp }} th dport {VIP_PORT} meta mark set 0x{value:08x}\n"
                  f"}}\n}}\n")
        self.node.exec("nft", "-f", "-", input=script)

    def client(self, proto: str, host=None, timeout: float = 3.0) -> dict:
        """One connection (TCP) or flow (UDP) to the VIP: {"answers": [...], "errors": [...]}."""
        res = (host or self.topo.client).exec(
            sys.executable, "-m", "harness.traffic", proto, VIP, str(VIP_PORT), "--timeout", str(timeout),
            cwd=str(paths.REPO / "tests"), timeout=timeout + 30)
        return json.loads(res.stdout)

    def flows(self, proto: str) -> list[dict]:
        """conntrack entries to the VIP: {"orig": {...}, "reply": {...}}."""
        out = self.node.exec("conntrack", "-L", "-p", proto, "-d", VIP, check=False).stdout
        flows = []
        for line in out.splitlines():
            pairs = re.findall(r"(src|dst|sport|dport)=(\S+)", line)
            if len(pairs) >= 8:
                flows.append({"orig": dict(pairs[:4]), "reply": dict(pairs[4:8]), "line": line})
        return flows

    def counter(self, chain: str, needle: str) -> int:
        """Packets counted by the rule in `chain` containing `needle`."""
        text = self.node.exec("nft", "list", "chain", "ip", self.table.name, chain).stdout
        for line in text.splitlines():
            if needle in line:
                return int(re.search(r"counter packets (\d+)", line)[1])
        raise AssertionError(f"no rule with {needle!r} in:\n{text}")

    def close(self) -> None:
        for proc in self.servers:  # all killed before any wait can raise
            proc.kill()
        for proc in self.servers:
            proc.wait(timeout=10)
            proc.stdout.close()


def _wait_ready(proc: subprocess.Popen, what: str, timeout: float = 15) -> None:
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout):
            raise TimeoutError(f"{what}: not ready after {timeout}s")
    line = proc.stdout.readline().strip()
    assert line == "ready", f"{what} did not start: {line!r}"


@pytest.fixture
def lab(netns):
    lab = Lab(netns(pods=2))
    try:
        lab.table.ensure()
        yield lab
    finally:
        lab.close()  # the netns fixture then removes the namespaces, and the tables with them


def _endpoints(mapping) -> dict[int, tuple[IPv4Address, int]]:
    return {bid: (IPv4Address(a), p) for bid, (a, p) in mapping.items()}


# -- traffic --------------------------------------------------------------


def test_tcp_reaches_the_marked_backend_and_replies_come_from_the_vip(lab):
    lab.table.apply({1: lab.backend(0), 2: lab.backend(1)})
    for bid, pod in ((1, 0), (2, 1)):
        lab.mark(MARKS.backend_mark(bid))
        res = lab.client("tcp")
        # The client's connected socket got its answer: the reply came from VIP:80.
        assert not res["errors"], res
        name, peer = res["answers"][0].split()[:2]
        assert name == f"pod{pod}"
        assert peer.startswith(lab.topo.client.address + ":")  # no masquerade bit
    flows = lab.flows("tcp")
    for pod in (0, 1):
        addr, port = lab.backend(pod)
        assert any(f["orig"]["dst"] == VIP and f["orig"]["dport"] == str(VIP_PORT)
                   and f["reply"]["src"] == addr and f["reply"]["sport"] == str(port)
                   and f["reply"]["dst"] == lab.topo.client.address for f in flows), flows


def test_udp_reaches_the_marked_backend_and_replies_come_from_the_vip(lab):
    lab.table.apply({1: lab.backend(0), 2: lab.backend(1)})
    lab.mark(MARKS.backend_mark(2))
    res = lab.client("udp")
    assert not res["errors"], res  # a connected UDP socket takes replies from VIP:80 only
    assert res["answers"][0].split()[0] == "pod1"
    addr, port = lab.backend(1)
    assert any(f["reply"]["src"] == addr and f["reply"]["sport"] == str(port) for f in lab.flows("udp"))


def test_masquerade_bit_makes_the_backend_see_the_node(lab):
    lab.table.apply({2: lab.backend(1)})
    lab.mark(MARKS.backend_mark(2) | MARKS.masq_mark)
    for proto in ("tcp", "udp"):
        res = lab.client(proto)
        assert not res["errors"], res
        name, peer = res["answers"][0].split()[:2]
        assert name == "pod1"
        assert peer.split(":")[0] == "198.18.2.1"  # the node's address towards pod1
    lab.mark(MARKS.backend_mark(2))
    res = lab.client("tcp")
    assert res["answers"][0].split()[1].split(":")[0] == lab.topo.client.address


@pytest.mark.parametrize("destination", ["unrouted", "local"])
def test_reject_bit_refuses_tcp_with_rst_and_udp_with_port_unreachable(lab, destination):
    lab.table.apply({1: lab.backend(0)})
    lab.mark(MARKS.reject_mark)
    # Rejects happen in prerouting, before routing: a VIP the node has no
    # route for (which routing would answer "network unreachable") and a
    # local address both get the kube-proxy answers.
    if destination == "local":
        # Local, with nothing listening: the stack would refuse too, so the
        # counters below are what tell our rules answered.
        lab.node.exec("ip", "addr", "add", f"{VIP}/32", "dev", "lo")
    tcp = lab.client("tcp", timeout=5)
    assert tcp["errors"] and tcp["errors"][0].startswith("ConnectionRefusedError"), tcp
    udp = lab.client("udp", timeout=5)
    assert udp["errors"] and udp["errors"][0].startswith("ConnectionRefusedError"), udp
    assert lab.counter("rejects", "tcp reset") == 1
    assert lab.counter("rejects", "l4proto udp") == 1


def test_output_chain_translates_locally_generated_packets(lab):
    """A packet the node itself sends, marked where a TC egress program would."""
    lab.table.apply({1: lab.backend(0)})
    lab.node.exec("ip", "route", "add", "198.18.100.0/24", "dev", "eth-client")  # any route will do
    lab.mark(MARKS.backend_mark(1), hook="output")
    res = lab.client("tcp", host=lab.node)
    assert not res["errors"], res
    assert res["answers"][0].split()[0] == "pod0"


# -- table management -----------------------------------------------------


def test_ensure_is_idempotent_and_keeps_the_map(lab):
    t = lab.table
    t.apply({1: lab.backend(0), 7: ("10.1.2.3", 53)})
    before = t.dump()
    assert t.ensure() is False
    assert t.dump() == before
    assert t.backends() == _endpoints({1: lab.backend(0), 7: ("10.1.2.3", 53)})


def test_ensure_repairs_tampered_chains_and_drops_foreign_ones(lab):
    t = lab.table
    t.apply({1: lab.backend(0)})
    want = t.dump(elements=False)
    tamper = (f"flush chain ip {t.name} prerouting\n"
              f"add rule ip {t.name} prerouting counter accept\n"
              f"delete chain ip {t.name} rejects\n"
              f"add chain ip {t.name} extra {{ type filter hook forward priority 10; }}\n"
              f"add rule ip {t.name} extra drop\n")
    lab.node.exec("nft", "-f", "-", input=tamper)
    # The kernel takes a table flag change only in a transaction of its own.
    lab.node.exec("nft", "add", "table", "ip", t.name, "{ flags dormant; }")
    assert t.ensure() is True
    assert t.ensure() is False
    # Chain order in the listing is creation order, so compare chains as sets.
    assert _blocks(t.dump(elements=False)) == _blocks(want)
    assert t.backends() == _endpoints({1: lab.backend(0)})
    lab.mark(MARKS.backend_mark(1))
    assert lab.client("tcp")["answers"][0].startswith("pod0")


def test_ensure_follows_a_changed_mark_layout(netns):
    topo = netns(pods=0)
    old = NatTable(topo.node.netns, MARKS)
    old.ensure()
    old.apply({1: ("10.0.0.1", 80)})
    new_marks = MarkConfig(id_shift=8, id_mask=0x00000F00)
    new = NatTable(topo.node.netns, new_marks)
    assert new.ensure() is True
    assert "0x00000f00" in new.dump(elements=False)
    # The old key names no backend under the new layout: ignored, then removed as stray.
    assert new.backends() == {}
    diff = new.apply({1: ("10.0.0.2", 81)})
    assert diff.stray == (MARKS.backend_mark(1),) and list(diff.added) == [1]
    assert new.backends() == _endpoints({1: ("10.0.0.2", 81)})


def _blocks(listing: str) -> set[str]:
    return set(re.findall(r"\t(?:chain|map) \S+ \{.*?\n\t\}", listing, re.S))


def test_apply_adds_changes_and_removes(lab):
    t = lab.table
    d = t.apply({1: ("10.0.0.1", 80), 2: ("10.0.0.2", 80), 3: ("10.0.0.3", 80)})
    assert d == Diff(added=_endpoints({1: ("10.0.0.1", 80), 2: ("10.0.0.2", 80), 3: ("10.0.0.3", 80)}))
    want = {1: ("10.0.0.1", 80), 2: (IPv4Address("10.0.0.9"), 80), 3: ("10.0.0.3", 8443), 4: ("10.0.0.4", 1)}
    d = t.apply(want)
    assert d.added == _endpoints({4: ("10.0.0.4", 1)})
    assert d.changed == {2: ((IPv4Address("10.0.0.2"), 80), (IPv4Address("10.0.0.9"), 80)),
                         3: ((IPv4Address("10.0.0.3"), 80), (IPv4Address("10.0.0.3"), 8443))}
    assert not d.removed
    assert t.backends() == _endpoints(want)
    d = t.apply({2: want[2], 4: want[4]})
    assert d.removed == _endpoints({1: want[1], 3: want[3]}) and not d.added and not d.changed
    assert t.backends() == _endpoints({2: want[2], 4: want[4]})
    assert "10.0.0.1" not in t.dump() and "8443" not in t.dump()
    assert t.apply({2: want[2], 4: want[4]}).empty  # nothing to do: no transaction


def test_apply_changes_puts_and_deletes_only_what_it_is_told(lab):
    t = lab.table
    t.apply({1: ("10.0.0.1", 80), 2: ("10.0.0.2", 80)})
    d = t.apply_changes(put={2: ("10.0.0.20", 80), 3: ("10.0.0.3", 80)}, delete=[1, 99])
    assert list(d.added) == [3] and list(d.changed) == [2] and list(d.removed) == [1]
    assert t.backends() == _endpoints({2: ("10.0.0.20", 80), 3: ("10.0.0.3", 80)})
    with pytest.raises(ValueError, match="backend 3: both"):
        t.apply_changes(put={3: ("10.0.0.3", 81)}, delete=[3])


def test_stray_map_keys_are_ignored_and_then_removed(lab):
    t = lab.table
    t.apply({1: ("10.0.0.1", 80)})
    lab.node.exec("nft", "add", "element", "ip", t.name, "backends", "{ 0x00000001 : 10.9.9.9 . 9 }")
    assert t.backends() == _endpoints({1: ("10.0.0.1", 80)})
    d = t.apply({1: ("10.0.0.1", 80)})
    assert d.stray == (1,) and "10.9.9.9" not in t.dump()


@pytest.mark.parametrize("entry, message", [
    ({0: ("10.0.0.1", 80)}, r"backend 0 .*outside 1\.\."),
    ({MARKS.max_backend_id + 1: ("10.0.0.1", 80)}, rf"backend {MARKS.max_backend_id + 1} "),
    ({"3": ("10.0.0.1", 80)}, r"backend '3' .*must be an int"),
    ({5: ("10.0.0.1", 0)}, r"backend 5 .*port"),
    ({5: ("10.0.0.1", 65536)}, r"backend 5 .*port"),
    ({5: ("10.0.0.1", "80")}, r"backend 5 .*port"),
    ({5: ("10.0.0.1", True)}, r"backend 5 .*port"),
    ({5: ("fd00::1", 80)}, r"backend 5 .*IPv6"),
    ({5: ("10.0.0.256", 80)}, r"backend 5 .*not an IPv4"),
    ({5: ("0.0.0.0", 80)}, r"backend 5 .*cannot be a backend"),
    ({5: ("224.0.0.1", 80)}, r"backend 5 .*cannot be a backend"),
    ({5: ["10.0.0.1", 80]}, r"backend 5 .*tuple"),
    ({5: (167772161, 80)}, r"backend 5 .*str or IPv4Address"),
])
def test_invalid_input_names_the_entry_and_changes_nothing(lab, entry, message):
    t = lab.table
    t.apply({1: ("10.0.0.1", 80)})
    before = t.dump()
    with pytest.raises(ValueError, match=message):
        t.apply({1: ("10.0.0.1", 80), 2: ("10.0.0.2", 80), **entry})
    with pytest.raises(ValueError, match=message):
        t.apply_changes(put={2: ("10.0.0.2", 80), **entry}, delete=[1])
    assert t.dump() == before


def test_nft_errors_carry_the_command_and_stderr(netns):
    topo = netns(pods=0)
    t = NatTable(topo.node.netns, MARKS)  # no ensure(): the table is absent
    assert t.backends() == {}
    with pytest.raises(NftError) as err:
        t.apply({1: ("10.0.0.1", 80)})
    assert "nft" in err.value.cmd and "No such file or directory" in err.value.stderr
    t.delete()  # absent: nothing to do
    t.ensure()
    t.delete()
    assert "blixt" not in topo.node.exec("nft", "list", "tables").stdout


def test_one_hundred_thousand_backends_in_one_transaction(netns, capsys):
    topo = netns(pods=0)
    # 20 id bits: the default 16 name at most 65535 backends.
    t = NatTable(topo.node.netns, MarkConfig(id_shift=8, id_mask=0x0FFFFF00,
                                             masq_mark=0x10000000, reject_mark=0x20000000))
    t.ensure()
    want = {i: (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1 + i % 65535) for i in range(1, 100_001)}
    start = time.monotonic()
    diff = t.apply(want)
    fill = time.monotonic() - start
    assert len(diff.added) == 100_000
    assert t.backends() == _endpoints(want)
    # Churn: a quarter removed, a quarter changed, a quarter new.
    churn = {i: v for i, v in want.items() if i > 25_000}
    churn.update({i: (v[0], v[1] % 65535 + 1) for i, v in churn.items() if i <= 50_000})
    churn.update({i: (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 80) for i in range(100_001, 125_001)})
    start = time.monotonic()
    diff = t.apply(churn)
    redo = time.monotonic() - start
    assert (len(diff.added), len(diff.changed), len(diff.removed)) == (25_000, 25_000, 25_000)
    assert t.backends() == _endpoints(churn)
    with capsys.disabled():
        print(f"\n100,000 backends: fill {fill:.2f}s; churn of 75,000 over 100,000 {redo:.2f}s")
