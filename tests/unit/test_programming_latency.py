"""blixt.node.programming_latency: which slices a pass programmed, and how
long after their trigger time."""

import pytest

from blixt.node.programming_latency import TRIGGER_TIME, ProgrammingLatency, parse_time

pytestmark = pytest.mark.unit

T0 = parse_time("2026-12-01T00:00:00Z")


def eps(rv: str, trigger: str | None = None) -> dict:
    meta = {"resourceVersion": rv}
    if trigger is not None:
        meta["annotations"] = {TRIGGER_TIME: trigger}
    return {"metadata": meta}


def test_parse_time_takes_whole_and_fractional_seconds():
    assert parse_time("2026-12-01T00:00:01Z") == T0 + 1
    assert parse_time("2026-12-01T00:00:01.250000Z") == T0 + 1.25
    assert parse_time("2026-12-01T00:00:01.123456789Z") == pytest.approx(T0 + 1.123456)  # Go's RFC3339Nano
    assert parse_time("yesterday") is None and parse_time(None) is None


def test_first_pass_is_not_measured_then_only_changed_slices_are():
    lat = ProgrammingLatency()
    assert lat.programmed({("ns", "a"): eps("1", "2026-12-01T00:00:00Z")}, T0 + 100) == []
    slices = {("ns", "a"): eps("1", "2026-12-01T00:00:00Z"), ("ns", "b"): eps("2", "2026-12-01T00:00:01Z")}
    assert lat.programmed(slices, T0 + 2) == [1.0]  # b is new, a unchanged
    slices[("ns", "a")] = eps("3", "2026-12-01T00:00:02.5Z")
    assert lat.programmed(slices, T0 + 3) == [0.5]
    assert lat.programmed(slices, T0 + 4) == []


def test_slices_without_a_usable_trigger_time_are_skipped_and_clock_skew_is_zero():
    lat = ProgrammingLatency()
    lat.programmed({}, T0)
    got = lat.programmed({("ns", "a"): eps("1"), ("ns", "b"): eps("2", "garbage"),
                          ("ns", "c"): {"metadata": {"resourceVersion": "3", "annotations": "x"}},
                          ("ns", "d"): eps("4", "2026-12-01T00:00:09Z")}, T0 + 5)
    assert got == [0.0]
