"""Which frontends fit the maps: a pure rule the controller and the agents
share, so a Gateway the controller reports as not fitting is the one every
agent leaves out.

An apply writes a changed frontend's new slot generation before removing
the old one, and puts new entries before deleting gone ones, so for a moment
the kernel holds both. The maps are therefore filled to half at most: any
desired state within `Budget.of_maps` can replace any other within it
without a map (or the backend-id space of the mark) overflowing in between,
and nothing is ever half-written. plan.check_capacity still guards every
apply.

Units are all-or-nothing (a Gateway's frontends, a Service's): a Gateway
with half its listeners would be worse than none. Units are taken in the
order given (oldest object first) and one that does not fit is left out
while later, smaller ones may still fit; so a new object never pushes out an
older one that works.

Gateways may use half of the budget (`Budget.half`), so Kubernetes Services
(the cluster's DNS and API among them) always keep the rest; Services get
whatever the Gateways leave. The Gateway share depends on nothing but
Gateways, which is what lets the controller judge it without knowing a
node's Services.
"""

from __future__ import annotations

import dataclasses
from typing import Hashable, Iterable, Sequence

from . import layout
from .marks import MarkConfig
from .model import Service
from .slots import slot_counts

_FIELDS = ("services", "slots", "members", "backends", "source_ranges")
# How each Budget field is named in a message: the map, or the mark's id field.
_WHERE = {"services": "blixt_services", "slots": "blixt_slots", "members": "blixt_members",
          "backends": "backend ids (the mark's id field)", "source_ranges": "blixt_source_ranges"}


@dataclasses.dataclass(frozen=True)
class Budget:
    """Entries per map (and distinct backends) a desired state may use."""

    services: int
    slots: int
    members: int
    backends: int
    source_ranges: int

    @classmethod
    def of_maps(cls, marks: MarkConfig = MarkConfig(), capacity: layout.Capacity = layout.Capacity()) -> "Budget":
        """Half of each map (of a build with these capacities) and of the
        backend ids the mark layout can name."""
        return cls(capacity.services // 2, capacity.slots // 2, capacity.members // 2,
                   marks.max_backend_id // 2, layout.MAX_SOURCE_RANGES // 2)

    def half(self) -> "Budget":
        return Budget(*(getattr(self, f) // 2 for f in _FIELDS))

    def minus(self, used: "Budget") -> "Budget":
        return Budget(*(max(0, getattr(self, f) - getattr(used, f)) for f in _FIELDS))


NOTHING = Budget(0, 0, 0, 0, 0)


@dataclasses.dataclass(frozen=True)
class Fitted:
    kept: tuple[Service, ...]
    unfit: dict[Hashable, str]  # unit id -> why (names the map and its budget)
    used: Budget


def _slots(svc: Service) -> int:
    return sum(slot_counts([b.weight for b in svc.backends if b.weight > 0]))


class Memo:
    """What fit() measured of each unit, kept between calls: a unit made of
    the very same Service objects as last time (the proxy translation's memo
    keeps them) is not measured again."""

    def __init__(self):
        self.entries: dict[Hashable, tuple] = {}


def _measure(services: Sequence[Service]) -> tuple[dict[str, int], frozenset] | str:
    """A unit's needs but backends, and its endpoints; or why it can never fit."""
    live = [b for s in services for b in s.backends if b.weight > 0]
    try:
        slots = sum(_slots(s) for s in services)
    except ValueError as e:  # more weighted backends than one slot table holds
        return str(e)
    return ({"services": len(services), "slots": slots, "members": len(live),
             "source_ranges": sum(len(s.source_ranges) for s in services)},
            frozenset((b.address._ip, b.port) for b in live))  # ints: hashed in C


def fit(units: Iterable[tuple[Hashable, Sequence[Service]]], budget: Budget, memo: Memo | None = None) -> Fitted:
    """Keep each unit, in order, whose frontends still fit beside those kept.
    memo: reuse what an earlier call measured of unchanged units (same result)."""
    kept: list[Service] = []
    unfit: dict[Hashable, str] = {}
    used = dict.fromkeys(_FIELDS, 0)
    endpoints: set = set()
    seen: dict[Hashable, tuple] = {}
    for uid, services in units:
        hit = memo.entries.get(uid) if memo is not None else None
        if hit is not None and len(hit[0]) == len(services) and all(a is b for a, b in zip(hit[0], services)):
            measured = hit[1]
        else:
            measured = _measure(services)
        seen[uid] = (tuple(services), measured)
        if isinstance(measured, str):
            unfit[uid] = measured
            continue
        need, eps = measured
        new_endpoints = eps - endpoints
        need = {**need, "backends": len(new_endpoints)}
        over = [f for f in _FIELDS if used[f] + need[f] > getattr(budget, f)]
        if over:
            f = over[0]
            unfit[uid] = (f"needs {need[f]} of {_WHERE[f]}, {getattr(budget, f) - used[f]} left "
                          f"of the {getattr(budget, f)} it may use")
            continue
        for f in _FIELDS:
            used[f] += need[f]
        endpoints |= new_endpoints
        kept.extend(services)
    if memo is not None:
        memo.entries = seen
    return Fitted(tuple(kept), unfit, Budget(**used))
