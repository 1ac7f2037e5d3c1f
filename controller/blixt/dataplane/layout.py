"""ctypes mirrors of every map key/value in bytecode/blixt.h, its constants,
and which map holds what. tests/unit/test_btf_layout.py checks each mirror
against the compiled object's BTF, so the two cannot drift apart silently.

Addresses and ports are network byte order in the kernel. The __be fields
hold the raw value (the bytes as they sit in memory); build keys with the
`of()` constructors, which take an address and a host-order port, so no
caller swaps bytes by hand.
"""

from __future__ import annotations

import ctypes
import ipaddress
import sys
from typing import TYPE_CHECKING, NamedTuple


c_u8 = ctypes.c_uint8
c_u16 = ctypes.c_uint16
c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64

if TYPE_CHECKING:  # marks.py takes its defaults from here
    from .marks import MarkConfig

# Map capacities (BLIXT_MAX_*).
MAX_SERVICES = 65536
MAX_SLOTS = 1 << 20
MAX_MEMBERS = 1 << 18
MAX_AFFINITY = 65536
MAX_LOCAL_ADDRS = 256
MAX_UDP_FLOWS = 65536

SVC_AFFINITY = 1 << 0   # BLIXT_SVC_AFFINITY
SLOT_MASQ = 1 << 0      # BLIXT_SLOT_MASQ
UDP_FLOW_IDLE_NS = 30 * 1_000_000_000

DEFAULT_ID_SHIFT = 16
DEFAULT_ID_MASK = 0xFFFF0000
DEFAULT_MASQ_MARK = 0x00001000
DEFAULT_REJECT_MARK = 0x00002000

PROTOCOLS = {"tcp": 6, "udp": 17}


def be32(addr: ipaddress.IPv4Address | str | int) -> int:
    """The raw u32 whose memory bytes are the address in network order."""
    return int.from_bytes(ipaddress.IPv4Address(addr).packed, sys.byteorder)


def be16(port: int) -> int:
    """The raw u16 whose memory bytes are the port in network order."""
    return int.from_bytes(port.to_bytes(2, "big"), sys.byteorder)


def addr_of(raw: int) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(raw.to_bytes(4, sys.byteorder))


def port_of(raw: int) -> int:
    return int.from_bytes(raw.to_bytes(2, sys.byteorder), "big")


def _proto(proto: str | int) -> int:
    return PROTOCOLS[proto.lower()] if isinstance(proto, str) else proto


class _Struct(ctypes.Structure):
    """Value semantics and a readable repr; `_c_name_` is the C struct name
    the layout test looks up in the BTF."""

    _c_name_ = ""

    def __eq__(self, other):
        return type(other) is type(self) and bytes(self) == bytes(other)

    def __hash__(self):
        return hash((type(self), bytes(self)))

    def __repr__(self):
        fields = ", ".join(f"{n}={_show(getattr(self, n))}" for n, *_ in self._fields_)
        return f"{type(self).__name__}({fields})"


def _show(v):
    return list(v) if isinstance(v, ctypes.Array) else v


class ServiceKey(_Struct):
    _c_name_ = "blixt_service_key"
    _fields_ = [("addr", c_u32), ("port", c_u16), ("proto", c_u8), ("pad", c_u8)]

    @classmethod
    def of(cls, addr: ipaddress.IPv4Address | str | int | None, port: int, proto: str | int) -> "ServiceKey":
        """addr None (or 0) is the wildcard: any local address."""
        return cls(be32(addr or 0), be16(port), _proto(proto), 0)

    @classmethod
    def from_tuple(cls, t: tuple[int, int, int]) -> "ServiceKey":
        """From tables.py's (addr as int, host-order port, proto number)."""
        return cls.of(t[0], t[1], t[2])

    def as_tuple(self) -> tuple[int, int, int]:
        return (int(addr_of(self.addr)), port_of(self.port), self.proto)


class Service(_Struct):
    _c_name_ = "blixt_service"
    _fields_ = [("id", c_u32), ("gen", c_u32), ("slot_count", c_u32), ("flags", c_u32),
                ("affinity_timeout", c_u32), ("pad", c_u32)]


class SlotKey(_Struct):
    _c_name_ = "blixt_slot_key"
    _fields_ = [("service_id", c_u32), ("gen", c_u32), ("slot", c_u32)]


class Slot(_Struct):
    _c_name_ = "blixt_slot"
    _fields_ = [("backend_id", c_u32), ("flags", c_u32)]


class MemberKey(_Struct):
    _c_name_ = "blixt_member_key"
    _fields_ = [("service_id", c_u32), ("backend_id", c_u32)]


class AffinityKey(_Struct):
    _c_name_ = "blixt_affinity_key"
    _fields_ = [("client", c_u32), ("service_id", c_u32)]

    @classmethod
    def of(cls, client: ipaddress.IPv4Address | str | int, service_id: int) -> "AffinityKey":
        return cls(be32(client), service_id)

    @property
    def client_address(self) -> ipaddress.IPv4Address:
        return addr_of(self.client)


class Affinity(_Struct):
    _c_name_ = "blixt_affinity"
    _fields_ = [("slot", Slot), ("last_seen_ns", c_u64)]


class Stats(_Struct):
    _c_name_ = "blixt_stats"
    _fields_ = [("packets", c_u64), ("bytes", c_u64), ("new_flows", c_u64)]


class FlowKey(_Struct):
    _c_name_ = "blixt_flow_key"
    _fields_ = [("saddr", c_u32), ("daddr", c_u32), ("sport", c_u16), ("dport", c_u16),
                ("proto", c_u8), ("pad", c_u8 * 3)]

    @classmethod
    def of(cls, saddr, daddr, sport: int, dport: int, proto: str | int) -> "FlowKey":
        return cls(be32(saddr), be32(daddr), be16(sport), be16(dport), _proto(proto))

    def as_tuple(self) -> tuple[ipaddress.IPv4Address, ipaddress.IPv4Address, int, int, int]:
        return (addr_of(self.saddr), addr_of(self.daddr), port_of(self.sport), port_of(self.dport),
                self.proto)


class Config(_Struct):
    _c_name_ = "blixt_config"
    _fields_ = [("id_shift", c_u32), ("id_mask", c_u32), ("masq_mark", c_u32), ("reject_mark", c_u32)]

    @classmethod
    def of(cls, marks: MarkConfig) -> "Config":
        return cls(marks.id_shift, marks.id_mask, marks.masq_mark, marks.reject_mark)


class MapSpec(NamedTuple):
    key: type   # ctypes type of the key
    value: type  # ctypes type of the value (of one CPU's value for per-CPU maps)
    max_entries: int


# Every map in blixt.bpf.c. blixt_local_addrs' key is a __be32 address: build
# it with be32() or ipaddress.IPv4Address(...).packed.
MAPS: dict[str, MapSpec] = {
    "blixt_services": MapSpec(ServiceKey, Service, MAX_SERVICES),
    "blixt_slots": MapSpec(SlotKey, Slot, MAX_SLOTS),
    "blixt_members": MapSpec(MemberKey, Slot, MAX_MEMBERS),
    "blixt_affinity": MapSpec(AffinityKey, Affinity, MAX_AFFINITY),
    "blixt_stats": MapSpec(c_u32, Stats, MAX_SERVICES),
    "blixt_local_addrs": MapSpec(c_u32, c_u32, MAX_LOCAL_ADDRS),
    "blixt_udp_flows": MapSpec(FlowKey, c_u64, MAX_UDP_FLOWS),
}
PERCPU_MAPS = frozenset({"blixt_stats"})
