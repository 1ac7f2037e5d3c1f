"""A reference model of the classifier's decision (bytecode/blixt.bpf.c),
written from its specification, in Python: given the maps as they are and
one Ethernet frame with a packet mark, the mark the program leaves.

It reads the maps through the same layouts as the agent (blixt.dataplane.layout)
and keeps its own copy of the affinity table, so it can follow a stream of
packets. What it does not model: the per-service counters (not part of the
decision) and the affinity timeout (tests give affinity services a timeout
far longer than the run)."""

from __future__ import annotations

import dataclasses
import struct
import sys

from blixt.dataplane import layout as L

ETH_HLEN = 14
ETH_P_IP = 0x0800
IP_OFFSET = 0x1FFF
TCP, UDP = 6, 17
SYN, ACK = 0x02, 0x10
M32 = 0xFFFFFFFF


def mix32(h: int) -> int:
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & M32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & M32
    h ^= h >> 16
    return h


def raw32(packed: bytes) -> int:
    """A __be32 field as the program's registers hold it (memory order read natively)."""
    return int.from_bytes(packed, sys.byteorder)


def raw16(packed: bytes) -> int:
    return int.from_bytes(packed, sys.byteorder)


@dataclasses.dataclass(frozen=True)
class Packet:
    saddr: bytes  # 4 bytes, network order
    daddr: bytes
    sport: bytes  # 2 bytes, network order
    dport: bytes
    proto: int
    new_conn: bool

    def flow_hash(self) -> int:
        h = mix32((self.proto + 0x9E3779B9) & M32)
        h = mix32(h ^ raw32(self.saddr))
        h = mix32(h ^ raw32(self.daddr))
        return mix32(h ^ (((raw16(self.sport) << 16) | raw16(self.dport)) & M32))


def parse(frame: bytes) -> Packet | None:
    """What parse() in the program accepts; None for everything it leaves alone."""
    if len(frame) < ETH_HLEN or struct.unpack_from("!H", frame, 12)[0] != ETH_P_IP:
        return None
    net = frame[ETH_HLEN:]

    def load(off: int, n: int) -> bytes | None:  # bpf_skb_load_bytes_relative from the network header
        return net[off:off + n] if off + n <= len(net) else None

    ip = load(0, 20)
    if ip is None:
        return None
    version, ihl = ip[0] >> 4, ip[0] & 0xF
    if version != 4 or ihl < 5:
        return None
    if struct.unpack_from("!H", ip, 6)[0] & IP_OFFSET:
        return None
    proto, l4 = ip[9], ihl * 4
    if proto == TCP:
        tcp = load(l4, 20)
        if tcp is None:
            return None
        new = (tcp[13] & (SYN | ACK)) == SYN
        ports = tcp[:4]
    elif proto == UDP:
        ports = load(l4, 4)
        if ports is None:
            return None
        new = True
    else:
        return None
    return Packet(ip[12:16], ip[16:20], ports[:2], ports[2:4], proto, new)


class Tables:
    """The maps the decision reads, decoded once per program state."""

    def __init__(self, maps):
        self.services = {L.ServiceKey.unpack(k): L.Service.unpack(v) for k, v in maps["blixt_services"].items()}
        self.slots = {L.SlotKey.unpack(k): L.Slot.unpack(v) for k, v in maps["blixt_slots"].items()}
        self.members = {L.MemberKey.unpack(k): L.Slot.unpack(v) for k, v in maps["blixt_members"].items()}
        self.local_addrs = {L.LocalAddr.unpack(k) for k in maps["blixt_local_addrs"].keys()}
        # Prefixes as (network, mask) ints: an LPM lookup with the full
        # address length matches when any prefix holds the address.
        self.pod_cidrs = [_prefix(k.addr, k.prefixlen) for k in map(L.CidrKey.unpack, maps["blixt_pod_cidrs"].keys())]
        self.source_ranges: dict[int, list[tuple[int, int]]] = {}
        for raw in maps["blixt_source_ranges"].keys():
            k = L.SourceRangeKey.unpack(raw)
            self.source_ranges.setdefault(k.service_id, []).append(_prefix(k.addr, k.prefixlen - 32))


