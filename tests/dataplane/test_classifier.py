"""The compiled classifier on crafted packets (BPF_PROG_TEST_RUN), as bpfman
loaded it from the OCI image, with its maps programmed by the Manager."""

from __future__ import annotations

import collections
import ctypes
import ipaddress
import os

import pytest

from blixt.bpfman import client as bc
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.node.manager import Attachment, Manager, Settings
from harness import bpftest
from harness import packets as P

TCX_NEXT = 0xFFFFFFFF  # -1 as the kernel reports retval
CLIENT = "198.18.0.2"
VIP = "10.96.0.10"
NODE_ADDR = "192.0.2.50"
MARKS = MarkConfig()


@pytest.fixture(scope="module")
def loaded(bpfman_server, bytecode_image):
    """Programs loaded once for the module; each test writes its own tables."""
    client = bpfman_server.client()
    from harness.netns import Topology
    topo = Topology(pods=0, name="cls")
    mgr = Manager(client, Settings(node="classifier-test", bytecode=bc.Image(bytecode_image),
                                   attachments=(Attachment("eth-client"),), mode="tcx",
                                   netns=topo.node.netns))
    mgr.ensure_loaded()
    fds = {p.name: bpftest.prog_fd_by_id(p.id) for p in mgr.programs}
    yield mgr, fds
    for fd in fds.values():
        os.close(fd)
    mgr.remove()
    topo.close()
    client.close()


@pytest.fixture
def dp(loaded):
    mgr, fds = loaded
    yield mgr, fds
    mgr.apply(Dataplane())  # empty tables for the next test


def run(fds, frame: bytes, mark: int = 0, prog: str = "blixt_tcx"):
    ctx = bpftest.SkBuff()
    ctx.mark = mark
    res = bpftest.test_run(fds[prog], frame, ctx=bytes(ctx), ctx_out_size=ctypes.sizeof(bpftest.SkBuff))
    out = bpftest.SkBuff.from_buffer_copy(res.ctx_out)
    return res.retval, out.mark


def backend_of(mark: int) -> int:
    return (mark & MARKS.id_mask) >> MARKS.id_shift


def svc(backends=(("192.168.1.1", 8080, 1),), proto="tcp", addr=VIP, port=80, **kw):
    return Service(addr, port, proto, tuple(Backend(a, p, w) for a, p, w in backends), **kw)


def test_service_hit_sets_backend_mark(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc()]))
    ret, mark = run(fds, P.tcp_frame(CLIENT, VIP, 40000, 80))
    assert ret == TCX_NEXT
    backend = backend_of(mark)
    assert mgr.current().backends[backend][0].exploded == "192.168.1.1"
    assert mark & ~MARKS.id_mask == 0


def test_other_mark_bits_are_kept(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc()]))
    _, mark = run(fds, P.tcp_frame(CLIENT, VIP, 40000, 80), mark=0x4001 | MARKS.reject_mark)
    assert mark & 0x4001 == 0x4001
    assert not mark & MARKS.reject_mark  # ours are rewritten
    assert backend_of(mark) >= 1


@pytest.mark.parametrize("frame", [
    pytest.param(P.tcp_frame(CLIENT, VIP, 40000, 81), id="other-port"),
    pytest.param(P.udp_frame(CLIENT, VIP, 40000, 80), id="other-protocol"),
    pytest.param(P.tcp_frame(CLIENT, "10.96.0.11", 40000, 80), id="other-address"),
    pytest.param(P.arp_frame(), id="arp"),
    pytest.param(P.ipv6_frame(), id="ipv6"),
    pytest.param(P.icmp_frame(CLIENT, VIP), id="icmp"),
    pytest.param(P.tcp_frame(CLIENT, VIP, 40000, 80)[:14 + 20 + 10], id="truncated-tcp"),
    # IHL says 60 bytes of header; the packet ends right after 20. (Frames
    # shorter than an IPv4 header never reach TC, and the kernel's test run
    # refuses them, so this is the shortest truncation that can be sent.)
    pytest.param(P.eth(P.ETH_P_IP, b"\x4f" + P.ipv4(CLIENT, VIP, 6, b"")[1:] + P.tcp(40000, 80)[:4]),
                 id="ihl-beyond-packet"),
    pytest.param(P.eth(P.ETH_P_IP, P.ipv4(CLIENT, VIP, 6, bytes(40), frag_offset=3)), id="later-fragment"),
])
def test_packets_that_are_not_ours_pass_untouched(dp, frame):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc()]))
    ret, mark = run(fds, frame, mark=0x77)
    assert (ret, mark) == (TCX_NEXT, 0x77)


