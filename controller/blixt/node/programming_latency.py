"""Network programming latency, as kube-proxy measures it: from the time an
EndpointSlice says its change was triggered (the endpoint controller's
`endpoints.kubernetes.io/last-change-trigger-time` annotation: when the Pod
or Service change happened) to the end of the agent pass that put the
change in the maps and the nft table. Slices without the annotation are not
measured; nor is the first pass (it programs whatever was there before the
agent started)."""

from __future__ import annotations

import datetime
import re
from typing import Hashable, Mapping

TRIGGER_TIME = "endpoints.kubernetes.io/last-change-trigger-time"


_FRACTION = re.compile(r"(\.\d{6})\d+")


def parse_time(text) -> float | None:
    """RFC 3339 (Go's RFC3339Nano included: digits past microseconds are
    dropped) -> seconds since the epoch; None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(_FRACTION.sub(r"\1", text).replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def _version(obj: dict) -> str:
    return (obj.get("metadata") or {}).get("resourceVersion") or ""


class ProgrammingLatency:
    def __init__(self):
        self._seen: dict[Hashable, dict] | None = None  # slice key -> the slice

    def programmed(self, slices: Mapping[Hashable, dict], now: float) -> list[float]:
        """The latencies of the slices that changed since the last call, now
        that a pass including them has been applied (now: epoch seconds)."""
        # The watch cache replaces an object that changes: the same object is
        # the same version. A new object of the same version (a relist) is not
        # a change either.
        first, previous = self._seen is None, self._seen or {}
        self._seen = dict(slices)
        if first:
            return []
        out = []
        for key, obj in slices.items():
            was = previous.get(key)
            if was is obj or was is not None and _version(was) == _version(obj):
                continue
            annotations = (slices[key].get("metadata") or {}).get("annotations") or {}
            t = parse_time(annotations.get(TRIGGER_TIME)) if isinstance(annotations, dict) else None
            if t is not None:
                out.append(max(0.0, now - t))
        return out
