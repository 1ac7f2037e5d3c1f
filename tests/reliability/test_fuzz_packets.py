"""The classifier bpfman loaded, fed generated and mutated frames through
BPF_PROG_TEST_RUN, against a reference model of its decision written in
Python (tests/harness/classifier_model.py): for every frame the program must
return TCX_NEXT and leave exactly the mark the model predicts.

The tables hold a frontend of every kind the agent writes (ClusterIP with
off-pod masquerade, a wildcard NodePort with masquerade-all and a remote
backend, a Local policy's drop-when-empty entry with its pod twin, source
ranges, no backends, client-IP affinity shared by two frontends, weights).
Frames: valid TCP and UDP to frontends, node addresses and elsewhere, from
pods, backends (hairpin), allowed and other sources; then mutated: every
protocol number, IP options, bad versions and IHLs, first and later
fragments, truncation at any length, VLAN tags, other EtherTypes, random
byte flips, oversized payloads, and a random mark already on the packet (a
neighbour's bits). Seeded: BLIXT_FUZZ_SEED=N reproduces a run, and a failure
prints the seed and the frames. BLIXT_SOAK=1 runs 2,000,000 frames instead
of 100,000."""

from __future__ import annotations

import collections
import ctypes
import ipaddress
import os
import random
import struct

import pytest

from blixt.bpfman import client as bc
from blixt.dataplane import layout as L
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.node import bpf
from blixt.node.manager import Attachment, Manager, Settings
from harness import bpftest
from harness import classifier_model as CM
from harness import packets as P

pytestmark = [pytest.mark.bpfman, pytest.mark.registry]

SEED = int(os.environ.get("BLIXT_FUZZ_SEED", "20261201"))
FRAMES = 2_000_000 if os.environ.get("BLIXT_SOAK") == "1" else 100_000
TCX_NEXT = 0xFFFFFFFF
MARKS = MarkConfig()

POD_CIDR = "10.244.0.0/16"
NODE_ADDRS = ("192.0.2.50", "192.0.2.51")
CLIENT_NET = "198.18.0.0/24"
# Backends: pods (some also sources: hairpin) and one remote endpoint.
PODS = [f"10.244.{i // 250}.{i % 250 + 2}" for i in range(12)]
REMOTE = "172.16.9.9"


def _b(addr, port, weight=1, masquerade=False):
    return Backend(addr, port, weight, masquerade)


def dataplane() -> Dataplane:
    svcs = [
        Service("10.96.0.10", 80, "tcp", (_b(PODS[0], 8080), _b(PODS[1], 8080), _b(PODS[2], 8080)),
                masquerade="off-pod", name="clusterip"),
        Service("10.96.0.10", 53, "udp", (_b(PODS[3], 5353), _b(PODS[4], 5353)), masquerade="off-pod"),
        Service(None, 30080, "tcp", (_b(PODS[0], 8080), _b(REMOTE, 8080, masquerade=True)),
                masquerade="all", name="nodeport"),
        # externalTrafficPolicy Local with endpoints elsewhere: drop, but pods reach every endpoint.
        Service(None, 30081, "udp", (), drop_when_empty=True, name="local"),
        Service(None, 30081, "udp", (_b(PODS[5], 9000), _b(PODS[6], 9000)), scope="pod", masquerade="all"),
        Service("203.0.113.7", 443, "tcp", (_b(PODS[7], 8443),),
                source_ranges=(ipaddress.ip_network("198.18.0.0/25"), ipaddress.ip_network("10.244.0.0/24")),
                name="ranges"),
        Service("10.96.0.20", 8080, "tcp", (), name="empty"),
        Service("10.96.0.30", 80, "tcp", (_b(PODS[8], 80), _b(PODS[9], 80), _b(PODS[10], 80)),
                affinity_timeout=10800, affinity_group="aff", name="affinity"),
        Service(None, 30082, "tcp", (_b(PODS[8], 80), _b(PODS[9], 80), _b(PODS[10], 80)),
                affinity_timeout=10800, affinity_group="aff"),
        Service("10.96.0.40", 9000, "udp", (_b(PODS[11], 9000, 3), _b(PODS[2], 9000, 1)), name="weights"),
    ]
    return Dataplane.of(svcs, local_addresses=NODE_ADDRS, pod_cidrs=[POD_CIDR])


FRONTENDS = [("10.96.0.10", 80, 6), ("10.96.0.10", 53, 17), (NODE_ADDRS[0], 30080, 6), (NODE_ADDRS[1], 30081, 17),
             ("203.0.113.7", 443, 6), ("10.96.0.20", 8080, 6), ("10.96.0.30", 80, 6), (NODE_ADDRS[0], 30082, 6),
             ("10.96.0.40", 9000, 17)]


