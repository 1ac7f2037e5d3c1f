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
from blixt.dataplane.plan import NftView, nft_changes
from blixt.node.nft import NatTable, NftError
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

    def program(self, backends: dict, frontend: bool = True) -> None:
        """The table holding these backends, with VIP:VIP_PORT (TCP and UDP) a frontend."""
        self.table.rebuild(view(backends, frontend))

    def close(self) -> None:
        for proc in self.servers:  # all killed before any wait can raise
            proc.kill()
        for proc in self.servers:
            proc.wait(timeout=10)
            proc.stdout.close()


def view(backends: dict, frontend: bool = True) -> NftView:
    vip = int(IPv4Address(VIP))
    eps = {bid: (IPv4Address(a), p) for bid, (a, p) in backends.items()}
    return NftView(backends=eps, frontends=frozenset({(vip, 6, VIP_PORT), (vip, 17, VIP_PORT)} if frontend else ()),
                   vips=frozenset({vip}) if frontend else frozenset())


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
        yield lab
    finally:
        lab.close()  # the netns fixture then removes the namespaces, and the tables with them


def _endpoints(mapping) -> dict[int, tuple[IPv4Address, int]]:
    return {bid: (IPv4Address(a), p) for bid, (a, p) in mapping.items()}


# -- traffic --------------------------------------------------------------


def test_tcp_reaches_the_marked_backend_and_replies_come_from_the_vip(lab):
    lab.program({1: lab.backend(0), 2: lab.backend(1)})
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
    # Consumed: blixt's bits do not stay in the connections' ct marks.
    assert all("mark=0 " in f["line"] for f in flows), flows


def test_udp_reaches_the_marked_backend_and_replies_come_from_the_vip(lab):
    lab.program({1: lab.backend(0), 2: lab.backend(1)})
    lab.mark(MARKS.backend_mark(2))
    res = lab.client("udp")
    assert not res["errors"], res  # a connected UDP socket takes replies from VIP:80 only
    assert res["answers"][0].split()[0] == "pod1"
    addr, port = lab.backend(1)
    assert any(f["reply"]["src"] == addr and f["reply"]["sport"] == str(port) for f in lab.flows("udp"))


def test_a_mark_on_a_destination_blixt_does_not_own_is_ignored(lab):
    """Other tables share the mark: only a decision for a frontend counts."""
    lab.program({1: lab.backend(0), 2: lab.backend(1)}, frontend=False)
    lab.mark(MARKS.backend_mark(2))
    res = lab.client("tcp", timeout=2)
    assert res["errors"], f"a mark alone was NATed: {res}"
    assert lab.counter("balance", "dnat") == 0


def test_masquerade_bit_makes_the_backend_see_the_node(lab):
    lab.program({2: lab.backend(1)})
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
    lab.program({1: lab.backend(0)})
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
    assert lab.counter("guard", "tcp reset") == 1
    assert lab.counter("guard", "l4proto udp") == 1


# -- table management -----------------------------------------------------


def test_rebuild_is_idempotent_and_reads_back(lab):
    t = lab.table
    lab.program({1: lab.backend(0), 7: ("10.1.2.3", 53)})
    before = t.dump()
    lab.program({1: lab.backend(0), 7: ("10.1.2.3", 53)})
    assert t.dump() == before
    assert t.backends() == _endpoints({1: lab.backend(0), 7: ("10.1.2.3", 53)})


def test_update_adds_replaces_and_removes_elements_in_one_transaction(lab):
    t = lab.table
    old = view({1: ("10.0.0.1", 80), 2: ("10.0.0.2", 80), 3: ("10.0.0.3", 80)})
    t.rebuild(old)
    new = view({1: ("10.0.0.1", 80), 2: ("10.0.0.9", 80), 4: ("10.0.0.4", 1)}, frontend=False)
    for change in nft_changes(old, new):
        t.update(change)
    assert t.backends() == _endpoints({1: ("10.0.0.1", 80), 2: ("10.0.0.9", 80), 4: ("10.0.0.4", 1)})
    listing = t.dump()
    assert "10.0.0.3" not in listing and VIP not in listing  # frontends and vips went with the change
    # The endpoints set follows the map element for element (INVALID drops).
    assert re.search(r"set endpoints \{[^}]*elements = \{ [^}]*10\.0\.0\.9 \. 80", listing), listing
    assert "10.0.0.2 . 80" not in listing


