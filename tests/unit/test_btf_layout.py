"""layout.py against the compiled object's BTF: every mirror struct, every map
and the config global must match the C definitions byte for byte."""

from __future__ import annotations

import ast
import ctypes
import dataclasses
import inspect
import ipaddress
import re
import sys

import pytest

from blixt import btf
from blixt.dataplane import layout
from harness import bpftest
from blixt.dataplane.marks import MarkConfig
from harness import paths

pytestmark = pytest.mark.unit


mismatches = btf.ctypes_mismatches


@pytest.fixture(scope="module")
def obj_btf(bytecode_object) -> btf.Btf:
    return btf.Btf.from_elf(bytecode_object)


def mirrors() -> list[type[layout._Struct]]:
    return [c for _, c in inspect.getmembers(layout, inspect.isclass)
            if issubclass(c, ctypes.Structure) and c.__module__ == layout.__name__ and c is not layout._Struct]


def test_every_mirror_names_its_c_struct():
    assert {c.__name__ for c in mirrors()} == {
        "ServiceKey", "Service", "SlotKey", "Slot", "MemberKey", "AffinityKey", "Affinity",
        "Stats", "Config", "CidrKey", "SourceRangeKey"}
    assert all(c._c_name_ for c in mirrors())


@pytest.mark.parametrize("cls", mirrors(), ids=lambda c: c.__name__)
def test_mirror_matches_btf(obj_btf, cls):
    assert mismatches(cls, obj_btf.struct(cls._c_name_)) == []


def test_every_struct_in_the_header_has_a_mirror():
    header = (paths.REPO / "bytecode" / "blixt.h").read_text()
    declared = set(re.findall(r"^struct (\w+) \{", header, re.M))
    assert declared == {c._c_name_ for c in mirrors()}


def test_a_wrong_mirror_is_reported(obj_btf):
    class Swapped(ctypes.Structure):   # port and proto swapped, pad missing
        _fields_ = [("addr", ctypes.c_uint32), ("proto", ctypes.c_uint8), ("port", ctypes.c_uint16)]

    class Widened(ctypes.Structure):   # same names, one field too wide
        _fields_ = [("backend_id", ctypes.c_uint64), ("flags", ctypes.c_uint32),
                    ("service_id", ctypes.c_uint32), ("pad", ctypes.c_uint32)]

    assert len(mismatches(Swapped, obj_btf.struct("blixt_service_key"))) == 1
    assert len(mismatches(Widened, obj_btf.struct("blixt_slot"))) == 2  # size and fields


def test_maps_match_btf(obj_btf):
    defs = obj_btf.maps()
    assert set(defs) == set(layout.MAPS)
    for name, spec in layout.MAPS.items():
        d = defs[name]
        assert (d.key_size, d.value_size, d.max_entries, d.map_type, d.map_flags) == (
            ctypes.sizeof(spec.key), ctypes.sizeof(spec.value), spec.max_entries, spec.map_type,
            spec.flags), name
        # Struct-typed keys and values must be the mirror of that very struct.
        for cls, c_name in ((spec.key, d.key_type_name), (spec.value, d.value_type_name)):
            if issubclass(cls, ctypes.Structure):
                assert cls._c_name_ == c_name, name
        assert (d.map_type in layout.PERCPU_MAP_TYPES) == (name in layout.PERCPU_MAPS), name


@pytest.mark.parametrize("variant, capacity", [
    ("small", layout.Capacity(services=8, slots=32, members=16)),
    ("large", layout.Capacity(services=2**18, slots=2**19, members=2**19)),
])
def test_builds_differ_only_in_the_capacities_a_build_may_choose(obj_btf, variant_object, variant, capacity):
    base, other = obj_btf.maps(), btf.Btf.from_elf(variant_object(variant)).maps()
    assert layout.capacity_of({n: d.max_entries for n, d in other.items()}) == capacity
    assert layout.capacity_of({n: d.max_entries for n, d in base.items()}) == layout.Capacity()
    for name, d in other.items():
        if name in layout.RESIZABLE:
            d = dataclasses.replace(d, max_entries=base[name].max_entries)
        assert d == base[name], name
    if variant == "large":  # what the Makefile says it is for
        from blixt.dataplane.fit import Budget
        assert Budget.of_maps(MarkConfig(), capacity).services >= 100_000


def test_capacity_of_wants_one_size_for_services_and_their_counters():
    sizes = {name: layout.MAPS[name].max_entries for name in layout.RESIZABLE}
    assert layout.capacity_of(sizes) == layout.Capacity()
    with pytest.raises(ValueError, match="blixt_stats"):
        layout.capacity_of({**sizes, "blixt_stats": 8})


def test_config_matches_global(obj_btf):
    assert ctypes.sizeof(layout.Config) == obj_btf.var_size("blixt_cfg")