def _prefix(addr: int, length: int) -> tuple[int, int]:
    mask = (M32 << (32 - length)) & M32 if length else 0
    return addr & mask, mask


def _within(addr: int, prefixes) -> bool:
    return any(addr & mask == net for net, mask in prefixes)


class Model:
    def __init__(self, tables: Tables, marks):
        self.t = tables
        self.marks = marks
        self.affinity: dict[tuple[int, int], L.Slot.Record] = {}  # (client, affinity id) -> slot

    def _service(self, addr: int, port: int, proto: int, scope: int):
        v = self.t.services.get(L.ServiceKey.Record(addr, port, proto, scope))
        if v is None or (v.key_addr, v.key_port, v.key_proto, v.key_scope) != (addr, port, proto, scope):
            return None
        return v if v.id != 0 and v.slot_count <= L.MAX_SLOTS_PER_SERVICE else None


    def find(self, p: Packet):
        daddr, dport = int.from_bytes(p.daddr, "big"), int.from_bytes(p.dport, "big")
        key_addr = daddr
        if L.ServiceKey.Record(daddr, dport, p.proto, L.SCOPE_ANY) not in self.t.services:
            if daddr not in self.t.local_addrs:
                return None, False
            key_addr = 0
            if L.ServiceKey.Record(0, dport, p.proto, L.SCOPE_ANY) not in self.t.services:
                return None, False
        svc = self._service(key_addr, dport, p.proto, L.SCOPE_ANY)
        if svc is None:
            return None, False
        from_pod = bool(svc.flags & (L.SVC_POD_VARIANT | L.SVC_MASQ_OFF_POD)) and \
            _within(int.from_bytes(p.saddr, "big"), self.t.pod_cidrs)
        if svc.flags & L.SVC_POD_VARIANT and from_pod:
            svc = self._service(key_addr, dport, p.proto, L.SCOPE_POD)
        return svc, from_pod

    def _slot(self, rec, service_id: int):
        return rec if rec is not None and rec.backend_id != 0 and rec.service_id == service_id else None

    def pick(self, svc, p: Packet):
        sticky = bool(svc.flags & L.SVC_AFFINITY) and p.new_conn
        akey = (int.from_bytes(p.saddr, "big"), svc.affinity_id or svc.id)
        out = None
        if sticky and akey in self.affinity:
            out = self._slot(self.t.members.get(L.MemberKey.Record(svc.id, self.affinity[akey].backend_id)), svc.id)
        if out is None:
            out = self._slot(self.t.slots.get(L.SlotKey.Record(svc.id, svc.gen, p.flow_hash() % svc.slot_count)),
                             svc.id)
            if out is None:
                return None
        if sticky:
            self.affinity[akey] = out
        return out

    def decide(self, frame: bytes, mark: int) -> int:
        """The mark the program leaves on this frame."""
        m = self.marks
        p = parse(frame)
        if p is None:
            return mark
        svc, from_pod = self.find(p)
        if svc is None:
            return mark
        field = m.id_mask | m.masq_mark | m.reject_mark
        drop = m.reject_mark | m.masq_mark
        saddr = int.from_bytes(p.saddr, "big")
        if svc.flags & L.SVC_SOURCE_RANGES and not _within(saddr, self.t.source_ranges.get(svc.id, [])):
            decision = drop
        elif svc.slot_count == 0:
            decision = drop if svc.flags & L.SVC_DROP_EMPTY else m.reject_mark
        else:
            slot = self.pick(svc, p)
            if slot is None:
                return mark  # a table mid-flip: no decision (never the case with settled maps)
            decision = (slot.backend_id << m.id_shift) & m.id_mask
            if (slot.flags & L.SLOT_MASQ or slot.addr == saddr or svc.flags & L.SVC_MASQ_ALL
                    or (svc.flags & L.SVC_MASQ_OFF_POD and not from_pod)):
                decision |= m.masq_mark
        return (mark & ~field & M32) | decision