def test_update_puts_tampered_rules_right_and_fails_without_the_table(lab):
    t = lab.table
    lab.program({1: lab.backend(0)})
    want = t.dump(elements=False)
    lab.node.exec("nft", "-f", "-", input=f"flush chain ip {t.name} balance\n"
                                           f"add rule ip {t.name} balance counter accept\n")
    add, _ = nft_changes(view({1: lab.backend(0)}), view({1: lab.backend(0), 2: lab.backend(1)}))
    t.update(add)
    assert _blocks(t.dump(elements=False)) == _blocks(want)
    lab.mark(MARKS.backend_mark(2))
    assert lab.client("tcp")["answers"][0].startswith("pod1")
    # Without the table an update must fail (its elements would be lost): the manager rebuilds.
    t.delete()
    with pytest.raises(NftError):
        t.update(add)
    with pytest.raises(NftError):  # nor without re-declaring the chains
        t.update(add, chains=False)


def test_rebuild_follows_a_changed_mark_layout(netns):
    topo = netns(pods=0)
    NatTable(topo.node.netns, MARKS).rebuild(view({1: ("10.0.0.1", 80)}))
    new_marks = MarkConfig(id_shift=8, id_mask=0x00000F00)
    new = NatTable(topo.node.netns, new_marks)
    # The old key names no backend under the new layout: not read back.
    assert new.backends() == {}
    new.rebuild(view({1: ("10.0.0.2", 81)}))
    assert "0x00000f00" in new.dump(elements=False)
    assert new.backends() == _endpoints({1: ("10.0.0.2", 81)})


def _blocks(listing: str) -> set[str]:
    return set(re.findall(r"\t(?:chain|map|set) \S+ \{.*?\n\t\}", re.sub(r"counter packets \d+ bytes \d+", "counter", listing), re.S))


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
    lab.program({1: ("10.0.0.1", 80)})
    before = t.dump()
    with pytest.raises(ValueError, match=message):
        t.rebuild(NftView(backends={1: ("10.0.0.1", 80), **entry}))
    with pytest.raises(ValueError, match=message):
        t.update(nft_changes(NftView(), NftView(backends=entry))[0])
    assert t.dump() == before


def test_nft_errors_carry_the_command_and_stderr(netns):
    topo = netns(pods=0)
    t = NatTable(topo.node.netns, MARKS)  # the table is absent
    assert t.backends() == {} and not t.exists()
    with pytest.raises(NftError) as err:
        t.update(nft_changes(NftView(), view({1: ("10.0.0.1", 80)}))[0])
    assert "nft" in err.value.cmd and "No such file or directory" in err.value.stderr
    t.delete()  # absent: nothing to do
    t.rebuild(NftView())
    t.delete()
    assert "blixt" not in topo.node.exec("nft", "list", "tables").stdout


def _same_backends(got: dict, want: dict) -> None:
    """got == want, or a failure naming a few differences (pytest's own diff
    of two 100,000-entry dicts ran for minutes in CI)."""
    if got != want:
        wrong = sorted(k for k in got.keys() | want.keys() if got.get(k) != want.get(k))
        pytest.fail(f"{len(wrong)} of {len(want)} backends differ (read back {len(got)}): "
                    + ", ".join(f"{k}: {got.get(k)} != {want.get(k)}" for k in wrong[:10]))


def test_one_hundred_thousand_backends_in_one_transaction(netns, capsys):
    topo = netns(pods=0)
    # 20 id bits: the default 16 name at most 65535 backends.
    t = NatTable(topo.node.netns, MarkConfig(id_shift=8, id_mask=0x0FFFFF00,
                                             masq_mark=0x10000000, reject_mark=0x20000000))
    want = {i: (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 1 + i % 65535) for i in range(1, 100_001)}
    full = view(want)
    start = time.monotonic()
    t.rebuild(full)
    fill = time.monotonic() - start
    _same_backends(t.backends(), _endpoints(want))
    # Churn: a quarter removed, a quarter changed, a quarter new.
    churn = {i: v for i, v in want.items() if i > 25_000}
    churn.update({i: (v[0], v[1] % 65535 + 1) for i, v in churn.items() if i <= 50_000})
    churn.update({i: (f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 80) for i in range(100_001, 125_001)})
    start = time.monotonic()
    for change in nft_changes(full, view(churn)):
        t.update(change)
    redo = time.monotonic() - start
    _same_backends(t.backends(), _endpoints(churn))
    with capsys.disabled():
        print(f"\n100,000 backends: fill {fill:.2f}s; churn of 75,000 over 100,000 {redo:.2f}s")


