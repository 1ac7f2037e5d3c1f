"""A thin ctypes layer over libbpf.so.1 (1.1.x): maps pinned by bpfman. No
business logic lives here; callers deal in raw key/value bytes (see
blixt/dataplane/layout.py for the structures). The program calls only tests
need (BPF_PROG_TEST_RUN, anonymous maps) live in tests/harness/bpftest.py.

libbpf >= 1.0 always runs in "strict" mode: its low-level bpf_* wrappers
return -errno on failure *and* set errno. We read errno (use_errno=True) and
fall back to -ret, so either convention yields the right error code.
"""

from __future__ import annotations

import ctypes
import errno as _errno
import os
from typing import Iterator, Sequence

from blixt.dataplane.layout import BPF_MAP_TYPE_LPM_TRIE, PERCPU_MAP_TYPES

# Element update flags.
BPF_ANY = 0
BPF_NOEXIST = 1
BPF_EXIST = 2

BPF_OBJ_NAME_LEN = 16


class BpfError(Exception):
    """A failed bpf() call: which operation, on what, and the kernel's errno."""

    def __init__(self, op: str, path: str, err: int, detail: str = ""):
        self.op = op
        self.path = path
        self.errno = err
        name = _errno.errorcode.get(err, f"errno {err}")
        msg = f"bpf {op} on {path} failed: {name} ({os.strerror(err)})"
        super().__init__(msg + (f"; {detail}" if detail else ""))


# -- libbpf binding -----------------------------------------------------------

class _MapInfo(ctypes.Structure):
    # struct bpf_map_info up to map_extra; the kernel copies min(its, ours).
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32), ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32), ("map_flags", ctypes.c_uint32),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
        ("ifindex", ctypes.c_uint32), ("btf_vmlinux_value_type_id", ctypes.c_uint32),
        ("netns_dev", ctypes.c_uint64), ("netns_ino", ctypes.c_uint64),
        ("btf_id", ctypes.c_uint32), ("btf_key_type_id", ctypes.c_uint32),
        ("btf_value_type_id", ctypes.c_uint32), ("_pad", ctypes.c_uint32),
        ("map_extra", ctypes.c_uint64),
    ]


class _LinkInfo(ctypes.Structure):
    # struct bpf_link_info: type, id, prog_id, then a union aligned to 8
    # bytes whose tcx member is {ifindex, attach_type}; room for the rest.
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("prog_id", ctypes.c_uint32),
        ("_pad", ctypes.c_uint32), ("ifindex", ctypes.c_uint32), ("attach_type", ctypes.c_uint32),
        ("_rest", ctypes.c_uint8 * 64),
    ]


class _ProgInfo(ctypes.Structure):
    # struct bpf_prog_info up to name: enough for its map ids.
    _fields_ = [
        ("type", ctypes.c_uint32), ("id", ctypes.c_uint32), ("tag", ctypes.c_uint8 * 8),
        ("jited_prog_len", ctypes.c_uint32), ("xlated_prog_len", ctypes.c_uint32),
        ("jited_prog_insns", ctypes.c_uint64), ("xlated_prog_insns", ctypes.c_uint64),
        ("load_time", ctypes.c_uint64), ("created_by_uid", ctypes.c_uint32),
        ("nr_map_ids", ctypes.c_uint32), ("map_ids", ctypes.c_uint64),
        ("name", ctypes.c_char * BPF_OBJ_NAME_LEN),
    ]


class _BtfInfo(ctypes.Structure):
    # struct bpf_btf_info
    _fields_ = [("btf", ctypes.c_uint64), ("btf_size", ctypes.c_uint32), ("id", ctypes.c_uint32),
                ("name", ctypes.c_uint64), ("name_len", ctypes.c_uint32), ("kernel_btf", ctypes.c_uint32)]


BPF_LINK_TYPE_TCX = 11
BPF_TCX_INGRESS = 46


class _BatchOpts(ctypes.Structure):
    # struct bpf_map_batch_opts; libbpf rejects an opts whose sz it does not know.
    _fields_ = [("sz", ctypes.c_size_t), ("elem_flags", ctypes.c_uint64), ("flags", ctypes.c_uint64)]