class Frames:
    """Seeded frame generator: a valid packet, then zero or more mutations."""

    def __init__(self, seed: int):
        self.r = random.Random(seed)
        self.clients = [str(ipaddress.ip_network(CLIENT_NET)[i]) for i in range(1, 200)]

    def _addr(self) -> str:
        r = self.r.random()
        if r < 0.35:
            return self.r.choice(self.clients)
        if r < 0.75:
            return self.r.choice(PODS) if self.r.random() < 0.5 else f"10.244.{self.r.randrange(256)}.{self.r.randrange(256)}"
        if r < 0.85:
            return self.r.choice(NODE_ADDRS)
        return str(ipaddress.IPv4Address(self.r.getrandbits(32)))

    def _target(self) -> tuple[str, int, int]:
        r = self.r.random()
        if r < 0.7:
            addr, port, proto = self.r.choice(FRONTENDS)
            if self.r.random() < 0.2:  # a frontend's port on the other protocol, or another node address
                proto = 23 - proto
            if port >= 30000 and self.r.random() < 0.5:
                addr = self.r.choice(NODE_ADDRS)
            return addr, port, proto
        if r < 0.85:
            return self.r.choice(FRONTENDS)[0], self.r.randrange(65536), self.r.choice((6, 17))
        return self._addr(), self.r.randrange(65536), self.r.choice((6, 17))

    def _l4(self, proto: int, sport: int, dport: int) -> bytes:
        if proto == 6:
            flags = self.r.choice((0x02, 0x02, 0x12, 0x10, 0x18, 0x11, 0x04, 0x03)) if self.r.random() < 0.9 \
                else self.r.randrange(256)
            return P.tcp(sport, dport, flags, self.r.randbytes(self.r.choice((0, 0, 10, 100))))
        if proto == 17:
            return P.udp(sport, dport, self.r.randbytes(self.r.choice((0, 1, 32))))
        return self.r.randbytes(self.r.randrange(0, 48))

    def next(self) -> tuple[bytes, int, str]:
        r = self.r
        src = self._addr()
        dst, dport, proto = self._target()
        sport = r.randrange(1, 65536)
        kinds = []
        if r.random() < 0.1:
            proto = r.randrange(256)
            kinds.append("protocol")
        options = b""
        if r.random() < 0.1:
            options = r.randbytes(4 * r.randrange(1, 11))
            kinds.append("options")
        frag, mf = 0, False
        if r.random() < 0.08:
            frag, mf = r.choice((0, r.randrange(1, 0x2000))), r.random() < 0.5
            kinds.append("fragment")
        payload = self._l4(proto, sport, dport)
        if r.random() < 0.03:
            payload += r.randbytes(r.randrange(1000, 2900))
            kinds.append("oversized")
        ip = bytearray(P.ipv4(src, dst, proto, payload, options=options, frag_offset=frag, more_fragments=mf))
        if r.random() < 0.05:
            ip[0] = (r.randrange(16) << 4) | (ip[0] & 0xF)
            kinds.append("version")
        if r.random() < 0.08:
            ip[0] = (ip[0] & 0xF0) | r.randrange(16)
            kinds.append("ihl")
        ethertype = P.ETH_P_IP
        if r.random() < 0.04:
            ethertype = r.choice((P.ETH_P_ARP, P.ETH_P_IPV6, 0x8100, 0x88A8, r.randrange(0x600), r.randrange(65536)))
            kinds.append("ethertype")
        frame = bytearray(P.eth(ethertype, bytes(ip)))
        if r.random() < 0.03:  # an 802.1Q tag before the IP header
            frame[12:14] = b"\x81\x00"
            frame[14:14] = struct.pack("!HH", r.randrange(4096), P.ETH_P_IP)
            kinds.append("vlan")
        if r.random() < 0.1:
            for _ in range(r.randrange(1, 6)):
                frame[r.randrange(len(frame))] = r.randrange(256)
            kinds.append("flips")
        shortest = shortest_accepted(frame)
        if r.random() < 0.1 and len(frame) > shortest:
            frame = frame[:r.randrange(shortest, len(frame))]
            kinds.append("truncated")
        frame += bytes(max(0, shortest - len(frame)))
        mark = r.getrandbits(32) if r.random() < 0.5 else r.choice((0, 0x4000, 0x8000, 0x77))
        return bytes(frame), mark, "+".join(kinds) or "valid"


# The kernel's test run refuses (EINVAL) a frame shorter than Ethernet, and
# an IPv4 or IPv6 frame shorter than that network header: such frames can
# reach TC on a real device (TC ingress runs before ip_rcv), and the program
# handles them on the path every other truncation takes (its first load of
# the IP header fails), but they cannot be sent here.
TEST_RUN_NETWORK_MINIMUM = {P.ETH_P_IP: 20, P.ETH_P_IPV6: 40}


def shortest_accepted(frame: bytes) -> int:
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    return CM.ETH_HLEN + TEST_RUN_NETWORK_MINIMUM.get(ethertype, 0)


