"""Weighted backend selection tables.

A service's slot table is a list of backend indices; the BPF program picks
slot hash(5-tuple) % len(table), so each backend's share of flows equals its
share of slots. Weights are divided by their gcd, which keeps the table exact
(70/30 -> 10 slots); beyond MAX_SLOTS_PER_SERVICE the shares are rounded by
largest remainder, an error below 1/MAX_SLOTS_PER_SERVICE per backend.
"""

from __future__ import annotations

import math
from typing import Sequence

from .layout import MAX_SLOTS_PER_SERVICE  # the program refuses larger tables


def slot_counts(weights: Sequence[int], limit: int = MAX_SLOTS_PER_SERVICE) -> list[int]:
    """How many slots each weight gets. Weight 0 gets none; all zero gives none."""
    if any(w < 0 for w in weights):
        raise ValueError(f"weights must be >= 0, got {list(weights)}")
    positive = [w for w in weights if w > 0]
    if not positive:
        return [0] * len(weights)
    g = math.gcd(*positive)
    reduced = [w // g for w in weights]
    total = sum(reduced)
    if total <= limit:
        return reduced
    if len(positive) > limit:
        raise ValueError(f"{len(positive)} weighted backends exceed {limit} slots per service")
    # Largest remainder, but every positive weight keeps at least one slot.
    quotas = [w * limit / total for w in reduced]
    counts = [max(1, math.floor(q)) if w else 0 for q, w in zip(quotas, reduced)]
    order = sorted(range(len(weights)), key=lambda i: (quotas[i] - math.floor(quotas[i]), -i), reverse=True)
    spare = limit - sum(counts)
    for i in order:
        if spare <= 0:
            break
        if reduced[i]:
            counts[i] += 1
            spare -= 1
    while spare < 0:  # the max(1, ...) floor overshot: take from the largest
        i = max(range(len(counts)), key=lambda j: counts[j])
        counts[i] -= 1
        spare += 1
    return counts


def slot_table(weights: Sequence[int], limit: int = MAX_SLOTS_PER_SERVICE) -> list[int]:
    """Backend indices, interleaved so that neighbouring slots differ (it makes
    a table easy to read in bpftool and spreads any hash bias)."""
    counts = slot_counts(weights, limit)
    total = sum(counts)
    # Place the k-th slot of backend i at fractional position (k + 0.5) / count_i.
    placed = sorted(
        ((k + 0.5) / c, i) for i, c in enumerate(counts) for k in range(c)
    )
    table = [i for _, i in placed]
    assert len(table) == total
    return table
