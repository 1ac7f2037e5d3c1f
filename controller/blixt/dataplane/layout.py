"""ctypes mirrors of every map key/value in bytecode/blixt.h, its constants,
and which map holds what: the one definition of each map entry on the
Python side. tests/unit/test_btf_layout.py checks each mirror against the
compiled object's BTF, so the two cannot drift apart silently.

The planner works in each mirror's `Record`, a NamedTuple generated from the
mirror's fields (padding left out), which packs to exactly the mirror's
bytes. Records hold addresses and ports in host order (an address as an
int); the fields the kernel keeps in network byte order (`_be_`) are swapped
when packed, so no caller swaps bytes by hand.
"""

from __future__ import annotations

import ctypes
import ipaddress
import struct
import sys
from typing import Any, NamedTuple

c_u8 = ctypes.c_uint8
c_u16 = ctypes.c_uint16
c_u32 = ctypes.c_uint32
c_u64 = ctypes.c_uint64

# Map capacities (BLIXT_MAX_*).
MAX_SERVICES = 65536
MAX_SLOTS = 1 << 19
MAX_MEMBERS = 1 << 18
MAX_AFFINITY = 32768
MAX_LOCAL_ADDRS = 256
MAX_POD_CIDRS = 64
MAX_SOURCE_RANGES = 16384
MAX_SLOTS_PER_SERVICE = 4096

SVC_AFFINITY = 1 << 0   # BLIXT_SVC_AFFINITY
SVC_MASQ_ALL = 1 << 1   # BLIXT_SVC_MASQ_ALL
SVC_MASQ_OFF_POD = 1 << 2  # BLIXT_SVC_MASQ_OFF_POD
SVC_DROP_EMPTY = 1 << 3  # BLIXT_SVC_DROP_EMPTY
SVC_SOURCE_RANGES = 1 << 4  # BLIXT_SVC_SOURCE_RANGES
SVC_POD_VARIANT = 1 << 5  # BLIXT_SVC_POD_VARIANT
SCOPE_ANY, SCOPE_POD = 0, 1  # BLIXT_SCOPE_*
SLOT_MASQ = 1 << 0      # BLIXT_SLOT_MASQ

DEFAULT_ID_SHIFT = 16
DEFAULT_ID_MASK = 0xFFFF0000
DEFAULT_MASQ_MARK = 0x00001000
DEFAULT_REJECT_MARK = 0x00002000

PROTOCOLS = {"tcp": 6, "udp": 17}
PROTOCOL_NAMES = {v: k for k, v in PROTOCOLS.items()}

# enum bpf_map_type, by the names bpfman's io.ebpf.maps image label uses.
MAP_TYPES = {
    "hash": 1, "array": 2, "prog_array": 3, "perf_event_array": 4, "percpu_hash": 5,
    "percpu_array": 6, "stack_trace": 7, "cgroup_array": 8, "lru_hash": 9,
    "lru_percpu_hash": 10, "lpm_trie": 11, "array_of_maps": 12, "hash_of_maps": 13,
    "ringbuf": 27,
}
MAP_TYPE_NAMES = {v: k for k, v in MAP_TYPES.items()}
BPF_MAP_TYPE_HASH = MAP_TYPES["hash"]
BPF_MAP_TYPE_ARRAY = MAP_TYPES["array"]
BPF_MAP_TYPE_PERCPU_HASH = MAP_TYPES["percpu_hash"]
BPF_MAP_TYPE_PERCPU_ARRAY = MAP_TYPES["percpu_array"]
BPF_MAP_TYPE_LRU_HASH = MAP_TYPES["lru_hash"]
BPF_MAP_TYPE_LRU_PERCPU_HASH = MAP_TYPES["lru_percpu_hash"]
BPF_MAP_TYPE_LPM_TRIE = MAP_TYPES["lpm_trie"]
PERCPU_MAP_TYPES = frozenset({BPF_MAP_TYPE_PERCPU_HASH, BPF_MAP_TYPE_PERCPU_ARRAY,
                              BPF_MAP_TYPE_LRU_PERCPU_HASH})
BPF_F_NO_PREALLOC = 1


def be32(addr: ipaddress.IPv4Address | str | int) -> int:
    """The raw u32 whose memory bytes are the address in network order."""
    return int.from_bytes(ipaddress.IPv4Address(addr).packed, sys.byteorder)


_CODES = {c_u8: "B", c_u16: "H", c_u32: "I", c_u64: "Q"}