def test_ip_options_are_skipped_by_ihl(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc()]))
    nop_options = b"\x01\x01\x01\x00"  # NOP NOP NOP EOL
    ret, mark = run(fds, P.tcp_frame(CLIENT, VIP, 40000, 80, options=nop_options))
    assert backend_of(mark) >= 1
    # With options, the bytes where ports would be without them are not read as ports.
    frame = P.eth(P.ETH_P_IP, P.ipv4(CLIENT, VIP, 6, P.tcp(40000, 81), options=b"\x00\x50\x00\x50"))
    assert run(fds, frame)[1] == 0


def test_first_fragment_is_classified(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(proto="udp")]))
    _, mark = run(fds, P.udp_frame(CLIENT, VIP, 40000, 80, more_fragments=True))
    assert backend_of(mark) >= 1


def test_no_backends_sets_reject_bit(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(backends=())]))
    _, mark = run(fds, P.tcp_frame(CLIENT, VIP, 40000, 80))
    assert mark == MARKS.reject_mark


def test_masquerade_bit(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([Service(VIP, 80, "tcp", (Backend("192.168.1.1", 8080, 1, True),))]))
    _, mark = run(fds, P.tcp_frame(CLIENT, VIP, 40000, 80))
    assert mark & MARKS.masq_mark and backend_of(mark) >= 1


def test_a_backend_reaching_itself_gets_the_masquerade_bit(dp):
    """Hairpin: without masquerade the backend would answer itself directly
    and the reply would bypass the reverse NAT."""
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc()]))
    _, mark = run(fds, P.tcp_frame("192.168.1.1", VIP, 40000, 80))
    assert mark & MARKS.masq_mark and backend_of(mark) >= 1
    _, mark = run(fds, P.tcp_frame(CLIENT, VIP, 40000, 80))
    assert not mark & MARKS.masq_mark


def test_same_flow_same_backend_and_weights(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(backends=(("192.168.1.1", 80, 70), ("192.168.1.2", 80, 30),
                                          ("192.168.1.3", 80, 0)))]))
    ids = {ep[0].exploded: bid for bid, ep in mgr.current().backends.items()}
    counts = collections.Counter()
    for sport in range(10000, 12000):
        frame = P.tcp_frame(CLIENT, VIP, sport, 80)
        first = backend_of(run(fds, frame)[1])
        assert backend_of(run(fds, frame)[1]) == first
        counts[first] += 1
    assert ids.get("192.168.1.3") is None  # weight 0 has no backend id at all
    share = counts[ids["192.168.1.1"]] / 2000
    assert 0.67 <= share <= 0.73, counts


def test_affinity_pins_a_client_to_one_backend(dp):
    mgr, fds = dp
    backends = tuple((f"192.168.1.{i}", 80, 1) for i in range(1, 5))
    mgr.apply(Dataplane.of([svc(backends=backends, affinity_timeout=60)]))
    for client in ("198.18.0.2", "198.18.0.3", "198.18.0.4"):
        seen = {backend_of(run(fds, P.tcp_frame(client, VIP, sport, 80))[1]) for sport in range(100, 140)}
        assert len(seen) == 1, f"{client} spread over {seen}"
    # Without affinity the same ports spread out.
    mgr.apply(Dataplane.of([svc(backends=backends)]))
    seen = {backend_of(run(fds, P.tcp_frame(CLIENT, VIP, sport, 80))[1]) for sport in range(100, 140)}
    assert len(seen) > 1


