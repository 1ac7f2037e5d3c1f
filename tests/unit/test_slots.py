import collections

import pytest

from blixt.dataplane.slots import MAX_SLOTS_PER_SERVICE, slot_counts, slot_table


def test_exact_weights_reduce_by_gcd():
    assert slot_counts([70, 30, 0]) == [7, 3, 0]
    assert slot_counts([1, 1, 1]) == [1, 1, 1]


def test_all_zero_has_no_slots():
    assert slot_counts([0, 0]) == [0, 0]
    assert slot_table([0, 0]) == []


def test_weight_zero_never_gets_a_slot():
    table = slot_table([5, 0, 5])
    assert 1 not in table and set(table) == {0, 2}


def test_large_coprime_weights_are_apportioned_within_limit():
    weights = [1_000_000, 999_999, 1]
    counts = slot_counts(weights)
    assert sum(counts) == MAX_SLOTS_PER_SERVICE
    assert counts[2] == 1  # a positive weight always keeps a slot
    total = sum(weights)
    for w, c in zip(weights[:2], counts[:2]):
        assert abs(c / MAX_SLOTS_PER_SERVICE - w / total) < 2 / MAX_SLOTS_PER_SERVICE


def test_many_backends_each_keep_a_slot():
    counts = slot_counts([1_000_000] + [1] * 999, limit=1024)
    assert sum(counts) == 1024 and min(counts) == 1


def test_too_many_backends_for_the_table():
    with pytest.raises(ValueError):
        slot_counts([1] * 5, limit=4)


def test_table_counts_and_interleaving():
    table = slot_table([70, 30])
    assert collections.Counter(table) == {0: 7, 1: 3}
    # No run of the minority backend and no long run of the majority one.
    assert max(len(run) for run in "".join(map(str, table)).split("1")) <= 3


def test_negative_weight_rejected():
    with pytest.raises(ValueError):
        slot_counts([1, -1])