class _Struct(ctypes.Structure):
    """Value semantics, a readable repr and a generated `Record`; `_c_name_`
    is the C struct name the layout test looks up in the BTF."""

    _c_name_ = ""
    _be_: frozenset[str] = frozenset()
    Record: type = tuple

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        fields = cls.__dict__.get("_fields_")
        if fields and all(t in _CODES or (issubclass(t, ctypes.Array) and n.startswith("pad"))
                          for n, t in fields):
            _add_record(cls, fields)

    def __eq__(self, other):
        return type(other) is type(self) and bytes(self) == bytes(other)

    def __hash__(self):
        return hash((type(self), bytes(self)))

    def __repr__(self):
        fields = ", ".join(f"{n}={_show(getattr(self, n))}" for n, *_ in self._fields_)
        return f"{type(self).__name__}({fields})"


def _add_record(cls, fields) -> None:
    """cls.Record, cls.pack(record) -> bytes and cls.unpack(bytes) -> record.

    Fields are packed in runs of one byte order (struct has one order per
    format): a struct with no network-order field is a single run."""
    names = [n for n, _ in fields if not n.startswith("pad")]
    runs: list[tuple[str, str, int]] = []  # (order, format, number of values)
    for n, t in fields:
        pad = n.startswith("pad")
        code = f"{ctypes.sizeof(t)}x" if pad else _CODES[t]
        order = ">" if n in cls._be_ else "="
        if runs and (pad or ctypes.sizeof(t) == 1 or runs[-1][0] == order):
            o, f, k = runs[-1]  # byte order is moot for pads and single bytes
            runs[-1] = (o, f + code, k + (not pad))
        else:
            runs.append((order, code, int(not pad)))
    record = NamedTuple(f"{cls.__name__}Record", [(n, int) for n in names])
    if len(runs) == 1:
        codec = struct.Struct(runs[0][0] + runs[0][1])
        cls.pack = staticmethod(lambda rec: codec.pack(*rec))
        cls.unpack = staticmethod(lambda raw: record._make(codec.unpack(raw)))
    else:
        parts, start, offset = [], 0, 0
        for order, fmt, k in runs:
            c = struct.Struct(order + fmt)
            parts.append((c, start, start + k, offset))
            start, offset = start + k, offset + c.size

        def pack(rec):
            return b"".join(c.pack(*rec[a:b]) for c, a, b, _ in parts)

        def unpack(raw):
            vals: list[int] = []
            for c, _, _, off in parts:
                vals.extend(c.unpack_from(raw, off))
            return record._make(vals)
        cls.pack = staticmethod(pack)
        cls.unpack = staticmethod(unpack)
    cls.Record = record


def _show(v):
    return list(v) if isinstance(v, ctypes.Array) else v


class ServiceKey(_Struct):
    """Record: (addr as int, host-order port, proto number, scope); addr 0 is
    the wildcard: any local address."""
    _c_name_ = "blixt_service_key"
    _be_ = frozenset({"addr", "port"})
    _fields_ = [("addr", c_u32), ("port", c_u16), ("proto", c_u8), ("scope", c_u8)]


class Service(_Struct):
    """key_*: the entry's own key (host order in the Record), which the program
    checks to catch an element recycled for another service."""
    _c_name_ = "blixt_service"
    _be_ = frozenset({"key_addr", "key_port"})
    _fields_ = [("id", c_u32), ("gen", c_u32), ("slot_count", c_u32), ("flags", c_u32),
                ("affinity_timeout", c_u32), ("affinity_id", c_u32), ("key_addr", c_u32), ("key_port", c_u16),
                ("key_proto", c_u8), ("key_scope", c_u8)]


class SlotKey(_Struct):
    _c_name_ = "blixt_slot_key"
    _fields_ = [("service_id", c_u32), ("gen", c_u32), ("slot", c_u32)]


class Slot(_Struct):
    """service_id: the service the slot or member belongs to (checked like
    Service.key_*); addr: the backend's address (host order in the Record),
    so the program can tell a hairpin flow."""
    _c_name_ = "blixt_slot"
    _be_ = frozenset({"addr"})
    _fields_ = [("backend_id", c_u32), ("flags", c_u32), ("service_id", c_u32), ("addr", c_u32)]


class MemberKey(_Struct):
    _c_name_ = "blixt_member_key"
    _fields_ = [("service_id", c_u32), ("backend_id", c_u32)]