_P = ctypes.c_void_p
_U32P = ctypes.POINTER(ctypes.c_uint32)
_SIGNATURES = {
    "bpf_obj_get": ([ctypes.c_char_p], ctypes.c_int),
    "bpf_obj_get_info_by_fd": ([ctypes.c_int, _P, _U32P], ctypes.c_int),
    "bpf_map_lookup_elem": ([ctypes.c_int, _P, _P], ctypes.c_int),
    "bpf_map_update_elem": ([ctypes.c_int, _P, _P, ctypes.c_uint64], ctypes.c_int),
    "bpf_map_delete_elem": ([ctypes.c_int, _P], ctypes.c_int),
    "bpf_map_get_next_key": ([ctypes.c_int, _P, _P], ctypes.c_int),
    "bpf_map_update_batch": ([ctypes.c_int, _P, _P, _U32P, ctypes.POINTER(_BatchOpts)], ctypes.c_int),
    "bpf_map_delete_batch": ([ctypes.c_int, _P, _U32P, ctypes.POINTER(_BatchOpts)], ctypes.c_int),
    "libbpf_num_possible_cpus": ([], ctypes.c_int),
    "bpf_link_get_next_id": ([ctypes.c_uint32, _U32P], ctypes.c_int),
    "bpf_link_get_fd_by_id": ([ctypes.c_uint32], ctypes.c_int),
    "bpf_prog_get_fd_by_id": ([ctypes.c_uint32], ctypes.c_int),
    "bpf_map_get_fd_by_id": ([ctypes.c_uint32], ctypes.c_int),
    "bpf_btf_get_fd_by_id": ([ctypes.c_uint32], ctypes.c_int),
}
_lib = None


def _libbpf():
    """Loaded on first use, so importing this module needs no libbpf."""
    global _lib
    if _lib is None:
        lib = ctypes.CDLL("libbpf.so.1", use_errno=True)
        for name, (args, res) in _SIGNATURES.items():
            fn = getattr(lib, name)
            fn.argtypes, fn.restype = args, res
        _lib = lib
    return _lib


def _call(name: str, *args) -> tuple[int, int]:
    """(ret, errno): errno is 0 on success, else the positive error code."""
    fn = getattr(_libbpf(), name)
    ctypes.set_errno(0)
    ret = fn(*args)
    if ret >= 0:
        return ret, 0
    return ret, ctypes.get_errno() or -ret


def _check(name: str, op: str, path: str, *args) -> int:
    ret, err = _call(name, *args)
    if err:
        raise BpfError(op, path, err)
    return ret


def num_possible_cpus() -> int:
    n = _libbpf().libbpf_num_possible_cpus()
    if n <= 0:
        raise BpfError("num_possible_cpus", "/sys/devices/system/cpu/possible", -n)
    return n


def _round8(n: int) -> int:
    return (n + 7) & ~7


def obj_get(path: str | os.PathLike) -> int:
    """A new fd for a pinned object (map or program); the caller closes it."""
    path = os.fspath(path)
    return _check("bpf_obj_get", "obj get", path, path.encode())


def _info(fd: int, info: ctypes.Structure, what: str) -> None:
    size = ctypes.c_uint32(ctypes.sizeof(info))
    _check("bpf_obj_get_info_by_fd", "info", what, fd, ctypes.byref(info), ctypes.byref(size))


def prog_map_ids(prog_id: int) -> list[int]:
    """The ids of the maps a loaded program uses (its own and shared ones)."""
    what = f"program {prog_id}"
    fd = _check("bpf_prog_get_fd_by_id", "prog get fd by id", what, prog_id)
    try:
        info = _ProgInfo()
        _info(fd, info, what)
        ids = (ctypes.c_uint32 * info.nr_map_ids)()
        info = _ProgInfo(nr_map_ids=len(ids), map_ids=ctypes.addressof(ids))
        _info(fd, info, what)
        return list(ids[:info.nr_map_ids])
    finally:
        os.close(fd)


def btf_data(btf_id: int) -> bytes:
    """The raw BTF (header, types, strings) the kernel holds under an id."""
    what = f"btf {btf_id}"
    fd = _check("bpf_btf_get_fd_by_id", "btf get fd by id", what, btf_id)
    try:
        info = _BtfInfo()
        _info(fd, info, what)
        buf = ctypes.create_string_buffer(info.btf_size)
        info = _BtfInfo(btf=ctypes.addressof(buf), btf_size=len(buf))
        _info(fd, info, what)
        return buf.raw[:info.btf_size]
    finally:
        os.close(fd)


def tcx_ingress_ifindexes(prog_id: int) -> list[int]:
    """The ifindex of every TCX ingress link in the kernel that runs program
    prog_id; 0 for a link whose device is gone (its namespace was deleted,
    say), which bpfman still lists as attached."""
    out: list[int] = []
    link_id = ctypes.c_uint32(0)
    while True:
        _, err = _call("bpf_link_get_next_id", link_id.value, ctypes.byref(link_id))
        if err == _errno.ENOENT:
            return out
        if err:
            raise BpfError("link get next id", f"link {link_id.value}", err)
        fd, err = _call("bpf_link_get_fd_by_id", link_id.value)
        if err == _errno.ENOENT:  # gone since we listed it
            continue
        if err:
            raise BpfError("link get fd by id", f"link {link_id.value}", err)
        try:
            info = _LinkInfo()
            size = ctypes.c_uint32(ctypes.sizeof(info))
            _check("bpf_obj_get_info_by_fd", "link info", f"link {link_id.value}", fd,
                   ctypes.byref(info), ctypes.byref(size))
        finally:
            os.close(fd)
        if (info.type, info.prog_id, info.attach_type) == (BPF_LINK_TYPE_TCX, prog_id, BPF_TCX_INGRESS):
            out.append(info.ifindex)