def test_affinity_moves_when_backend_leaves(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(backends=(("192.168.1.1", 80, 1),), affinity_timeout=60)]))
    first = backend_of(run(fds, P.tcp_frame(CLIENT, VIP, 100, 80))[1])
    mgr.apply(Dataplane.of([svc(backends=(("192.168.1.2", 80, 1),), affinity_timeout=60)]))
    second = backend_of(run(fds, P.tcp_frame(CLIENT, VIP, 100, 80))[1])
    assert second != first
    assert mgr.current().backends[second][0].exploded == "192.168.1.2"


def test_wildcard_matches_only_local_addresses(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(addr=None, port=30080)], local_addresses=[NODE_ADDR]))
    assert backend_of(run(fds, P.tcp_frame(CLIENT, NODE_ADDR, 1000, 30080))[1]) >= 1
    assert run(fds, P.tcp_frame(CLIENT, "192.0.2.51", 1000, 30080))[1] == 0


def test_exact_entry_wins_over_wildcard(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([
        svc(addr=None, port=30080, backends=(("192.168.1.1", 80, 1),)),
        svc(addr=NODE_ADDR, port=30080, backends=(("192.168.1.2", 80, 1),)),
    ], local_addresses=[NODE_ADDR]))
    mark = run(fds, P.tcp_frame(CLIENT, NODE_ADDR, 1000, 30080))[1]
    assert mgr.current().backends[backend_of(mark)][0].exploded == "192.168.1.2"


def test_generation_flip_under_concurrent_readers(dp):
    """While the table is rewritten over and over, a reader on another thread
    always finds a complete set: a backend of the old set or of the new one,
    never a missing or half-written slot."""
    import threading
    mgr, fds = dp
    old = (("192.168.1.1", 80, 1), ("192.168.1.2", 80, 1))
    new = (("192.168.2.1", 80, 1), ("192.168.2.2", 80, 1), ("192.168.2.3", 80, 1))
    mgr.apply(Dataplane.of([svc(backends=old)]))
    stop = threading.Event()
    marks: list[int] = []

    def reader():
        sport = 1
        while not stop.is_set():  # ctypes drops the GIL inside test_run
            marks.append(run(fds, P.tcp_frame(CLIENT, VIP, sport, 80))[1])
            sport = sport % 60000 + 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        for i in range(40):
            mgr.apply(Dataplane.of([svc(backends=new if i % 2 == 0 else old)]))
    finally:
        stop.set()
        t.join()
    assert len(marks) > 100
    unmarked = sum(1 for m in marks if backend_of(m) == 0)
    assert unmarked == 0, f"{unmarked} of {len(marks)} packets found no backend mid-update"


def _affinity(mgr, client: str) -> dict[int, tuple[int, int]]:
    """service id -> (backend id, last_seen_ns) of this client's affinity entries."""
    from blixt.dataplane import layout as L
    out = {}
    for k, v in mgr.maps["blixt_affinity"].items():
        key = L.AffinityKey.unpack(k)
        if key.client == int(ipaddress.IPv4Address(client)):
            val = L.Affinity.from_buffer_copy(v)
            out[key.service_id] = (val.slot.backend_id, val.last_seen_ns)
    return out


def test_affinity_is_kept_and_refreshed_only_by_new_connections(dp):
    """kube-proxy's rule: a connection's later packets neither refresh a
    client's affinity nor create one; a new connection does both."""
    mgr, fds = dp
    backends = tuple((f"192.168.1.{i}", 80, 1) for i in range(1, 5))
    plan = mgr.apply(Dataplane.of([svc(backends=backends, affinity_timeout=60)]))
    (sid,) = plan.service_ids.values()
    run(fds, P.tcp_frame(CLIENT, VIP, 100, 80, flags=0x10))  # mid-connection ACK: no entry made
    assert _affinity(mgr, CLIENT) == {}
    run(fds, P.tcp_frame(CLIENT, VIP, 100, 80))  # SYN
    backend, first_seen = _affinity(mgr, CLIENT)[sid]
    for sport in range(101, 121):  # established traffic on other connections
        run(fds, P.tcp_frame(CLIENT, VIP, sport, 80, flags=0x18))
    assert _affinity(mgr, CLIENT)[sid] == (backend, first_seen)
    mark = run(fds, P.tcp_frame(CLIENT, VIP, 200, 80))[1]  # a new connection
    assert backend_of(mark) == backend
    again, refreshed = _affinity(mgr, CLIENT)[sid]
    assert again == backend and refreshed > first_seen