class AffinityKey(_Struct):
    """Record: (client address as int, service id)."""
    _c_name_ = "blixt_affinity_key"
    _be_ = frozenset({"client"})
    _fields_ = [("client", c_u32), ("service_id", c_u32)]


class Affinity(_Struct):
    _c_name_ = "blixt_affinity"
    _fields_ = [("slot", Slot), ("last_seen_ns", c_u64)]


class Stats(_Struct):
    _c_name_ = "blixt_stats"
    _fields_ = [("packets", c_u64), ("bytes", c_u64), ("new_flows", c_u64)]


class Config(_Struct):
    _c_name_ = "blixt_config"
    _fields_ = [("id_shift", c_u32), ("id_mask", c_u32), ("masq_mark", c_u32), ("reject_mark", c_u32)]


class CidrKey(_Struct):
    """blixt_pod_cidrs' key. Record: (prefix length, network address as int)."""
    _c_name_ = "blixt_cidr_key"
    _be_ = frozenset({"addr"})
    _fields_ = [("prefixlen", c_u32), ("addr", c_u32)]


class SourceRangeKey(_Struct):
    """blixt_source_ranges' key. Record: (32 + the range's prefix length,
    service id, network address as int)."""
    _c_name_ = "blixt_source_range_key"
    _be_ = frozenset({"addr"})
    _fields_ = [("prefixlen", c_u32), ("service_id", c_u32), ("addr", c_u32)]


class LocalAddr:
    """blixt_local_addrs' key: a bare __be32 address, held as an int."""
    pack = staticmethod(lambda addr: addr.to_bytes(4, "big"))
    unpack = staticmethod(lambda raw: int.from_bytes(raw, "big"))


class MapSpec(NamedTuple):
    key: Any     # ctypes type of the key
    value: Any   # ctypes type of the value (of one CPU's value for per-CPU maps)
    max_entries: int
    map_type: int
    flags: int = 0


# Every map in blixt.bpf.c.
MAPS: dict[str, MapSpec] = {
    "blixt_services": MapSpec(ServiceKey, Service, MAX_SERVICES, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC),
    "blixt_slots": MapSpec(SlotKey, Slot, MAX_SLOTS, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC),
    "blixt_members": MapSpec(MemberKey, Slot, MAX_MEMBERS, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC),
    "blixt_affinity": MapSpec(AffinityKey, Affinity, MAX_AFFINITY, BPF_MAP_TYPE_LRU_HASH),
    "blixt_stats": MapSpec(c_u32, Stats, MAX_SERVICES, BPF_MAP_TYPE_PERCPU_HASH, BPF_F_NO_PREALLOC),
    "blixt_local_addrs": MapSpec(c_u32, c_u32, MAX_LOCAL_ADDRS, BPF_MAP_TYPE_HASH, BPF_F_NO_PREALLOC),
    "blixt_pod_cidrs": MapSpec(CidrKey, c_u32, MAX_POD_CIDRS, BPF_MAP_TYPE_LPM_TRIE, BPF_F_NO_PREALLOC),
    "blixt_source_ranges": MapSpec(SourceRangeKey, c_u32, MAX_SOURCE_RANGES, BPF_MAP_TYPE_LPM_TRIE,
                                   BPF_F_NO_PREALLOC),
}
PERCPU_MAPS = frozenset(name for name, spec in MAPS.items() if spec.map_type in PERCPU_MAP_TYPES)
ONE = bytes(c_u32(1))  # the value of every blixt_local_addrs entry


class Capacity(NamedTuple):
    """The capacities a build of the program may choose (blixt.h's #ifndef
    BLIXT_MAX_*): the agent plans against those of the maps it writes."""

    services: int = MAX_SERVICES  # blixt_services and blixt_stats
    slots: int = MAX_SLOTS
    members: int = MAX_MEMBERS


# The maps sized by a Capacity field; the others are sized as MAPS says.
RESIZABLE = {"blixt_services": "services", "blixt_stats": "services", "blixt_slots": "slots",
             "blixt_members": "members"}


def capacity_of(max_entries: dict[str, int]) -> Capacity:
    """The Capacity of maps with these max_entries (by map name)."""
    if max_entries["blixt_stats"] != max_entries["blixt_services"]:
        raise ValueError(f"blixt_stats holds {max_entries['blixt_stats']} entries and blixt_services "
                         f"{max_entries['blixt_services']}: one build's maps have the same capacity")
    return Capacity(*(max_entries[name] for name in ("blixt_services", "blixt_slots", "blixt_members")))
