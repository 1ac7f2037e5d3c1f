"""BPF calls only the tests need, on top of blixt.node.bpf's libbpf binding:
anonymous maps and pins (map-layer tests), and BPF_PROG_TEST_RUN of the
program bpfman loaded (classifier tests)."""

from __future__ import annotations

import ctypes
import dataclasses
import os

from blixt.node import bpf
from blixt.node.bpf import _P, _check, _libbpf

class _TestRunOpts(ctypes.Structure):
    # struct bpf_test_run_opts as in libbpf 1.1's bpf.h (80 bytes).
    _fields_ = [
        ("sz", ctypes.c_size_t),
        ("data_in", ctypes.c_void_p), ("data_out", ctypes.c_void_p),
        ("data_size_in", ctypes.c_uint32), ("data_size_out", ctypes.c_uint32),
        ("ctx_in", ctypes.c_void_p), ("ctx_out", ctypes.c_void_p),
        ("ctx_size_in", ctypes.c_uint32), ("ctx_size_out", ctypes.c_uint32),
        ("retval", ctypes.c_uint32), ("repeat", ctypes.c_int),
        ("duration", ctypes.c_uint32), ("flags", ctypes.c_uint32),
        ("cpu", ctypes.c_uint32), ("batch_size", ctypes.c_uint32),
    ]

_EXTRA = {
    "bpf_obj_pin": ([ctypes.c_int, ctypes.c_char_p], ctypes.c_int),
    "bpf_map_create": ([ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32, ctypes.c_uint32,
                        ctypes.c_uint32, _P], ctypes.c_int),
    "bpf_prog_get_fd_by_id": ([ctypes.c_uint32], ctypes.c_int),
    "bpf_prog_test_run_opts": ([ctypes.c_int, ctypes.POINTER(_TestRunOpts)], ctypes.c_int),
}
for _name, (_args, _res) in _EXTRA.items():
    _fn = getattr(_libbpf(), _name)
    _fn.argtypes, _fn.restype = _args, _res


def create_map(map_type: int, key_size: int, value_size: int, max_entries: int, name: str = "") -> int:
    """Create an anonymous map; returns its fd. For tests and fixtures: the
    agent itself only opens maps bpfman created. The kernel keeps 15 name
    characters."""
    return _check("bpf_map_create", "map create", name or "(anonymous map)", map_type,
                  name[:bpf.BPF_OBJ_NAME_LEN - 1].encode() or None, key_size, value_size, max_entries, None)


def pin(fd: int, path: str | os.PathLike) -> None:
    """Pin a map or program fd on a bpffs path (tests and fixtures)."""
    path = os.fspath(path)
    _check("bpf_obj_pin", "obj pin", path, fd, path.encode())


# -- programs (tests) ---------------------------------------------------------

class SkBuff(ctypes.Structure):
    """struct __sk_buff (uapi, 192 bytes), the ctx of a TC program. For
    BPF_PROG_TEST_RUN the kernel accepts only mark, priority,
    ingress_ifindex, ifindex, cb, tstamp, wire_len, gso_segs, gso_size and
    hwtstamp as non-zero input, and writes all 192 bytes back, so ctx_out
    must be sizeof(SkBuff) (a smaller buffer gives ENOSPC)."""

    _fields_ = [
        ("len", ctypes.c_uint32), ("pkt_type", ctypes.c_uint32), ("mark", ctypes.c_uint32),
        ("queue_mapping", ctypes.c_uint32), ("protocol", ctypes.c_uint32),
        ("vlan_present", ctypes.c_uint32), ("vlan_tci", ctypes.c_uint32),
        ("vlan_proto", ctypes.c_uint32), ("priority", ctypes.c_uint32),
        ("ingress_ifindex", ctypes.c_uint32), ("ifindex", ctypes.c_uint32),
        ("tc_index", ctypes.c_uint32), ("cb", ctypes.c_uint32 * 5), ("hash", ctypes.c_uint32),
        ("tc_classid", ctypes.c_uint32), ("data", ctypes.c_uint32), ("data_end", ctypes.c_uint32),
        ("napi_id", ctypes.c_uint32), ("family", ctypes.c_uint32), ("remote_ip4", ctypes.c_uint32),
        ("local_ip4", ctypes.c_uint32), ("remote_ip6", ctypes.c_uint32 * 4),
        ("local_ip6", ctypes.c_uint32 * 4), ("remote_port", ctypes.c_uint32),
        ("local_port", ctypes.c_uint32), ("data_meta", ctypes.c_uint32),
        ("flow_keys", ctypes.c_uint64),  # __bpf_md_ptr: a pointer in a 64-bit slot
        ("tstamp", ctypes.c_uint64), ("wire_len", ctypes.c_uint32), ("gso_segs", ctypes.c_uint32),
        ("sk", ctypes.c_uint64), ("gso_size", ctypes.c_uint32), ("tstamp_type", ctypes.c_uint8),
        ("_pad", ctypes.c_uint8 * 3),  # __u32 :24
        ("hwtstamp", ctypes.c_uint64),
    ]


@dataclasses.dataclass(frozen=True)
class TestRun:
    __test__ = False  # not a pytest class
    retval: int
    data_out: bytes
    ctx_out: bytes | None
    duration: int  # ns, average per repetition


def prog_fd_by_id(prog_id: int) -> int:
    """A new fd for a loaded program (the caller closes it)."""
    return _check("bpf_prog_get_fd_by_id", "prog get_fd_by_id", f"program id {prog_id}", prog_id)


def test_run(prog_fd: int, data: bytes, ctx: bytes | None = None, ctx_out_size: int = 0,
             repeat: int = 1, data_out_size: int | None = None) -> TestRun:
    """BPF_PROG_TEST_RUN. ctx_out_size 0 asks for no ctx back; for TC
    programs pass ctypes.sizeof(SkBuff). data_out gets room for len(data) +
    256 bytes unless data_out_size says otherwise. With repeat > 1 the kernel
    runs every repetition on the same skb, so ctx changes accumulate."""
    out_size = len(data) + 256 if data_out_size is None else data_out_size
    data_out = ctypes.create_string_buffer(max(out_size, 1))
    ctx_out = ctypes.create_string_buffer(ctx_out_size) if ctx_out_size else None
    data_in = ctypes.create_string_buffer(bytes(data), len(data))
    ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx)) if ctx else None
    opts = _TestRunOpts(
        sz=ctypes.sizeof(_TestRunOpts),
        data_in=ctypes.cast(data_in, ctypes.c_void_p), data_size_in=len(data),
        data_out=ctypes.cast(data_out, ctypes.c_void_p), data_size_out=out_size,
        ctx_in=ctypes.cast(ctx_in, ctypes.c_void_p) if ctx_in is not None else None,
        ctx_size_in=len(ctx) if ctx else 0,
        ctx_out=ctypes.cast(ctx_out, ctypes.c_void_p) if ctx_out is not None else None,
        ctx_size_out=ctx_out_size, repeat=repeat,
    )
    _check("bpf_prog_test_run_opts", "prog test run", f"program fd {prog_fd}", prog_fd, ctypes.byref(opts))
    return TestRun(
        retval=opts.retval,
        data_out=data_out.raw[:opts.data_size_out],
        ctx_out=ctx_out.raw[:opts.ctx_size_out] if ctx_out is not None else None,
        duration=opts.duration,
    )