def test_a_reused_service_id_starts_without_affinity_or_counters(dp):
    mgr, fds = dp
    backends = tuple((f"192.168.1.{i}", 80, 1) for i in range(1, 5))
    plan = mgr.apply(Dataplane.of([svc(backends=backends, affinity_timeout=60)]))
    (sid,) = plan.service_ids.values()
    run(fds, P.tcp_frame(CLIENT, VIP, 100, 80))
    assert sid in _affinity(mgr, CLIENT) and mgr.stats()[sid].packets == 1
    mgr.apply(Dataplane())
    assert _affinity(mgr, CLIENT) == {} and sid not in mgr.stats()
    # A straggler of the removed service, then the id handed out again.
    from blixt.dataplane import layout as L
    mgr.maps["blixt_affinity"].update(L.AffinityKey.pack(L.AffinityKey.Record(int(ipaddress.IPv4Address(CLIENT)), sid)),
                                      bytes(L.Affinity(L.Slot(1, 0, sid, 0), 1)))
    plan = mgr.apply(Dataplane.of([svc(port=81, backends=backends, affinity_timeout=60)]))
    assert list(plan.service_ids.values()) == [sid]
    assert _affinity(mgr, CLIENT) == {} and sid not in mgr.stats()


def test_recycled_map_elements_never_give_another_services_backend(dp):
    """A hash map hands a replaced element to the next update at once, so a
    packet may find another service's value behind its pointer. Two services
    are rewritten in a tight loop while packets for the first stream through
    (bounded: 4 s); every decision must name one of the first's backends."""
    import threading
    import time
    from blixt.dataplane import layout as L
    mgr, fds = dp
    a = svc(port=80, backends=tuple((f"192.168.1.{i}", 80, 1) for i in range(1, 3)))
    b = svc(port=81, backends=tuple((f"192.168.2.{i}", 80, 1) for i in range(1, 8)))
    mgr.apply(Dataplane.of([a, b]))
    state = mgr.current()
    ka, kb = (next(k for k in state.services if k.port == port) for port in (80, 81))
    va, vb = state.services[ka], state.services[kb]
    ours = {bid for (sid, bid) in state.members if sid == va.id}
    # A second generation of each table, so flipping `gen` keeps both valid.
    for v in (va, vb):
        for k, slot in list(state.slots.items()):
            if k.service_id == v.id:
                mgr.maps["blixt_slots"].update(L.SlotKey.pack(k._replace(gen=v.gen + 1)), L.Slot.pack(slot))
    services = mgr.maps["blixt_services"]
    writes = [(L.ServiceKey.pack(k), L.Service.pack(v._replace(gen=v.gen + g))) for g in (0, 1) for k, v in
              ((ka, va), (kb, vb))]
    stop = threading.Event()
    wrong: list[int] = []
    count = [0]

    def reader():
        sport = 1
        while not stop.is_set():
            m = backend_of(run(fds, P.tcp_frame(CLIENT, VIP, sport, 80))[1])
            count[0] += 1
            if m and m not in ours:
                wrong.append(m)
            sport = sport % 60000 + 1

    t = threading.Thread(target=reader)
    t.start()
    try:
        end = time.monotonic() + 4
        i = 0
        while time.monotonic() < end:
            services.update(*writes[i % 4])
            i += 1
    finally:
        stop.set()
        t.join()
        mgr.refresh()
    assert count[0] > 1000 and i > 1000
    assert not wrong, f"{len(wrong)} of {count[0]} packets for one service got another's backend"


# -- Service policies: source classes, masquerade, drop --------------------------

POD = "10.244.1.5"
PODS = ["10.244.0.0/16"]
DROP = MARKS.reject_mark | MARKS.masq_mark


