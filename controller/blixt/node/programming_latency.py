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


class ProgrammingLatency:
    def __init__(self):
        self._seen: dict[Hashable, str] | None = None  # slice key -> resourceVersion

    def programmed(self, slices: Mapping[Hashable, dict], now: float) -> list[float]:
        """The latencies of the slices that changed since the last call, now
        that a pass including them has been applied (now: epoch seconds)."""
        seen = {k: (s.get("metadata") or {}).get("resourceVersion") or "" for k, s in slices.items()}
        first, previous = self._seen is None, self._seen or {}
        self._seen = seen
        if first:
            return []
        out = []
        for key, rv in seen.items():
            if previous.get(key) == rv:
                continue
            annotations = (slices[key].get("metadata") or {}).get("annotations") or {}
            t = parse_time(annotations.get(TRIGGER_TIME)) if isinstance(annotations, dict) else None
            if t is not None:
                out.append(max(0.0, now - t))
        return out
