"""A small reader of the BTF in a compiled BPF object (the .BTF section of an
ELF64 little-endian file), per the kernel's Documentation/bpf/btf.rst.

It answers the questions the layout test asks: a struct's size and member
offsets, each map's definition from the .maps section, and a global's size.
Pure Python, so it needs neither libbpf nor privileges.
"""

from __future__ import annotations

import dataclasses
import os
import struct

# BTF kinds (btf_type.info bits 24-28).
INT, PTR, ARRAY, STRUCT, UNION, ENUM, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT = range(1, 12)
FUNC, FUNC_PROTO, VAR, DATASEC, FLOAT, DECL_TAG, TYPE_TAG, ENUM64 = range(12, 20)
# Kinds that only qualify another type: sizes and names resolve through them.
_MODIFIERS = (TYPEDEF, VOLATILE, CONST, RESTRICT, TYPE_TAG)
_QUALIFIERS = (VOLATILE, CONST, RESTRICT, TYPE_TAG)

BTF_MAGIC = 0xEB9F
PTR_SIZE = 8  # BPF is a 64-bit target; BTF does not record pointer size


class BtfError(Exception):
    pass


@dataclasses.dataclass(frozen=True)
class Member:
    name: str
    offset: int  # bytes
    size: int    # bytes


@dataclasses.dataclass(frozen=True)
class Struct:
    name: str
    size: int
    members: list[Member]


@dataclasses.dataclass(frozen=True)
class MapDef:
    name: str
    map_type: int
    max_entries: int
    key_size: int
    value_size: int
    key_type_name: str | None
    value_type_name: str | None
    map_flags: int = 0


@dataclasses.dataclass(frozen=True)
class _Type:
    kind: int
    name: str
    kind_flag: bool
    vlen: int
    size_or_type: int  # size for INT/STRUCT/UNION/ENUM/DATASEC/FLOAT, type id otherwise
    extra: tuple       # kind-specific trailing records (see _parse_types)


def _elf_section(data: bytes, wanted: str) -> bytes:
    """The contents of one section, found through the section header table."""
    if data[:4] != b"\x7fELF":
        raise BtfError("not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise BtfError("only ELF64 little-endian objects are supported")
    shoff, = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)

    def header(i: int) -> tuple:
        # name, type, flags, addr, offset, size, link, info, addralign, entsize
        return struct.unpack_from("<IIQQQQIIQQ", data, shoff + i * shentsize)

    if shnum == 0 and shoff:   # more than 0xff00 sections: count lives in section 0
        shnum = header(0)[5]
    if shstrndx == 0xFFFF:     # SHN_XINDEX: index lives in section 0's sh_link
        shstrndx = header(0)[6]
    strtab = header(shstrndx)
    names = data[strtab[4]:strtab[4] + strtab[5]]
    for i in range(shnum):
        h = header(i)
        end = names.find(b"\0", h[0])
        if names[h[0]:end].decode() == wanted:
            return data[h[4]:h[4] + h[5]]
    raise BtfError(f"no {wanted} section (was the object built with -g?)")