@pytest.fixture(scope="module")
def classifier(bpfman_server, bytecode_image):
    """The programs as bpfman loads them for an agent, with the fuzz tables."""
    from harness.netns import Topology
    client = bpfman_server.client()
    topo = Topology(pods=0, name="fuzz")
    mgr = Manager(client, Settings(node="fuzz-test", bytecode=bc.Image(bytecode_image),
                                   attachments=(Attachment("eth-client"),), mode="tcx", netns=topo.node.netns))
    fds: dict[str, int] = {}
    try:
        mgr.ensure_loaded()
        fds.update((p.name, bpftest.prog_fd_by_id(p.id)) for p in mgr.programs)
        mgr.apply(dataplane())
        yield mgr, fds
    finally:
        for fd in fds.values():
            os.close(fd)
        mgr.remove()
        topo.close()
        client.close()


def fresh_model(mgr) -> CM.Model:
    """A model of the tables as they are, with the program's affinity table
    emptied (the model starts with none). The LRU table holds 32768 clients;
    callers start afresh well before a stream could fill it."""
    for key in list(mgr.maps["blixt_affinity"].keys()):
        mgr.maps["blixt_affinity"].delete(key)
    return CM.Model(CM.Tables(mgr.maps), MARKS)


def run(fd: int, frame: bytes, mark: int) -> tuple[int, int]:
    ctx = bpftest.SkBuff()
    ctx.mark = mark
    res = bpftest.test_run(fd, frame, ctx=bytes(ctx), ctx_out_size=ctypes.sizeof(bpftest.SkBuff))
    return res.retval, bpftest.SkBuff.from_buffer_copy(res.ctx_out).mark


def outcome(before: int, after: int) -> str:
    if after == before:
        return "untouched"
    bits = after & (MARKS.masq_mark | MARKS.reject_mark)
    if bits == MARKS.masq_mark | MARKS.reject_mark:
        return "drop"
    if bits == MARKS.reject_mark:
        return "reject"
    return "backend+masquerade" if bits else "backend"


def test_program_matches_the_model_on_fuzzed_frames(classifier):
    mgr, fds = classifier
    gen = Frames(SEED)
    fd = fds["blixt_tcx"]
    wrong, seen = [], collections.Counter()
    kinds = collections.Counter()
    for i in range(FRAMES):
        if i % 50_000 == 0:
            model = fresh_model(mgr)
        frame, mark, kind = gen.next()
        want = model.decide(frame, mark)
        ret, got = run(fd, frame, mark)
        seen[outcome(mark, got)] += 1
        kinds[kind.split("+")[0]] += 1
        if ret != TCX_NEXT or got != want:
            wrong.append(f"#{i} {kind}: retval {ret:#x}, mark {got:#010x}, model {want:#010x}, "
                         f"mark before {mark:#010x}, frame {frame.hex()}")
            if len(wrong) >= 20:
                break
    assert not wrong, f"BLIXT_FUZZ_SEED={SEED}: {len(wrong)} frames differ:\n" + "\n".join(wrong)
    # Not vacuous: every kind of decision was made, and every mutation was tried.
    assert {"untouched", "drop", "reject", "backend", "backend+masquerade"} <= set(seen), seen
    assert min(seen.values()) >= FRAMES // 1000, seen
    for k in ("valid", "protocol", "options", "fragment", "oversized", "version", "ihl", "ethertype"):
        assert kinds[k] >= FRAMES // 200, kinds
    print(f"seed {SEED}: {FRAMES} frames, outcomes {dict(seen)}, first mutation {dict(kinds)}")


def test_affinity_followed_by_the_model(classifier):
    """The affinity table the model kept equals the program's for the same stream."""
    mgr, fds = classifier
    model = fresh_model(mgr)
    gen = Frames(SEED + 1)
    for _ in range(20_000):
        frame, mark, _ = gen.next()
        want = model.decide(frame, mark)
        assert run(fds["blixt_tcx"], frame, mark)[1] == want
    kernel = {L.AffinityKey.unpack(k): L.Affinity.from_buffer_copy(v).slot.backend_id
              for k, v in mgr.maps["blixt_affinity"].items()}
    mine = {(c, sid): slot.backend_id for (c, sid), slot in model.affinity.items()}
    assert len(mine) > 10
    assert {(k.client, k.service_id): b for k, b in kernel.items()} == mine


@pytest.mark.parametrize("frame", [
    pytest.param(b"", id="empty"), pytest.param(bytes(13), id="13-bytes"),
    pytest.param(P.eth(P.ETH_P_IP, P.ipv4("10.0.0.1", "10.96.0.10", 6, b"")[:19]), id="ipv4-19-bytes"),
    pytest.param(P.eth(P.ETH_P_IPV6, bytes(39)), id="ipv6-39-bytes"),
])
def test_the_test_run_refuses_what_the_generator_leaves_out(classifier, frame):
    """TEST_RUN_NETWORK_MINIMUM is the kernel's rule, not an assumption: one
    byte less and the test run refuses the frame (so the fuzzer pads to it)."""
    _, fds = classifier
    with pytest.raises(bpf.BpfError, match="EINVAL"):
        run(fds["blixt_tcx"], frame, 0)
    if len(frame) >= CM.ETH_HLEN:  # one byte more, at the minimum, and it runs
        assert len(frame) + 1 == shortest_accepted(frame)
        assert run(fds["blixt_tcx"], frame + b"\0", 0)[0] == TCX_NEXT