def decision(fds, src, dst=VIP, dport=80, proto="tcp"):
    frame = (P.tcp_frame if proto == "tcp" else P.udp_frame)(src, dst, 40000, dport)
    return run(fds, frame)[1]


def test_masquerade_all_and_off_pod(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(masquerade="off-pod"), svc(port=81, masquerade="all")], pod_cidrs=PODS))
    assert decision(fds, CLIENT) & MARKS.masq_mark            # off the cluster
    assert not decision(fds, POD) & MARKS.masq_mark           # from a pod
    assert decision(fds, POD, dport=81) & MARKS.masq_mark     # all
    assert backend_of(decision(fds, POD, dport=81)) >= 1
    mgr.apply(Dataplane.of([svc(masquerade="off-pod")]))      # no pod CIDRs: every source is off-pod
    assert decision(fds, POD) & MARKS.masq_mark


def test_pod_sources_use_the_twin_entry(dp):
    mgr, fds = dp
    main = svc(backends=(("192.168.1.1", 8080, 1),), drop_when_empty=True)
    twin = svc(backends=(("192.168.1.2", 8080, 1),), scope="pod")
    mgr.apply(Dataplane.of([main, twin], pod_cidrs=PODS))
    ids = {ep[0].exploded: bid for bid, ep in mgr.current().backends.items()}
    assert backend_of(decision(fds, CLIENT)) == ids["192.168.1.1"]
    assert backend_of(decision(fds, POD)) == ids["192.168.1.2"]
    # The main entry without local endpoints drops; pods still reach the twin.
    mgr.apply(Dataplane.of([svc(backends=(), drop_when_empty=True), twin], pod_cidrs=PODS))
    assert decision(fds, CLIENT) == DROP
    assert backend_of(decision(fds, POD)) == ids["192.168.1.2"]
    # The twin gone: pods are served by the main entry again.
    mgr.apply(Dataplane.of([main], pod_cidrs=PODS))
    assert backend_of(decision(fds, POD)) == ids["192.168.1.1"]


def test_no_backends_rejects_or_drops(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(backends=()), svc(port=81, backends=(), drop_when_empty=True)]))
    assert decision(fds, CLIENT) == MARKS.reject_mark
    assert decision(fds, CLIENT, dport=81) == DROP


def test_source_ranges_drop_other_sources(dp):
    mgr, fds = dp
    mgr.apply(Dataplane.of([svc(source_ranges=("198.18.0.0/30", "203.0.113.7/32")), svc(port=81)]))
    assert backend_of(decision(fds, CLIENT)) >= 1                  # 198.18.0.2 in /30
    assert backend_of(decision(fds, "203.0.113.7")) >= 1
    assert decision(fds, "198.18.0.9") == DROP
    assert decision(fds, "203.0.113.8") == DROP
    assert backend_of(decision(fds, "203.0.113.8", dport=81)) >= 1  # another service: no ranges
    mgr.apply(Dataplane.of([svc(source_ranges=("203.0.113.7/32",))]))
    assert decision(fds, CLIENT) == DROP
    assert {(r.prefixlen, r.addr) for r in mgr.current().source_ranges} == {
        (64, int(ipaddress.IPv4Address("203.0.113.7")))}
    mgr.apply(Dataplane.of([svc()]))
    assert mgr.current().source_ranges == set() and backend_of(decision(fds, "198.18.0.9")) >= 1


def test_wildcard_node_port_with_a_pod_twin(dp):
    mgr, fds = dp
    main = svc(addr=None, port=30080, backends=(), drop_when_empty=True)
    twin = svc(addr=None, port=30080, backends=(("192.168.1.2", 8080, 1),), scope="pod")
    mgr.apply(Dataplane.of([main, twin], local_addresses=[NODE_ADDR], pod_cidrs=PODS))
    assert decision(fds, CLIENT, dst=NODE_ADDR, dport=30080) == DROP
    assert backend_of(decision(fds, POD, dst=NODE_ADDR, dport=30080)) >= 1
