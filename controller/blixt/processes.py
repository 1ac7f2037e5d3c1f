"""The two long-running processes. Both watch the same objects and run the
same pure translation; the controller (leader only) writes status, the agent
programs its node's dataplane. There is no RPC between them: each converges
on its own from the API server's state.

Each pass is triggered by a cache change or by the resync period, and is
idempotent: a pass over unchanged objects writes nothing and applies nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import threading
import time
from typing import Callable

from blixt import gc_pause, translate
from blixt.dataplane.fit import Budget
from blixt.dataplane.model import Dataplane
from blixt.dataplane.plan import describe
from blixt.node.frontend_metrics import FrontendCollector
from blixt.node.health_servers import ProxyHealth, ServiceHealth
from blixt.node.manager import Manager
from blixt.node.operator_program import OperatorProgram
from blixt.node.pinned_maps import PinnedMapsError
from blixt.node.programming_latency import ProgrammingLatency
from blixt.timestamps import utc_now
from blixt.translate.proxy import ProxyOptions
from blixt.kube import metrics
from blixt.kube.events import EventRecorder
from blixt.kube.leader import LeaderElector
from blixt.kube.status import StatusWriter
from blixt.kube.watch import Cache

log = logging.getLogger(__name__)
REFRESH_EVERY = 300.0  # seconds between full reads of the maps (Manager.refresh)
# Changed frontends a pass logs one by one (more: a summary, each at debug).
LOG_EACH = 100


def snapshot_of(cache: Cache) -> translate.Snapshot:
    return translate.Snapshot(**cache.snapshot())


class Loop:
    """Runs `step` whenever the cache changes (coalescing bursts) or every
    `resync` seconds, until stopped. A failing step is logged and retried
    with a growing delay; the process stays up."""

    # settle: how long a pass waits for more events after the first. Short:
    # it is added to every change's way to the dataplane, and a pass that
    # changes little costs little (plan.Tracker).
    def __init__(self, cache: Cache, step: Callable[[], None], resync: float, settle: float = 0.02):
        self.cache = cache
        self.step = step
        self.resync = resync
        self.settle = settle
        self.stopped = threading.Event()

    def run(self) -> None:
        failures = 0
        while not self.stopped.is_set():
            self.cache.changed.wait(self.resync if not failures else min(30.0, 0.5 * 2 ** failures))
            if self.stopped.is_set():
                break
            time.sleep(self.settle)  # let a burst of events land in one pass
            self.cache.changed.clear()
            start = time.monotonic()
            try:
                self.step()
                failures = 0
                metrics.RECONCILES.labels("ok").inc()
            except Exception:
                failures += 1
                metrics.RECONCILES.labels("error").inc()
                log.exception("reconcile failed (attempt %d); retrying", failures)
            finally:
                metrics.RECONCILE_DURATION.observe(time.monotonic() - start)

    def stop(self) -> None:
        self.stopped.set()
        self.cache.changed.set()


class Controller:
    """Writes Gateway API status; only while it holds the leader Lease."""

    def __init__(self, api, cache: Cache, elector: LeaderElector,
                 controller_name: str = translate.CONTROLLER_NAME, resync: float = 300.0):
        self.cache = cache
        self.elector = elector
        self.controller_name = controller_name
        self.writer = StatusWriter(api, field_manager="blixt-controller", controller_name=controller_name)
        self.loop = Loop(cache, self.reconcile, resync)
        self._memo = translate.Memo()  # unchanged objects are not translated again

    def ready(self) -> bool:
        return self.cache.synced()

    def reconcile(self) -> None:
        if not self.elector.is_leader():
            return
        result = translate.translate(snapshot_of(self.cache), now=utc_now(), controller_name=self.controller_name,
                                     memo=self._memo)
        written = 0
        for ref, status in sorted(result.statuses.items(), key=lambda kv: (kv[0].kind, kv[0].namespace or "", kv[0].name)):
            if self.writer.write(ref.kind, ref.namespace, ref.name, status):
                written += 1
                log.info("status of %s %s updated", ref.kind, f"{ref.namespace}/{ref.name}" if ref.namespace else ref.name)
        if written:
            log.info("reconciled: %d of %d statuses written", written, len(result.statuses))

    def run(self) -> None:
        # A new leader reconciles at once rather than at the next change.
        self.elector.run(on_started=lambda: self.cache.changed.set(),
                         on_stopped=lambda: log.warning("lost the leader lease; status writes paused"))
        self.loop.run()

    def stop(self) -> None:
        self.loop.stop()
        self.elector.stop()


class Agent:
    """Programs this node's dataplane from the translation."""

    def __init__(self, cache: Cache, manager: Manager, node: str,
                 local_addresses: Callable[[], frozenset[ipaddress.IPv4Address]] = frozenset,
                 controller_name: str = translate.CONTROLLER_NAME, resync: float = 300.0,
                 registry=metrics.REGISTRY, proxy: ProxyOptions | None = None,
                 proxy_health: ProxyHealth | None = None, service_health: ServiceHealth | None = None,
                 events: EventRecorder | None = None, operator: OperatorProgram | None = None):
        self.cache = cache
        self.operator = operator  # agent --maps-dir: bpfman-operator's program
        self.fatal = ""  # why the agent stopped itself
        self.events = events
        self.proxy = proxy  # None: Gateways only
        self.proxy_health = proxy_health
        self.service_health = service_health
        if proxy_health is not None:
            cache.add_listener(lambda *_: proxy_health.queued())
        self.manager = manager
        self.frontend_metrics = FrontendCollector(manager.stats)  # per-frontend counters, read at scrape
        registry.register(self.frontend_metrics)
        self.node = node
        self.local_addresses = local_addresses
        self.controller_name = controller_name
        self.synced_once = threading.Event()
        self.loop = Loop(cache, self.reconcile, resync)
        self._refreshed = time.monotonic()  # the first pass reads the maps anyway
        self._skipped: tuple[str, ...] = ()
        self._unfit: dict[translate.ObjectRef, str] = {}
        self.latency = ProgrammingLatency()
        self._memo = translate.Memo()  # unchanged objects are not translated again

    @property
    def budget(self) -> Budget:
        """Half of the loaded program's maps (a build may size them)."""
        return Budget.of_maps(self.manager.settings.marks, self.manager.capacity)

    def ready(self) -> bool:
        """Ready only once a full sync has been applied to the dataplane (and,
        with --maps-dir, while the maps are the loaded program's)."""
        return self.synced_once.is_set() and (self.operator is None or self.operator.program_id is not None)

    def reconcile(self) -> None:
        if not self.cache.synced():
            return
        if self.operator is not None:
            try:
                if not self.operator.usable():
                    return  # logged; a state change wakes the loop
            except PinnedMapsError as e:
                self.fatal = str(e)
                log.error("%s", e)
                self.loop.stop()
                return
        with gc_pause.paused():
            self._pass()

    def _pass(self) -> None:
        started = time.monotonic()
        if started - self._refreshed >= REFRESH_EVERY:
            # Now and then, trust the kernel over our copy (and rewrite the nft
            # table whole). By time, not by pass: under churn, a full read and
            # rewrite every few passes would be most of the work.
            self.manager.refresh()
            self._refreshed = started
            gc_pause.freeze_heap()
        snapshot = snapshot_of(self.cache)
        result = translate.translate(snapshot, now=utc_now(),
                                     controller_name=self.controller_name, node_name=self.node,
                                     services=self.proxy, budget=self.budget, memo=self._memo)
        if result.skipped != self._skipped:
            for note in sorted(set(result.skipped) - set(self._skipped)):
                log.warning("not programmed: %s", note)
            self._skipped = result.skipped
        desired = Dataplane(result.dataplane.services, self.local_addresses(),
                            self.proxy.pod_cidrs if self.proxy else ())
        try:
            plan = self.manager.apply(desired)
        except Exception:
            metrics.DATAPLANE_APPLIES.labels("error").inc()
            raise
        metrics.DATAPLANE_APPLIES.labels("ok").inc()
        metrics.DATAPLANE_SYNC.observe(time.monotonic() - started)
        for seconds in self.latency.programmed(snapshot.endpoint_slices, time.time()):
            metrics.NETWORK_PROGRAMMING.observe(seconds)
        self._report_unfit(snapshot, result.unfit)
        if self.proxy_health is not None:
            self.proxy_health.updated(started)
        if self.service_health is not None:
            self.service_health.sync(result.health_checks)
        self.frontend_metrics.track(plan)
        metrics.DATAPLANE_SERVICES.set(len(desired.services))
        metrics.DATAPLANE_BACKENDS.set(self.manager.backend_count)
        if not plan.empty:
            # Each frontend's line when a few changed; at a full sync of
            # thousands, the summary (the lines at debug level).
            level = logging.INFO if len(plan.services_put) + len(plan.services_delete) <= LOG_EACH else logging.DEBUG
            if log.isEnabledFor(level):
                # A Service's ports share one backends tuple: rendered once
                # (formatting addresses for each of 100 ports was a tenth of
                # such a pass at 10,000 frontends).
                rendered: dict[int, str] = {}
                for key in plan.services_put:
                    svc = plan.changed[key]
                    text = rendered.get(id(svc.backends))
                    if text is None:
                        text = rendered[id(svc.backends)] = ", ".join(
                            f"{b.address}:{b.port}*{b.weight}" for b in svc.backends if b.weight) or "no backends: reject"
                    log.log(level, "service %s (%s) -> %s", svc.name, svc.key_text, text)
                for key in plan.services_delete:
                    log.log(level, "service %s removed", describe([key])[0])
            log.info("dataplane: %s", plan.summary())
        if not self.synced_once.is_set():
            gc_pause.freeze_heap()
            self.synced_once.set()
            log.info("first full sync applied: %d services; ready", len(desired.services))

    def _report_unfit(self, snapshot: translate.Snapshot, unfit) -> None:
        """Count what the maps had no room for, and say so on the objects
        (an Event when one is left out, and when it fits again)."""
        for kind in ("Gateway", "Service"):
            metrics.DATAPLANE_UNFIT.labels(kind).set(sum(1 for ref in unfit if ref.kind == kind))
        if self.events is not None:
            objects = {"Gateway": snapshot.gateways, "Service": snapshot.services}
            for ref in sorted(set(unfit) | set(self._unfit)):
                obj = objects[ref.kind].get((ref.namespace, ref.name))
                if obj is None or unfit.get(ref) == self._unfit.get(ref):
                    continue
                if ref in unfit:
                    self.events.record(obj, ref.kind, "Warning", "NoResources",
                                       f"not programmed on node {self.node}: no room in the maps: {unfit[ref]}")
                else:
                    self.events.record(obj, ref.kind, "Normal", "Programmed",
                                       f"programmed on node {self.node}: the maps have room again")
        self._unfit = dict(unfit)

    def run(self) -> None:
        self.cache.changed.set()  # first pass as soon as the cache has synced
        self.loop.run()

    def stop(self) -> None:
        self.loop.stop()
        if self.service_health is not None:
            self.service_health.stop()
