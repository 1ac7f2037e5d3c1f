"""The Prometheus metrics blixt's processes update, in a registry of their own.

A dedicated registry (with the process and platform collectors added back)
keeps /metrics to blixt's series plus the usual process_* ones, whatever else
a library registers in prometheus_client's global registry."""

from __future__ import annotations

from prometheus_client import (CollectorRegistry, Counter, Gauge, Histogram, PlatformCollector,
                               ProcessCollector)

REGISTRY = CollectorRegistry()
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)

RECONCILES = Counter(
    "blixt_reconcile_total", "Reconcile passes, by result (ok, error).",
    ["result"], registry=REGISTRY)
RECONCILE_DURATION = Histogram(
    "blixt_reconcile_duration_seconds", "How long one reconcile pass took.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=REGISTRY)
STATUS_WRITES = Counter(
    "blixt_status_writes_total",
    "Status writes, by kind and result (written, unchanged, conflict, not_found, error).",
    ["kind", "result"], registry=REGISTRY)
WATCH_EVENTS = Counter(
    "blixt_watch_events_total",
    "Watch events applied to the cache, by resource and type (ADDED, MODIFIED, DELETED, BOOKMARK).",
    ["resource", "type"], registry=REGISTRY)
WATCH_RESTARTS = Counter(
    "blixt_watch_restarts_total",
    "Watches restarted, by resource and reason (expired, resync, closed, error).",
    ["resource", "reason"], registry=REGISTRY)
LEADER = Gauge(
    "blixt_leader", "1 while this process holds the leader Lease, else 0.",
    ["lease"], registry=REGISTRY)
DATAPLANE_APPLIES = Counter(
    "blixt_dataplane_applies_total", "Dataplane applies, by result (ok, error).",
    ["result"], registry=REGISTRY)
DATAPLANE_SERVICES = Gauge(
    "blixt_dataplane_services", "Services (frontends) programmed in this node's dataplane.",
    registry=REGISTRY)
DATAPLANE_BACKENDS = Gauge(
    "blixt_dataplane_backends", "Backends programmed in this node's dataplane.",
    registry=REGISTRY)
DATAPLANE_UNFIT = Gauge(
    "blixt_dataplane_unfit_objects",
    "Gateways and Services, by kind, left out of this node's dataplane because the maps have no room.",
    ["kind"], registry=REGISTRY)
DATAPLANE_SYNC = Histogram(
    "blixt_dataplane_sync_duration_seconds",
    "How long one agent pass took, from reading the cache to maps and nft written "
    "(kube-proxy's sync_proxy_rules_duration_seconds); passes that programmed nothing "
    "(cache not synced, program not usable) are not counted.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60), registry=REGISTRY)
NETWORK_PROGRAMMING = Histogram(
    "blixt_network_programming_duration_seconds",
    "From an EndpointSlice's last-change-trigger-time to the end of the pass that programmed it "
    "(kube-proxy's network_programming_duration_seconds).",
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 3, 4, 5, 7.5, 10, 15, 30, 60, 120), registry=REGISTRY)