# -- maps ---------------------------------------------------------------------

class PinnedMap:
    """A BPF map opened from its bpffs pin; keys and values are raw bytes.

    For per-CPU maps every value is `round_up(value_size, 8) * possible CPUs`
    bytes (`value_buffer_size`): use lookup_percpu(), and pass that full
    buffer (or update_percpu()) when writing."""

    def __init__(self, fd: int, path: str):
        self.fd = fd
        self.path = path
        info = _MapInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        try:
            _check("bpf_obj_get_info_by_fd", "map info", path, fd, ctypes.byref(info), ctypes.byref(size))
        except BaseException:
            os.close(fd)
            self.fd = -1  # __del__ runs on a half-built object too
            raise
        self.map_type = info.type
        self.id = info.id
        self.key_size = info.key_size
        self.value_size = info.value_size
        self.max_entries = info.max_entries
        self.map_flags = info.map_flags
        self.name = info.name.decode(errors="replace")  # the kernel keeps 15 chars
        self.btf_id = info.btf_id
        self.btf_key_type_id = info.btf_key_type_id
        self.btf_value_type_id = info.btf_value_type_id
        self.percpu = self.map_type in PERCPU_MAP_TYPES
        self.ncpus = num_possible_cpus() if self.percpu else 1
        self.value_buffer_size = (_round8(self.value_size) * self.ncpus if self.percpu
                                  else self.value_size)

    @classmethod
    def open(cls, path: str | os.PathLike) -> "PinnedMap":
        return cls(obj_get(path), os.fspath(path))

    @classmethod
    def by_id(cls, map_id: int) -> "PinnedMap":
        """A map by its kernel id (pinned or not); path names the id."""
        what = f"map id {map_id}"
        return cls(_check("bpf_map_get_fd_by_id", "map get fd by id", what, map_id), what)

    # -- lifetime
    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1

    def __enter__(self) -> "PinnedMap":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self):
        try:
            self.close()
        except Exception:
            pass

    def __repr__(self) -> str:
        return (f"PinnedMap({self.path!r}, type={self.map_type}, id={self.id}, key_size={self.key_size}, "
                f"value_size={self.value_size}, max_entries={self.max_entries})")

    def memlock(self) -> int:
        """Bytes the kernel charges for this map (fdinfo's memlock): for maps
        that are not preallocated it follows what the map holds."""
        with open(f"/proc/self/fdinfo/{self._fd()}") as f:
            for line in f:
                if line.startswith("memlock:"):
                    return int(line.split()[1])
        return 0

    # -- size checks: a wrong size would make the kernel read past our buffer
    def _key(self, key: bytes) -> bytes:
        if len(key) != self.key_size:
            raise ValueError(f"{self.path}: key must be {self.key_size} bytes, got {len(key)}")
        return bytes(key)

    def _value(self, value: bytes) -> bytes:
        if len(value) != self.value_buffer_size:
            what = "per-CPU value buffer" if self.percpu else "value"
            raise ValueError(f"{self.path}: {what} must be {self.value_buffer_size} bytes, got {len(value)}")
        return bytes(value)

    def _fd(self) -> int:
        if self.fd < 0:
            raise ValueError(f"{self.path}: map is closed")
        return self.fd

    # -- single elements
    def _lookup_raw(self, key: bytes) -> bytes | None:
        k = self._key(key)
        buf = ctypes.create_string_buffer(self.value_buffer_size)
        ret, err = _call("bpf_map_lookup_elem", self._fd(), k, buf)
        if err == _errno.ENOENT:
            return None
        if err:
            raise BpfError("map lookup", self.path, err)
        return buf.raw

    def lookup(self, key: bytes) -> bytes | None:
        if self.percpu:
            raise TypeError(f"{self.path} is a per-CPU map: use lookup_percpu()")
        return self._lookup_raw(key)

    def lookup_percpu(self, key: bytes) -> list[bytes] | None:
        """One value_size-byte value per possible CPU, or None when absent."""
        if not self.percpu:
            raise TypeError(f"{self.path} is not a per-CPU map: use lookup()")
        raw = self._lookup_raw(key)
        if raw is None:
            return None
        step = _round8(self.value_size)
        return [raw[i * step:i * step + self.value_size] for i in range(self.ncpus)]

    def update(self, key: bytes, value: bytes, flags: int = BPF_ANY) -> None:
        _check("bpf_map_update_elem", "map update", self.path, self._fd(), self._key(key),
               self._value(value), flags)

    def update_percpu(self, key: bytes, values: Sequence[bytes], flags: int = BPF_ANY) -> None:
        """Write one value per possible CPU (each value_size bytes)."""
        if not self.percpu or len(values) != self.ncpus:
            raise ValueError(f"{self.path}: need {self.ncpus} per-CPU values, got {len(values)}")
        step = _round8(self.value_size)
        buf = bytearray(self.value_buffer_size)
        for i, v in enumerate(values):
            if len(v) != self.value_size:
                raise ValueError(f"{self.path}: value must be {self.value_size} bytes, got {len(v)}")
            buf[i * step:i * step + len(v)] = v
        self.update(key, bytes(buf), flags)

    def delete(self, key: bytes) -> bool:
        """True if the key was there; False if it was already absent."""
        ret, err = _call("bpf_map_delete_elem", self._fd(), self._key(key))
        if err == _errno.ENOENT:
            return False
        if err:
            raise BpfError("map delete", self.path, err)
        return True

    # -- iteration
    def keys(self) -> Iterator[bytes]:
        """Every key. A hash map changed meanwhile may restart the walk or skip
        keys (kernel semantics of BPF_MAP_GET_NEXT_KEY)."""
        fd = self._fd()
        cur = None
        nxt = ctypes.create_string_buffer(self.key_size)
        while True:
            ret, err = _call("bpf_map_get_next_key", fd, cur, nxt)
            if err == _errno.ENOENT:
                return
            if err:
                raise BpfError("map get_next_key", self.path, err)
            cur = nxt.raw
            yield cur

    def items(self) -> Iterator[tuple[bytes, bytes | list[bytes]]]:
        """(key, value); for per-CPU maps the value is lookup_percpu()'s list.
        Keys deleted while walking are skipped."""
        get = self.lookup_percpu if self.percpu else self.lookup
        for k in self.keys():
            v = get(k)
            if v is not None:
                yield k, v

    # -- batches: one syscall for many elements
    def update_batch(self, keys: Sequence[bytes], values: Sequence[bytes], flags: int = BPF_ANY) -> None:
        """Write all pairs. The kernel's generic batch update accepts only
        elem_flags 0 (BPF_ANY) or BPF_F_LOCK: NOEXIST/EXIST give EINVAL.
        On failure the BpfError says how many pairs were written first."""
        if len(keys) != len(values):
            raise ValueError(f"{len(keys)} keys but {len(values)} values")
        if not keys:
            return
        if self.map_type == BPF_MAP_TYPE_LPM_TRIE:  # the kernel has no batch ops for tries
            for k, v in zip(keys, values):
                self.update(k, v, flags)
            return
        kbuf = b"".join(self._key(k) for k in keys)
        vbuf = b"".join(self._value(v) for v in values)
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts), elem_flags=flags)
        count = ctypes.c_uint32(len(keys))
        ret, err = _call("bpf_map_update_batch", self._fd(), kbuf, vbuf, ctypes.byref(count),
                         ctypes.byref(opts))
        if err:
            raise BpfError("map update batch", self.path, err,
                           f"{_progress(count.value, len(keys))} of {len(keys)} elements were written")

    def delete_batch(self, keys: Sequence[bytes]) -> int:
        """Delete keys; absent keys are skipped (the kernel stops a batch at
        the first ENOENT, so we resume after it). Returns how many were
        deleted. On another failure the BpfError says how many were deleted."""
        if self.map_type == BPF_MAP_TYPE_LPM_TRIE:
            return sum(self.delete(k) for k in keys)
        kbuf = b"".join(self._key(k) for k in keys)
        opts = _BatchOpts(sz=ctypes.sizeof(_BatchOpts))
        total, start, deleted = len(keys), 0, 0
        while start < total:
            count = ctypes.c_uint32(total - start)
            ptr = ctypes.c_char_p(kbuf[start * self.key_size:])
            ret, err = _call("bpf_map_delete_batch", self._fd(), ptr, ctypes.byref(count),
                             ctypes.byref(opts))
            done = _progress(count.value, total - start) if err else total - start
            deleted += done
            if not err:
                break
            if err != _errno.ENOENT:
                raise BpfError("map delete batch", self.path, err,
                               f"{deleted} of {total} elements were deleted")
            start += done + 1  # step over the absent key
        return deleted


def _progress(count: int, asked: int) -> int:
    """Elements a failed batch call processed. The kernel writes the count
    back only once it has started the loop; an early failure (bad flags, say)
    leaves our input there, and a loop failure always stops short of it."""
    return 0 if count >= asked else count
