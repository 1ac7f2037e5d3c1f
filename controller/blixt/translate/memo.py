"""What a translation made of unchanged objects, kept by a caller that
translates again and again (the controller, the agent): a pass after one
change redoes what that change touched, and gives the result a translation
without the memo gives.

"Unchanged" is identity: the watch cache replaces an object when it changes,
so the very same dict is the same object version. Entries hold the objects
they were made from, so those identities cannot be reused while compared."""

from __future__ import annotations

from typing import Callable, Hashable

from blixt.dataplane import fit


def same(a: tuple, b: tuple) -> bool:
    """The same objects, in the same order."""
    return len(a) == len(b) and all(x is y for x, y in zip(a, b))


class Entries:
    """Results by key, each valid while its inputs are the same objects;
    keys not used since the last `sweep` are dropped by it."""

    def __init__(self):
        self.entries: dict[Hashable, tuple[tuple, object]] = {}
        self._used: set = set()

    def get(self, key: Hashable, inputs: tuple, make: Callable[[], object]):
        self._used.add(key)
        hit = self.entries.get(key)
        if hit is not None and same(hit[0], inputs):
            return hit[1]
        made = make()
        self.entries[key] = (inputs, made)
        return made

    def sweep(self) -> None:
        for key in self.entries.keys() - self._used:
            del self.entries[key]
        self._used = set()


class Memo:
    """One per caller, passed to every translate() it makes."""

    def __init__(self):
        self.services = Entries()     # Kubernetes Services: what proxy.build made of each
        self.service_fit = fit.Memo()  # what the fit measured of each Service's frontends
        self.gateway_backends = Entries()  # a Gateway listener's route: its backends