class Btf:
    def __init__(self, blob: bytes):
        if len(blob) < 24:
            raise BtfError("BTF blob too short")
        magic, version, _flags, hdr_len = struct.unpack_from("<HBBI", blob, 0)
        if magic != BTF_MAGIC:
            raise BtfError(f"bad BTF magic {magic:#x} (big-endian BTF is not supported)")
        if version != 1:
            raise BtfError(f"unsupported BTF version {version}")
        type_off, type_len, str_off, str_len = struct.unpack_from("<IIII", blob, 8)
        base = hdr_len  # section offsets count from the end of the header
        self._strings = blob[base + str_off:base + str_off + str_len]
        self.types: list[_Type | None] = [None]  # id 0 is void
        self._parse_types(blob[base + type_off:base + type_off + type_len])

    @classmethod
    def from_elf(cls, path: str | os.PathLike) -> "Btf":
        with open(path, "rb") as f:
            return cls(_elf_section(f.read(), ".BTF"))

    @classmethod
    def from_file(cls, path: str | os.PathLike) -> "Btf":
        """Raw BTF, e.g. /sys/kernel/btf/vmlinux."""
        with open(path, "rb") as f:
            return cls(f.read())

    # -- parsing
    def _str(self, off: int) -> str:
        end = self._strings.find(b"\0", off)
        return self._strings[off:end if end >= 0 else None].decode()

    def _parse_types(self, sec: bytes) -> None:
        pos = 0
        while pos < len(sec):
            name_off, info, size_or_type = struct.unpack_from("<III", sec, pos)
            pos += 12
            kind = (info >> 24) & 0x1F
            vlen = info & 0xFFFF
            # Each kind's trailing data; every one is stepped over even when unused.
            if kind == INT:
                extra = struct.unpack_from("<I", sec, pos)
                pos += 4
            elif kind == ARRAY:
                extra = struct.unpack_from("<III", sec, pos)  # elem type, index type, nelems
                pos += 12
            elif kind in (STRUCT, UNION, DATASEC, ENUM64):
                # members (name, type, offset), secinfos (type, offset, size),
                # enum64 values (name, lo32, hi32): all three words each
                extra = tuple(struct.unpack_from("<III", sec, pos + 12 * i) for i in range(vlen))
                pos += 12 * vlen
            elif kind in (ENUM, FUNC_PROTO):
                extra = tuple(struct.unpack_from("<II", sec, pos + 8 * i) for i in range(vlen))
                pos += 8 * vlen
            elif kind in (VAR, DECL_TAG):
                extra = struct.unpack_from("<I", sec, pos)  # linkage / component_idx
                pos += 4
            elif kind in (PTR, FWD, TYPEDEF, VOLATILE, CONST, RESTRICT, FUNC, FLOAT, TYPE_TAG):
                extra = ()
            else:
                raise BtfError(f"unknown BTF kind {kind} at type id {len(self.types)}")
            self.types.append(_Type(kind, self._str(name_off), bool(info >> 31), vlen, size_or_type, extra))

    # -- resolution
    def _type(self, tid: int) -> _Type:
        t = self.types[tid] if 0 < tid < len(self.types) else None
        if t is None:
            raise BtfError(f"type id {tid} is void or out of range")
        return t

    def _resolve(self, tid: int, kinds=_MODIFIERS) -> int:
        while self._type(tid).kind in kinds:
            tid = self._type(tid).size_or_type
        return tid

    def size_of(self, tid: int) -> int:
        t = self._type(self._resolve(tid))
        if t.kind in (INT, STRUCT, UNION, ENUM, ENUM64, FLOAT, DATASEC):
            return t.size_or_type
        if t.kind == PTR:
            return PTR_SIZE
        if t.kind == ARRAY:
            elem, _index, nelems = t.extra
            return self.size_of(elem) * nelems
        raise BtfError(f"type id {tid} ({t.name or 'anonymous'}, kind {t.kind}) has no size")

    def type_name(self, tid: int) -> str | None:
        """The name as written (typedefs kept), looking through const/volatile."""
        t = self._type(self._resolve(tid, _QUALIFIERS))
        return t.name or None

    def _find(self, kind: int, name: str) -> int:
        for tid, t in enumerate(self.types):
            if t is not None and t.kind == kind and t.name == name:
                return tid
        raise BtfError(f"no {_KIND_NAMES.get(kind, kind)} named {name!r} in the BTF")

    def _members(self, tid: int) -> list[tuple[str, int, int]]:
        """(name, byte offset, type id) of a struct or union; no bitfields."""
        t = self._type(tid)
        out = []
        for name_off, mtype, offset in t.extra:
            name = self._str(name_off)
            bits, bitfield = (offset & 0xFFFFFF, offset >> 24) if t.kind_flag else (offset, 0)
            base = self._type(self._resolve(mtype))
            if not bitfield and base.kind == INT:  # pre-kind_flag encoding of bitfields
                enc = base.extra[0]
                if (enc >> 16) & 0xFF or enc & 0xFF != base.size_or_type * 8:
                    bitfield = enc & 0xFF
            if bitfield or bits % 8:
                raise BtfError(f"{t.name or 'anonymous struct'}.{name or '(anon)'} is a bitfield "
                               f"({bitfield or '?'} bits at bit {bits}): not supported")
            out.append((name, bits // 8, mtype))
        return out

    # -- API
    def struct(self, name: str) -> Struct:
        tid = self._find(STRUCT, name)
        return Struct(name, self._type(tid).size_or_type,
                      [Member(n, off, self.size_of(m)) for n, off, m in self._members(tid)])

    def struct_at(self, tid: int) -> Struct:
        """The struct a type id names (through typedefs and qualifiers), as
        a map's btf_key_type_id / btf_value_type_id does."""
        rid = self._resolve(tid)
        t = self._type(rid)
        if t.kind != STRUCT:
            raise BtfError(f"type id {tid} is a {_KIND_NAMES.get(t.kind, t.kind)}, not a struct")
        return Struct(t.name, t.size_or_type, [Member(n, off, self.size_of(m)) for n, off, m in self._members(rid)])

    def datasec_var(self, section: str, name: str) -> tuple[int, int]:
        """(offset, size) of a variable in a data section (.rodata, .data)."""
        t = self._type(self._find(DATASEC, section))
        for var_tid, off, size in t.extra:
            if self._type(var_tid).name == name:
                return off, size
        raise BtfError(f"no variable {name!r} in section {t.name!r}")

    def var_size(self, name: str) -> int:
        """Size of a global variable (e.g. blixt_cfg in .rodata)."""
        return self.size_of(self._type(self._find(VAR, name)).size_or_type)

    def functions(self, linkage: int = 1) -> list[str]:
        """Names of FUNC types with the given linkage (0 static, 1 global,
        2 extern); in a BPF object the global ones are its programs."""
        return [t.name for t in self.types[1:] if t is not None and t.kind == FUNC and t.vlen == linkage]

    def maps(self) -> dict[str, MapDef]:
        """Map definitions from the BTF-defined .maps section (libbpf's
        __uint/__type convention: __uint(x, N) is a pointer to int[N],
        __type(x, T) is a pointer to T)."""
        sec = self._type(self._find(DATASEC, ".maps"))
        out = {}
        for var_tid, _off, _size in sec.extra:
            var = self._type(var_tid)
            fields = {n: m for n, _o, m in self._members(self._resolve(var.size_or_type))}
            out[var.name] = self._map_def(var.name, fields)
        return out

    def _map_def(self, name: str, fields: dict[str, int]) -> MapDef:
        def uint(field: str) -> int | None:
            if field not in fields:
                return None
            ptr = self._type(self._resolve(fields[field]))
            arr = self._type(ptr.size_or_type) if ptr.kind == PTR else None
            if arr is None or arr.kind != ARRAY:
                raise BtfError(f"map {name}: {field} is not an __uint() (pointer to array)")
            return arr.extra[2]

        def pointee(field: str) -> tuple[int, str | None]:
            if field not in fields:
                return 0, None
            ptr = self._type(self._resolve(fields[field]))
            if ptr.kind != PTR:
                raise BtfError(f"map {name}: {field} is not a __type() (pointer)")
            return self.size_of(ptr.size_or_type), self.type_name(ptr.size_or_type)

        key_size, key_name = pointee("key")
        value_size, value_name = pointee("value")
        map_type = uint("type")
        if map_type is None:
            raise BtfError(f"map {name} has no type")
        return MapDef(name, map_type, uint("max_entries") or 0,
                      key_size or uint("key_size") or 0, value_size or uint("value_size") or 0,
                      key_name, value_name, uint("map_flags") or 0)


_KIND_NAMES = {STRUCT: "struct", UNION: "union", VAR: "variable", DATASEC: "section"}


def ctypes_mismatches(cls, want: Struct) -> list[str]:
    """Differences between a ctypes Structure and a BTF struct, by field
    (the layout test's and the agent's check of its mirrors)."""
    import ctypes
    out = []
    if ctypes.sizeof(cls) != want.size:
        out.append(f"{cls.__name__}: size {ctypes.sizeof(cls)} != {want.name} size {want.size}")
    got = [(name, getattr(cls, name).offset, getattr(cls, name).size) for name, *_ in cls._fields_]
    exp = [(m.name, m.offset, m.size) for m in want.members]
    if got != exp:
        out.append(f"{cls.__name__} fields {got} != {want.name} members {exp}")
    return out