def test_the_output_path_of_many_frontends_has_no_chain_or_anonymous_map_per_frontend(netns):
    """The kernel names each anonymous map of a table by scanning the table's
    sets, so a map (and chain) per frontend made a table of 10,000 frontends
    take 105 s to write (tests/bench/README.md). Plain frontends share one
    chain per protocol, slot count and masquerade; their slots are elements."""
    from blixt.dataplane.plan import Output
    topo = netns(pods=0)
    t = NatTable(topo.node.netns, MARKS)
    n = 2000
    outputs = {}
    for i in range(1, n + 1):
        slots = tuple((IPv4Address(f"10.200.{i >> 8 & 255}.{i & 255}") + k, 8080) for k in range(1 + i % 3))
        outputs[i] = Output(key=(int(IPv4Address("10.96.0.0")) + i, 6 if i % 2 else 17, 80), slots=slots,
                            backend_ids=tuple(range(len(slots))), masquerade=bool(i % 5 == 0))
    t.rebuild(NftView(outputs=outputs))
    listing = json.loads(topo.node.exec("nft", "-j", "list", "table", "ip", "blixt").stdout)["nftables"]
    chains = [o["chain"]["name"] for o in listing if "chain" in o]
    out_chains = sorted(c for c in chains if c.startswith("out_") and c not in ("out_guard",))
    # tcp/udp x 3 slot counts x masquerade or not, at most.
    assert len(out_chains) <= 12, out_chains
    # Inline (anonymous) maps show in the listing's rules as `map { ... }`.
    text = topo.node.exec("nft", "list", "table", "ip", "blixt").stdout
    assert not re.search(r"map \{", text), re.search(r".*map \{.*", text).group(0)[:200]
    slots = topo.node.exec("nft", "-j", "list", "map", "ip", "blixt", "out_slots_tcp").stdout
    assert len(json.loads(slots)["nftables"][1]["map"]["elem"]) == sum(
        len(o.slots) for o in outputs.values() if o.key[1] == 6)


def _normalized(node, table: str) -> set[str]:
    """The table's objects as JSON without handles, counters or its name, each
    set's elements sorted (the kernel lists a hash set in its own order)."""
    listing = json.loads(node.exec("nft", "-j", "list", "table", "ip", table).stdout)["nftables"]
    out = set()
    for obj in listing:
        (kind, body), = obj.items()
        if kind in ("metainfo", "table"):
            continue
        body = {k: v for k, v in body.items() if k not in ("handle", "table")}
        if "elem" in body:
            body["elem"] = sorted(json.dumps(e, sort_keys=True) for e in body["elem"])
        out.add(re.sub(r'"counter": \{[^}]*\}', '"counter"', json.dumps({kind: body}, sort_keys=True)))
    return out


def _views(seed: int, own_chains: bool) -> NftView:
    """Backends, frontends and the output path of every kind of frontend:
    exact and NodePort, TCP and UDP, masqueraded, without endpoints (drop
    and reject); with own_chains also source ranges and affinity."""
    from blixt.dataplane.plan import Output
    ip = lambda text: int(IPv4Address(text))  # noqa: E731
    backends = {i: (IPv4Address(f"10.200.{seed}.{i}"), 8000 + i) for i in range(1 + seed, 41 + seed)}
    ids = sorted(backends)
    outputs, frontends, node_frontends = {}, set(), set()
    for sid in range(1 + seed, 31 + seed):
        addr = 0 if sid % 6 == 0 else ip("10.96.0.0") + sid
        proto = 17 if sid % 2 else 6
        bids = tuple(ids[(sid * 7 + k) % len(ids)] for k in range((sid + seed) % 5))  # () : no endpoint
        outputs[sid] = Output(key=(addr, proto, 80 if addr else 30000 + sid), slots=tuple(backends[b] for b in bids),
                              backend_ids=bids, affinity=10800 if own_chains and sid % 7 == 0 else 0,
                              masquerade=sid % 3 == 0,
                              ranges=((ip("192.0.2.0"), 24),) if own_chains and sid % 11 == 0 else (),
                              drop=sid % 4 == 0)
        (frontends.add((addr, proto, 80)) if addr else node_frontends.add((proto, 30000 + sid)))
    return NftView(backends=backends, frontends=frozenset(frontends), node_frontends=frozenset(node_frontends),
                   node_addrs=frozenset({ip(f"192.168.1.{10 + seed}")}), vips=frozenset(a for a, _, _ in frontends),
                   outputs=outputs)


