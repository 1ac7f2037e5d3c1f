"""Per-frontend Prometheus counters, read from the program's stats map at
scrape time: the kernel counts, so Python keeps no counter of its own.

    blixt_frontend_packets_total{frontend, name}
    blixt_frontend_bytes_total{frontend, name}
    blixt_frontend_new_connections_total{frontend, name}   TCP SYNs only

`frontend` is the key ("198.18.200.0:8080/tcp", "*:30080/udp"), `name` the
Service.name of the desired dataplane (gateway/namespace/name/listener).
A counter restarts from zero when its frontend is removed and added again
(the manager sweeps a freed service id), which Prometheus reads as a reset.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Mapping

from prometheus_client.core import CounterMetricFamily

from blixt.dataplane import layout
from blixt.dataplane.plan import Plan, describe

from .bpf import BpfError

log = logging.getLogger(__name__)

LABELS = ("frontend", "name")
SERIES = (  # (metric name, help, Stats field)
    ("blixt_frontend_packets", "Packets to the frontend seen by blixt's program on the interfaces it is attached to.", "packets"),
    ("blixt_frontend_bytes", "Bytes (skb length) of those packets.", "bytes"),
    ("blixt_frontend_new_connections", "New TCP connections (SYNs) to the frontend.", "new_flows"),
)


def frontend_labels(p: Plan) -> dict[int, tuple[str, str]]:
    """Service id -> (frontend, name) for every frontend the plan keeps."""
    return {sid: (describe([key])[0], p.names.get(sid, "")) for key, sid in p.service_ids.items()}


class FrontendCollector:
    """A prometheus_client custom collector. `stats` returns the summed
    per-CPU counters by service id (Manager.stats); `track()` takes each
    applied plan, whose ids name the frontends."""

    def __init__(self, stats: Callable[[], Mapping[int, layout.Stats]]):
        self._stats = stats
        self._labels: dict[int, tuple[str, str]] = {}
        self._source: tuple = (None, None)

    def track(self, p: Plan) -> None:
        # Plans share these dicts while no frontend is added, removed or
        # renamed: then the comparison is by identity, and nothing is redone.
        if (p.service_ids, p.names) != self._source:
            self._labels = frontend_labels(p)  # one assignment: a scrape sees old or new
            self._source = (p.service_ids, p.names)

    def _families(self) -> list[CounterMetricFamily]:
        return [CounterMetricFamily(name, text, labels=LABELS) for name, text, _ in SERIES]

    def describe(self) -> list[CounterMetricFamily]:
        """The names, so a registry refuses a second collector for them."""
        return self._families()

    def collect(self) -> Iterator[CounterMetricFamily]:
        labels = self._labels
        families = self._families()
        try:
            stats = self._stats() if labels else {}
        except BpfError as e:
            # One unreadable map must not fail the whole scrape.
            log.warning("frontend counters unavailable: %s", e)
            stats = None
        if stats is not None:
            for sid, (frontend, name) in sorted(labels.items(), key=lambda kv: kv[1]):
                counters = stats.get(sid)  # no entry yet: no packet seen
                for family, (_, _, field) in zip(families, SERIES):
                    family.add_metric([frontend, name], getattr(counters, field) if counters else 0)
        yield from families
