"""`blixt dataplane show`'s decoding and text, on map content the planner
produces (plan + after: what the manager would have written)."""

import json
import sys

import pytest

from blixt.bpfman.client import Program
from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.plan import Current, after, plan
from blixt.node import inspection

pytestmark = pytest.mark.unit

VIP = "198.18.200.0"


def kernel(*services) -> Current:
    return after(Current(), plan(Dataplane.of(services), Current(), MarkConfig()))


def weighted(*weights, masq=(), port=8080, proto="tcp", **kw):
    backends = [Backend(f"10.0.0.{i + 1}", 9000, w, i in masq) for i, w in enumerate(weights)]
    return Service(VIP, port, proto, tuple(backends), **kw)


def by_frontend(rows):
    return {r["frontend"]: r for r in rows}


def test_frontend_backends_weights_masquerade_and_counters():
    cur = kernel(weighted(70, 30, 0, masq=(1,)))
    stats = {1: layout.Stats(packets=12, bytes=900, new_flows=3)}
    [row] = inspection.frontends(cur, stats)
    assert row["frontend"] == f"{VIP}:8080/tcp"
    assert (row["service_id"], row["slot_count"], row["affinity_timeout"]) == (1, 10, 0)
    assert (row["packets"], row["bytes"], row["new_flows"]) == (12, 900, 3)
    # Weight 0 has no member and no slot, so it is not shown.
    assert row["backends"] == [
        {"id": 1, "address": "10.0.0.1", "port": 9000, "weight": 7, "masquerade": False},
        {"id": 2, "address": "10.0.0.2", "port": 9000, "weight": 3, "masquerade": True},
    ]


def test_wildcard_affinity_no_backends_and_no_counters_yet():
    cur = kernel(Service(None, 30080, "udp", (Backend("10.0.0.1", 9000),), affinity_timeout=60),
                 weighted(0, port=81))
    rows = by_frontend(inspection.frontends(cur, {}))
    wild = rows["*:30080/udp"]
    assert wild["affinity_timeout"] == 60
    assert (wild["packets"], wild["bytes"], wild["new_flows"]) == (0, 0, 0)
    empty = rows[f"{VIP}:81/tcp"]
    assert (empty["slot_count"], empty["backends"]) == (0, [])


def test_only_the_live_generation_counts_towards_weights():
    old = kernel(weighted(1, 1))
    p = plan(Dataplane.of([weighted(3, 1)]), old, MarkConfig())
    new = after(old, p)
    new.slots.update(old.slots)  # mid-flip: the old generation is still there
    [row] = inspection.frontends(new, {})
    assert [b["weight"] for b in row["backends"]] == [3, 1]


def opcodes(fn, *args) -> int:
    """Bytecode instructions fn(*args) runs: a measure of work that does not
    depend on the machine's speed."""
    count = 0

    def tracer(frame, event, arg):
        nonlocal count
        frame.f_trace_opcodes = True
        count += event == "opcode"
        return tracer
    sys.settrace(tracer)
    try:
        fn(*args)
    finally:
        sys.settrace(None)
    return count


def test_the_work_grows_with_the_frontends_not_with_their_square():
    """A scan of every member for each frontend made `dataplane show`
    quadratic: more than 120 s at 100,000 frontends."""
    def work(n: int) -> int:
        return opcodes(inspection.frontends, kernel(*(weighted(1, 2, port=1000 + p) for p in range(n))), {})
    assert work(400) < 2.5 * work(200)


def test_backend_missing_from_the_nft_map_shows_no_address():
    cur = kernel(weighted(1))
    cur.backends.clear()
    [row] = inspection.frontends(cur, {})
    assert row["backends"][0]["address"] is None
    assert "? (not in the nft map)" in inspection.format_text(
        {"programs": [], "frontends": [row], "maps": []})


class FakeMap:
    def __init__(self, entries, max_entries, memlock):
        self._keys = [bytes([i]) for i in range(entries)]
        self.max_entries = max_entries
        self._memlock = memlock

    def keys(self):
        return iter(self._keys)

    def memlock(self):
        return self._memlock


class FakeSource:
    """Manager-like: maps, current(), stats()."""

    def __init__(self, cur, stats, maps):
        self.maps, self._cur, self._stats = maps, cur, stats

    def current(self):
        return self._cur

    def stats(self):
        return self._stats


def test_report_is_json_and_its_text_names_everything():
    cur = kernel(weighted(2, 1, masq=(0,)))
    maps = {"blixt_services": FakeMap(1, 65536, 4096), "blixt_slots": FakeMap(3, 524288, 8192)}
    prog = Program(id=42, name="blixt_tcx", kernel_name="blixt_tcx", kernel_type=3,
                   map_pin_path="/run/bpfman/fs/maps/42", map_ids=(), links=(7, 8), metadata={})
    rep = inspection.report(FakeSource(cur, {1: layout.Stats(5, 400, 1)}, maps), [prog])
    assert json.loads(json.dumps(rep)) == rep
    assert rep["programs"] == [{"id": 42, "name": "blixt_tcx", "links": [7, 8],
                                "map_pin_path": "/run/bpfman/fs/maps/42"}]
    assert rep["maps"] == [
        {"name": "blixt_services", "entries": 1, "max_entries": 65536, "memlock": 4096},
        {"name": "blixt_slots", "entries": 3, "max_entries": 524288, "memlock": 8192},
    ]
    text = inspection.format_text(rep)
    assert "42 blixt_tcx  links 7, 8" in text
    assert f"{VIP}:8080/tcp  service 1  slots 3  affinity none" in text
    assert "packets 5  bytes 400  new flows 1" in text
    assert "backend 1  10.0.0.1:9000  weight 2  masquerade" in text
    assert "backend 2  10.0.0.2:9000  weight 1\n" in text
    assert "blixt_slots     3 / 524288  memlock 8192 B" in text


def test_the_interfaces_a_program_runs_on_are_shown_when_known():
    prog = Program(id=42, name="blixt_tcx", kernel_name="blixt_tcx", kernel_type=3,
                   map_pin_path="/run/bpfman/fs/maps/42", map_ids=(), links=(7, 8), metadata={})
    rep = inspection.report(FakeSource(kernel(weighted(1)), {}, {}), [prog], {42: ["eth0", "(interface gone)"]})
    assert rep["programs"][0]["attached"] == ["eth0", "(interface gone)"]
    assert "42 blixt_tcx  links 7, 8  attached to eth0, (interface gone) (tcx ingress)" in inspection.format_text(rep)
    rep = inspection.report(FakeSource(kernel(weighted(1)), {}, {}), [prog], {42: []})
    assert "attached to nothing (tcx ingress)" in inspection.format_text(rep)
    # Not known (legacy TC): not claimed either way.
    rep = inspection.report(FakeSource(kernel(weighted(1)), {}, {}), [prog])
    assert "attached" not in rep["programs"][0] and "attached" not in inspection.format_text(rep)


def test_service_policies_and_source_ranges_are_shown():
    dp = Dataplane.of([Service("10.96.0.1", 80, "tcp", (), drop_when_empty=True, masquerade="all",
                               source_ranges=["203.0.113.0/24"])])
    cur = after(Current(), plan(dp, Current(), MarkConfig()))
    (f,) = inspection.frontends(cur, {})
    assert f["policy"] == ["masquerade every flow", "drop when no backend", "source ranges only"]
    assert f["source_ranges"] == ["203.0.113.0/24"]
    text = inspection.format_text({"programs": [], "frontends": [f], "maps": []})
    assert "    source ranges 203.0.113.0/24" in text
    assert "no backends: new connections are dropped" in text