def _c_int(expr: str) -> int:
    """Evaluate a C integer macro body: literals with u/ull suffixes, + - * <<."""
    tree = ast.parse(re.sub(r"\b(0x[0-9a-fA-F]+|\d+)[uUlL]+\b", r"\1", expr), mode="eval")
    allowed = (ast.Expression, ast.BinOp, ast.Constant, ast.Add, ast.Sub, ast.Mult, ast.LShift)
    if not all(isinstance(n, allowed) for n in ast.walk(tree)):
        raise ValueError(f"not a simple C integer expression: {expr}")
    return eval(compile(tree, "<macro>", "eval"))


def test_constants_match_header():
    header = (paths.REPO / "bytecode" / "blixt.h").read_text()
    macros = {name: _c_int(body.split("/*")[0]) for name, body in
              re.findall(r"^#define BLIXT_(\w+)[ \t]+(.+)$", header, re.M)}
    assert macros, "no BLIXT_ macros found"
    for name, value in macros.items():
        assert getattr(layout, name) == value, name
    d = MarkConfig()
    assert (d.id_shift, d.id_mask, d.masq_mark, d.reject_mark) == (
        layout.DEFAULT_ID_SHIFT, layout.DEFAULT_ID_MASK, layout.DEFAULT_MASQ_MARK, layout.DEFAULT_REJECT_MARK)


def test_keys_are_network_order():
    addr = int(ipaddress.IPv4Address("10.0.0.1"))
    k = layout.ServiceKey.Record(addr, 80, 6, layout.SCOPE_POD)
    assert layout.ServiceKey.pack(k) == bytes([10, 0, 0, 1, 0, 80, 6, 1])
    assert layout.ServiceKey.unpack(layout.ServiceKey.pack(k)) == k
    assert layout.ServiceKey.pack(layout.ServiceKey.Record(0, 30080, 17, 0)) == bytes([0, 0, 0, 0, 0x75, 0x80, 17, 0])
    r = layout.SourceRangeKey.Record(32 + 24, 7, int(ipaddress.IPv4Address("192.0.2.0")))
    assert layout.SourceRangeKey.pack(r) == bytes(layout.c_u32(56)) + bytes(layout.c_u32(7)) + bytes([192, 0, 2, 0])
    a = layout.AffinityKey.Record(int(ipaddress.IPv4Address("192.0.2.7")), 3)
    assert layout.AffinityKey.pack(a) == bytes([192, 0, 2, 7]) + bytes(layout.c_u32(3))
    assert layout.AffinityKey.unpack(layout.AffinityKey.pack(a)) == a
    assert layout.LocalAddr.pack(addr) == bytes([10, 0, 0, 1])


@pytest.mark.parametrize("cls", [c for c in mirrors() if c.Record is not tuple], ids=lambda c: c.__name__)
def test_records_pack_to_the_mirror_bytes(cls):
    """A record packs to exactly what the ctypes mirror holds for the same values."""
    values = [(i + 1) * 0x01010101 & ((1 << (8 * getattr(cls, n).size)) - 1) for i, n in enumerate(cls.Record._fields)]
    mirror = cls()
    for n, v in zip(cls.Record._fields, values):
        size = getattr(cls, n).size
        setattr(mirror, n, int.from_bytes(v.to_bytes(size, "big"), sys.byteorder) if n in cls._be_ else v)
    assert cls.pack(cls.Record(*values)) == bytes(mirror)
    assert cls.unpack(bytes(mirror)) == cls.Record(*values)


def test_config_of_marks():
    c = MarkConfig(id_shift=4, id_mask=0xFF0, masq_mark=0x1000, reject_mark=0x2000).config()
    assert (c.id_shift, c.id_mask, c.masq_mark, c.reject_mark) == (4, 0xFF0, 0x1000, 0x2000)


def test_skbuff_matches_btf(obj_btf):
    """The test-run ctx mirror, against the __sk_buff the object was built with
    (its two anonymous pointer unions are named flow_keys and sk here)."""
    want = obj_btf.struct("__sk_buff")
    assert ctypes.sizeof(bpftest.SkBuff) == want.size
    got = {name: (getattr(bpftest.SkBuff, name).offset, getattr(bpftest.SkBuff, name).size)
           for name, *_ in bpftest.SkBuff._fields_}
    for m in want.members:
        if m.name:
            assert got[m.name] == (m.offset, m.size), m.name
    assert [(m.offset, m.size) for m in want.members if not m.name] == [got["flow_keys"], got["sk"]]


def test_btf_rejects_bitfields():
    # vmlinux's sk_buff has bitfields; the reader must say so, not guess.
    vmlinux = "/sys/kernel/btf/vmlinux"
    try:
        kernel = btf.Btf.from_file(vmlinux)
    except FileNotFoundError:
        pytest.skip(f"{vmlinux} not present")
    with pytest.raises(btf.BtfError, match="bitfield"):
        kernel.struct("sk_buff")
