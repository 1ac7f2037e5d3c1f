"""metav1.Condition lists: build ours, keep lastTransitionTime while a
condition's status holds, and leave other writers' condition types alone."""

from __future__ import annotations

from typing import Iterable, NamedTuple


class Cond(NamedTuple):
    type: str
    status: bool
    reason: str
    message: str = ""


def render(conds: Iterable[Cond], previous: list | None, gen: int, now: str,
           keep_foreign: bool = False) -> list[dict]:
    """Our conditions as dicts. lastTransitionTime moves only when the status
    changes (a new reason or message alone is no transition). With
    keep_foreign, conditions of types we do not set stay, in their place."""
    before = {c.get("type"): c for c in previous or () if isinstance(c, dict)}
    ours = {}
    for c in conds:
        status = "True" if c.status else "False"
        old = before.get(c.type)
        since = old.get("lastTransitionTime") if old and old.get("status") == status else None
        ours[c.type] = {
            "type": c.type,
            "status": status,
            "reason": c.reason,
            "message": c.message,
            "observedGeneration": gen,
            "lastTransitionTime": since or now,
        }
    if not keep_foreign:
        return list(ours.values())
    out, mine = [], set(ours)
    for c in previous or ():
        t = c.get("type") if isinstance(c, dict) else None
        if t in ours:
            out.append(ours.pop(t))
        elif t not in mine:  # a second one of our types: conditions are a map by type
            out.append(c)
    out.extend(ours.values())
    return out
