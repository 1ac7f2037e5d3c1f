"""blixt.node.bpf on the real kernel: maps created and pinned on a
private bpffs, then used only through PinnedMap, as the agent uses bpfman's
pins. Needs root."""

from __future__ import annotations

import ctypes
import errno
import os
import pathlib
import struct
import subprocess

import pytest

from blixt.dataplane import layout
from blixt.node import bpf
from harness import bpftest
from harness import paths
from harness.paths import component as _component


@pytest.fixture
def bpffs(tmp_path) -> pathlib.Path:
    """A private bpffs mount, unmounted (dropping every pin) afterwards."""
    with _component():
        paths.require_root("mounting a bpffs and creating BPF maps")
    mnt = tmp_path / "bpffs"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "bpf", "bpf", str(mnt)], check=True)
    yield mnt
    subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
def make_map(bpffs):
    """make_map(type, key_size, value_size, max_entries) -> an open PinnedMap."""
    opened: list[bpf.PinnedMap] = []

    def make(map_type, key_size, value_size, max_entries, name="blixt_test"):
        fd = bpftest.create_map(map_type, key_size, value_size, max_entries, name)
        try:
            bpftest.pin(fd, bpffs / name)
        finally:
            os.close(fd)  # the pin keeps the map alive
        m = bpf.PinnedMap.open(bpffs / name)
        opened.append(m)
        return m

    yield make
    for m in opened:
        m.close()


def u32(i: int) -> bytes:
    return struct.pack("=I", i)


def possible_cpus() -> int:
    text = pathlib.Path("/sys/devices/system/cpu/possible").read_text().strip()
    n = 0
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        n += int(hi or lo) - int(lo) + 1
    return n


def test_info_fields(make_map, bpffs):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 8, 24, 128, name="blixt_services")
    assert (m.map_type, m.key_size, m.value_size, m.max_entries) == (layout.BPF_MAP_TYPE_HASH, 8, 24, 128)
    assert m.name == "blixt_services"
    assert m.id > 0 and m.path == str(bpffs / "blixt_services")
    assert not m.percpu and m.value_buffer_size == 24


def test_long_names_are_cut_to_15_characters(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 4, 4, name="blixt_local_addrs")
    assert m.name == "blixt_local_add"


def test_update_lookup_delete(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, ctypes.sizeof(layout.ServiceKey), ctypes.sizeof(layout.Service), 16)
    key = layout.ServiceKey(layout.be32("10.0.0.1"), 0x5000, 6)  # port 80, network order
    val = layout.Service(id=1, gen=2, slot_count=3, flags=layout.SVC_AFFINITY, affinity_timeout=30)
    assert m.lookup(bytes(key)) is None
    m.update(bytes(key), bytes(val))
    assert layout.Service.from_buffer_copy(m.lookup(bytes(key))) == val
    with pytest.raises(bpf.BpfError) as e:
        m.update(bytes(key), bytes(val), bpf.BPF_NOEXIST)
    assert e.value.errno == errno.EEXIST
    with pytest.raises(bpf.BpfError) as e:
        m.update(bytes(layout.ServiceKey(layout.be32("10.0.0.2"), 0x5000, 6)), bytes(val), bpf.BPF_EXIST)
    assert e.value.errno == errno.ENOENT
    assert m.delete(bytes(key)) is True
    assert m.lookup(bytes(key)) is None


def test_delete_missing_returns_false(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 4, 4)
    assert m.delete(u32(7)) is False


def test_keys_and_items(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 8, 64)
    want = {u32(i): struct.pack("=Q", i * 1000) for i in range(50)}
    for k, v in want.items():
        m.update(k, v)
    keys = list(m.keys())
    assert len(keys) == 50 and set(keys) == set(want)
    assert dict(m.items()) == want


def test_empty_map_has_no_keys(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 8, 4)
    assert list(m.keys()) == [] and list(m.items()) == []


def test_batches_of_ten_thousand(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 12, 16, 20000)
    keys = [bytes(layout.SlotKey(5, 1, i)) for i in range(10000)]
    vals = [bytes(layout.Slot(i + 1, i & 1, 5)) for i in range(10000)]
    m.update_batch(keys, vals)
    got = dict(m.items())
    assert len(got) == 10000
    assert got == dict(zip(keys, vals))
    # Absent keys in a delete batch are stepped over, not fatal.
    extra = [bytes(layout.SlotKey(6, 1, i)) for i in range(3)]
    assert m.delete_batch(extra[:1] + keys[:5000] + extra[1:2] + keys[5000:] + extra[2:]) == 10000
    assert list(m.keys()) == []


