"""The maps of a program someone else loaded: `blixt agent --maps-dir`, where
bpfman-operator loads blixt's bytecode from a ClusterBpfApplication and
bpfman's CSI driver pins the program's maps, one file per map, into the
agent pod's volume. The agent never talks to bpfman then; before writing a
map it checks what it opened:

* layout: each map's type, sizes, capacity and flags as blixt.h defines
  them (the capacities a build may choose are read, not checked), and its
  key and value structs against the BTF the map carries (the same
  comparison tests/unit/test_btf_layout.py makes with the object file);
* staleness: the CSI pins are made when the pod starts, so after the
  ClusterBpfApplication is recreated they still name the old program's
  maps; every pinned map must be one the loaded program uses;
* the mark layout: blixt_cfg is load-time global data (the
  ClusterBpfApplication's globalData), read back from the program's .rodata.
"""

from __future__ import annotations

import base64
import ctypes
import os

from blixt import btf
from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig

from . import bpf


class PinnedMapsError(Exception):
    """The pinned maps cannot be used; the message says what to change."""


def open_dir(maps_dir: str) -> dict[str, bpf.PinnedMap]:
    maps: dict[str, bpf.PinnedMap] = {}
    try:
        for name in layout.MAPS:
            path = os.path.join(maps_dir, name)
            if not os.path.exists(path):
                raise PinnedMapsError(
                    f"{maps_dir}: no map {name} pinned there; the CSI volume's csi.bpfman.io/maps must list "
                    f"every map: {','.join(layout.MAPS)}")
            maps[name] = bpf.PinnedMap.open(path)
    except BaseException:
        for m in maps.values():
            m.close()
        raise
    return maps


def layout_problems(maps: dict[str, bpf.PinnedMap]) -> list[str]:
    """Where the maps differ from blixt.h as this agent knows it."""
    out = []
    blobs: dict[int, btf.Btf] = {}
    for name, spec in layout.MAPS.items():
        m = maps[name]
        want = {"type": spec.map_type, "key size": ctypes.sizeof(spec.key),
                "value size": ctypes.sizeof(spec.value), "max entries": spec.max_entries,
                "flags": spec.flags}
        got = {"type": m.map_type, "key size": m.key_size, "value size": m.value_size,
               "max entries": m.max_entries, "flags": m.map_flags}
        if name in layout.RESIZABLE:  # the build's choice: the agent plans against what it finds
            del want["max entries"], got["max entries"]
        out += [f"{name}: {k} {got[k]}, blixt.h says {want[k]}" for k in want if got[k] != want[k]]
        if not m.btf_id:
            out.append(f"{name}: the map carries no BTF to check its layout against")
            continue
        if m.btf_id not in blobs:
            blobs[m.btf_id] = btf.Btf(bpf.btf_data(m.btf_id))
        types = blobs[m.btf_id]
        for what, cls, tid in (("key", spec.key, m.btf_key_type_id), ("value", spec.value, m.btf_value_type_id)):
            c_name = getattr(cls, "_c_name_", None)
            if c_name is None:
                continue  # a plain integer: the size check covers it
            try:
                struct = types.struct_at(tid)
            except btf.BtfError as e:
                out.append(f"{name}: {what}: {e}")
                continue
            if struct.name != c_name:
                out.append(f"{name}: {what} is struct {struct.name}, blixt.h says {c_name}")
            out += [f"{name}: {p}" for p in btf.ctypes_mismatches(cls, struct)]
    try:
        layout.capacity_of({name: m.max_entries for name, m in maps.items()})
    except ValueError as e:
        out.append(str(e))
    return out


def stale(maps: dict[str, bpf.PinnedMap], prog_id: int) -> list[str]:
    """The pinned maps the program does not use (pins of an earlier load)."""
    used = set(bpf.prog_map_ids(prog_id))
    return [f"{name} (map id {m.id})" for name, m in maps.items() if m.id not in used]


def loaded_marks(prog_id: int) -> MarkConfig:
    """The mark layout the program was loaded with: blixt_cfg in its .rodata.
    The .rodata map bpfman creates carries no BTF of its own; the offset of
    blixt_cfg in it comes from the program's BTF, which its other maps carry."""
    rodata, btf_id, seen = None, 0, []
    try:
        for map_id in bpf.prog_map_ids(prog_id):
            m = bpf.PinnedMap.by_id(map_id)
            seen.append(m.name)
            if m.name.endswith(".rodata") and rodata is None:
                rodata = m
                continue
            btf_id = btf_id or m.btf_id
            m.close()
        if rodata is None or not btf_id:
            raise PinnedMapsError(f"program {prog_id} has no .rodata map, or no BTF, among its maps "
                                  f"({', '.join(seen)}): is it blixt's program?")
        try:
            offset, size = btf.Btf(bpf.btf_data(btf_id)).datasec_var(".rodata", "blixt_cfg")
        except btf.BtfError as e:
            raise PinnedMapsError(f"program {prog_id}: {e}: is it blixt's program?") from None
        raw = rodata.lookup(bytes(4))
    finally:
        if rodata is not None:
            rodata.close()
    if raw is None or size != ctypes.sizeof(layout.Config) or len(raw) < offset + size:
        raise PinnedMapsError(f"program {prog_id}: blixt_cfg is not where its BTF says in .rodata")
    c = layout.Config.from_buffer_copy(raw[offset:offset + size])
    return MarkConfig(c.id_shift, c.id_mask, c.masq_mark, c.reject_mark)


def marks_problem(loaded: MarkConfig, wanted: MarkConfig) -> str | None:
    """Why the agent must not run with these flags, or None."""
    if loaded == wanted:
        return None
    return (f"the loaded program's mark layout is id shift {loaded.id_shift}, id mask {loaded.id_mask:#x}, "
            f"masquerade {loaded.masq_mark:#x}, reject {loaded.reject_mark:#x}; this agent's --mark-* flags say "
            f"{wanted.id_shift}, {wanted.id_mask:#x}, {wanted.masq_mark:#x}, {wanted.reject_mark:#x}. Make them "
            f"equal: either these flags, or the ClusterBpfApplication's globalData blixt_cfg: "
            f"{global_data(wanted)} (then recreate it: bpfman-operator does not reload for a globalData change)")


def global_data(marks: MarkConfig) -> str:
    """The ClusterBpfApplication globalData value (base64) for a mark layout."""
    return base64.b64encode(bytes(marks.config())).decode()