@pytest.mark.parametrize("own_chains", [False, True], ids=["plain", "own-chains"])
def test_updates_over_netlink_write_what_one_nft_script_writes(netns, own_chains):
    """A change whose frontends have no chains or sets of their own (nearly
    every one) declares its chains with `nft` and sends its elements as one
    netlink batch (blixt.node.nftnl); the others are one `nft` script, as a
    rebuild is. From empty, then to a view where a third of everything
    changed (backends replaced and gone, slot counts changed, frontends
    gone and new), each step gives the table a rebuild gives, element for
    element."""
    topo = netns(pods=0)
    updated = NatTable(topo.node.netns, MARKS, name="updated")
    updated.rebuild(NftView())
    scripts = []
    real = NatTable._run
    NatTable._run = lambda self, lines: scripts.append(lines) or real(self, lines)
    try:
        before = NftView()
        for seed in (0, 10):
            after = _views(seed, own_chains)
            for step, change in enumerate(nft_changes(before, after)):
                updated.update(change, chains=step == 0)  # as the manager does
            rebuilt = NatTable(topo.node.netns, MARKS, name=f"rebuilt{seed}")
            rebuilt.rebuild(after)
            assert _normalized(topo.node, "updated") == _normalized(topo.node, f"rebuilt{seed}")
            assert updated.backends() == after.backends
            before = after
    finally:
        NatTable._run = real
    elements = [line for lines in scripts for line in lines if " element ip updated " in line]
    assert bool(elements) == own_chains, elements[:3]
    # The table gone: a batch fails like an nft script (the manager rebuilds).
    updated.delete()
    extra = NftView(vips=frozenset({int(IPv4Address("10.96.9.9"))}))
    with pytest.raises(NftError, match=r"updated vips \(add\): No such file or directory"):
        updated.update(nft_changes(NftView(), extra)[0], chains=False)


def test_chains_are_declared_again_only_after_another_writer(netns):
    """An update declares chains (an `nft` process reading back the big maps
    its rules name) only when something else has committed to the
    namespace's nf_tables since the table's last write; then a flushed base
    or shared chain is put right by the next update, as before."""
    from blixt.dataplane.plan import Output
    topo = netns(pods=0)
    t = NatTable(topo.node.netns, MARKS)
    vip = int(IPv4Address(VIP))

    def state(port: int) -> NftView:
        eps = {1: (IPv4Address("10.0.0.1"), 80), 2: (IPv4Address("10.0.0.2"), port)}
        return NftView(backends=eps, frontends=frozenset({(vip, 6, VIP_PORT)}), vips=frozenset({vip}),
                       outputs={7: Output(key=(vip, 6, VIP_PORT), slots=tuple(eps.values()), backend_ids=(1, 2))})

    scripts = []
    real = NatTable._run
    t._run = lambda lines: scripts.append(lines) or real(t, lines)
    t.rebuild(state(81))
    before, port = state(81), 82
    want = t.dump(elements=False)

    def change() -> None:
        nonlocal before, port
        scripts.clear()
        after = state(port)
        for step, c in enumerate(nft_changes(before, after)):
            t.update(c, chains=step == 0)
        before, port = after, port + 1

    change()
    assert scripts == [], "nothing else wrote: no chain declared"
    assert t.backends()[2] == (IPv4Address("10.0.0.2"), 82)
    topo.node.exec("nft", "add", "table", "ip", "someone_else")
    change()
    assert len(scripts) == 1 and any("add chain ip blixt stash" in line for line in scripts[0])
    change()
    assert scripts == []
    # Another writer flushes a base chain and the shared one: both put right.
    topo.node.exec("nft", "-f", "-", input="flush chain ip blixt balance\nflush chain ip blixt out_s_tcp_2\n")
    change()
    assert _blocks(t.dump(elements=False)) == _blocks(want)
    assert t.backends()[2] == (IPv4Address("10.0.0.2"), 85)