def test_update_batch_reports_partial_progress(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 4, 8)
    with pytest.raises(bpf.BpfError) as e:
        m.update_batch([u32(i) for i in range(10)], [u32(i) for i in range(10)])
    assert e.value.errno == errno.E2BIG
    assert "8 of 10 elements were written" in str(e.value)
    assert len(list(m.keys())) == 8


def test_update_batch_rejected_flags_report_nothing_written(make_map):
    # The kernel's generic batch update takes only BPF_ANY (or BPF_F_LOCK).
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 4, 8)
    with pytest.raises(bpf.BpfError) as e:
        m.update_batch([u32(1)], [u32(1)], bpf.BPF_NOEXIST)
    assert e.value.errno == errno.EINVAL
    assert "0 of 1 elements were written" in str(e.value)


def test_update_beyond_capacity_names_path_and_e2big(make_map, bpffs):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 4, 4, name="blixt_small")
    for i in range(4):
        m.update(u32(i), u32(i))
    with pytest.raises(bpf.BpfError) as e:
        m.update(u32(99), u32(99))
    err = e.value
    assert (err.op, err.path, err.errno) == ("map update", str(bpffs / "blixt_small"), errno.E2BIG)
    assert str(err) == (f"bpf map update on {bpffs / 'blixt_small'} failed: "
                        f"E2BIG ({os.strerror(errno.E2BIG)})")


def test_wrong_sizes_raise_value_error(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 8, 24, 4)
    with pytest.raises(ValueError, match="key must be 8 bytes, got 4"):
        m.update(u32(1), bytes(24))
    with pytest.raises(ValueError, match="value must be 24 bytes, got 8"):
        m.update(bytes(8), bytes(8))
    with pytest.raises(ValueError, match="key must be 8 bytes, got 12"):
        m.lookup(bytes(12))
    with pytest.raises(ValueError, match="key must be 8 bytes"):
        m.delete_batch([bytes(8), bytes(7)])


def test_open_missing_path(bpffs):
    missing = bpffs / "no_such_map"
    with pytest.raises(bpf.BpfError) as e:
        bpf.PinnedMap.open(missing)
    assert e.value.errno == errno.ENOENT and e.value.path == str(missing)
    assert str(missing) in str(e.value) and "ENOENT" in str(e.value)


def test_closed_map_refuses_use(make_map):
    m = make_map(layout.BPF_MAP_TYPE_HASH, 4, 4, 4)
    m.close()
    m.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        m.lookup(u32(1))


def test_percpu_hash_lookup(make_map):
    m = make_map(layout.BPF_MAP_TYPE_PERCPU_HASH, 4, 24, 16)
    n = possible_cpus()
    assert m.percpu and m.ncpus == n and m.value_buffer_size == 24 * n
    values = [bytes(layout.Stats(packets=i + 1, bytes=100 * (i + 1), new_flows=i)) for i in range(n)]
    m.update_percpu(u32(3), values)
    got = m.lookup_percpu(u32(3))
    assert got == values
    assert m.lookup_percpu(u32(4)) is None
    with pytest.raises(TypeError, match="per-CPU"):
        m.lookup(u32(3))
    assert dict(m.items()) == {u32(3): values}


def test_percpu_values_are_padded_to_8_bytes(make_map):
    m = make_map(layout.BPF_MAP_TYPE_PERCPU_ARRAY, 4, 4, 2)
    n = possible_cpus()
    assert m.value_buffer_size == 8 * n
    m.update_percpu(u32(1), [u32(0xA0 + i) for i in range(n)])
    assert m.lookup_percpu(u32(1)) == [u32(0xA0 + i) for i in range(n)]
    assert m.lookup_percpu(u32(0)) == [u32(0)] * n


def test_prog_fd_by_id_unknown():
    with _component():
        paths.require_root("BPF program lookups")
    with pytest.raises(bpf.BpfError) as e:
        bpftest.prog_fd_by_id(0x7FFFFFF0)
    assert e.value.errno == errno.ENOENT and "program id" in str(e.value)
