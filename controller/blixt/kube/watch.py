"""A watch cache of several resource types: list, then watch from the list's
resourceVersion, one thread per type, objects kept as plain JSON dicts.

How it watches, and why:
- Raw HTTP through the ApiClient (rest.open_stream), not the generated
  models or `kubernetes.watch.Watch`: models drop every field they do not
  know, and Watch hides 410 handling and reconnects behind one generator. A
  watch here is a GET with watch=true&allowWatchBookmarks=true&
  resourceVersion=RV&timeoutSeconds=T whose body is read line by line, one
  JSON event per line, as the apiserver flushes them.
- Every watch carries a server-side timeoutSeconds, so the apiserver ends it
  cleanly; it is at most the time left until the next resync, so the
  periodic relist needs no cross-thread interruption. The client read
  timeout is that plus a margin, so a connection that died silently (no FIN,
  no bookmark) is noticed too.
- A watch that ends or fails resumes from the last resourceVersion seen (an
  event's or a BOOKMARK's). When the apiserver no longer has that history it
  answers 410 Gone (as the HTTP status or as an ERROR event with code 410);
  then the type is relisted and the cache replaced, emitting the differences
  (ADDED/MODIFIED/DELETED) as if they had been watched. Any other ERROR event
  relists too.
- Failures (connection refused or reset, timeouts, 5xx, 403 from missing
  RBAC) are logged and retried with exponential backoff and jitter
  (tenacity); the backoff resets once a list or watch succeeds.
- Lists are paged (limit=500) and read at the latest resourceVersion (a
  quorum read), so they never answer 410 themselves, except for an expired
  continue token, which restarts the list.

Objects in snapshots are shared with the cache, not copied: treat them as
read-only. The cache replaces an object on every event, never mutates one,
so a snapshot stays consistent while the watches go on.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any, Callable, Hashable, Iterable

import tenacity
from kubernetes.client import ApiClient

from . import metrics, rest
from .resources import DEFAULT_RESOURCES, Resource

log = logging.getLogger(__name__)

ADDED, MODIFIED, DELETED, BOOKMARK, ERROR = "ADDED", "MODIFIED", "DELETED", "BOOKMARK", "ERROR"
LIST_PAGE = 500
READ_MARGIN = 30.0  # seconds past the server-side timeout before a silent watch is presumed dead
CONNECT_TIMEOUT = 10.0

Listener = Callable[[str, str, dict], None]


class ResourceExpired(Exception):
    """The apiserver no longer holds history from our resourceVersion (410)."""


class WatchError(Exception):
    """The watch sent an ERROR event other than 410."""


class Cache:
    """Lists and watches `resources`, each in a thread; see the module docstring.

    `changed` is set after every change to any type (and when a type first
    syncs); a reconcile loop clears it *before* taking a snapshot, so a
    change that lands in between is not lost. A relist that finds nothing
    new does not set it: reconcile on a timer too if periodic passes matter.
    Listeners added with add_listener() are called, from the watch threads,
    with (resource name, event type, object) for every change.
    """

    def __init__(self, api_client: ApiClient, resources: Iterable[Resource] = DEFAULT_RESOURCES,
                 resync: float | None = 300.0, watch_timeout: float = 300.0, backoff_max: float = 30.0):
        self.api = api_client
        self.resources = tuple(resources)
        names = [r.name for r in self.resources]
        if len(set(names)) != len(names):
            raise ValueError(f"resource names must be unique: {names}")
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._stores: dict[str, dict[Hashable, dict]] = {r.name: {} for r in self.resources}
        self._listeners: list[Listener] = []
        self._stop = threading.Event()
        self._reflectors = {
            r.name: _Reflector(self, r, resync, watch_timeout, backoff_max) for r in self.resources}

    def add_listener(self, fn: Listener) -> None:
        self._listeners.append(fn)

    def start(self) -> "Cache":
        for r in self._reflectors.values():
            r.thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        for r in self._reflectors.values():
            r.interrupt()
        deadline = time.monotonic() + timeout
        for r in self._reflectors.values():
            if r.thread.is_alive():
                r.thread.join(max(0.0, deadline - time.monotonic()))

    def wait_synced(self, timeout: float) -> bool:
        """True once every type has been listed once; False on timeout."""
        deadline = time.monotonic() + timeout
        for r in self._reflectors.values():
            if not r.synced.wait(max(0.0, deadline - time.monotonic())):
                return False
        return True

    def synced(self) -> bool:
        return all(r.synced.is_set() for r in self._reflectors.values())

    def unsynced(self) -> list[str]:
        """The types not listed yet: what to name when wait_synced times out."""
        return [name for name, r in self._reflectors.items() if not r.synced.is_set()]

    def snapshot(self) -> dict[str, dict[Hashable, dict]]:
        """A consistent copy of every store: {resource name: {key: object}},
        the key being the name (cluster-scoped) or (namespace, name)."""
        with self._lock:
            return {name: dict(store) for name, store in self._stores.items()}

    def get(self, resource: str, key: Hashable) -> dict | None:
        with self._lock:
            return self._stores[resource].get(key)

    # Called by the reflectors.

    def _apply(self, resource: Resource, kind: str, obj: dict) -> None:
        key = resource.key(obj)
        with self._lock:
            store = self._stores[resource.name]
            old = store.get(key)
            if kind == DELETED:
                if old is None:
                    return
                del store[key]
            else:
                if old is not None and _rv(old) == _rv(obj):
                    return  # already have this version (a resumed watch may repeat it)
                store[key] = obj
                kind = MODIFIED if old is not None else ADDED
        self._notify(resource, [(kind, obj)])

    def _replace(self, resource: Resource, objs: dict[Hashable, dict]) -> int:
        """Make the store equal `objs`; emit the differences. Returns their number."""
        with self._lock:
            store = self._stores[resource.name]
            diff = [(DELETED, o) for k, o in store.items() if k not in objs]
            for k, o in objs.items():
                old = store.get(k)
                if old is None:
                    diff.append((ADDED, o))
                elif _rv(old) != _rv(o):
                    diff.append((MODIFIED, o))
            self._stores[resource.name] = dict(objs)
        self._notify(resource, diff)
        return len(diff)

    def _notify(self, resource: Resource, events: list[tuple[str, dict]]) -> None:
        if not events:
            return
        self.changed.set()
        for kind, obj in events:
            for fn in list(self._listeners):
                try:
                    fn(resource.name, kind, obj)
                except Exception:  # a listener's bug must not stop the watch
                    log.exception("cache listener failed on %s %s", resource.name, kind)


def _rv(obj: dict) -> str | None:
    return obj.get("metadata", {}).get("resourceVersion")


class _Reflector:
    """Keeps one type's store in step: list, watch, resume, relist."""

    def __init__(self, cache: Cache, resource: Resource, resync: float | None,
                 watch_timeout: float, backoff_max: float):
        self.cache = cache
        self.resource = resource
        self.resync = resync if resync and resync > 0 else None
        self.watch_timeout = watch_timeout
        self.resource_version: str | None = None
        self.need_list = True
        self.last_list = 0.0
        self.synced = threading.Event()
        self._response = None
        self._response_lock = threading.Lock()
        self._stop = cache._stop
        self._retrying = tenacity.Retrying(
            wait=tenacity.wait_exponential(multiplier=0.5, max=backoff_max) + tenacity.wait_random(0, 0.5),
            retry=tenacity.retry_if_exception_type(Exception),
            stop=lambda _state: self._stop.is_set(),
            sleep=self._stop.wait,  # a stop interrupts the backoff
            before_sleep=self._log_retry,
            reraise=True,
        )
        self.thread = threading.Thread(target=self._run, name=f"watch-{resource.name}", daemon=True)

    def interrupt(self) -> None:
        """Wake a thread blocked reading the watch (from stop())."""
        with self._response_lock:
            resp = self._response
        if resp is None:
            return
        try:
            resp.shutdown()  # SHUT_RD wakes a blocked recv; close() alone would not
        except Exception:
            pass

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                # Each successful pass returns, which resets the backoff.
                self._retrying(self._list_and_watch_once)
            except Exception as e:
                if not self._stop.is_set():  # cannot happen: the retry only stops on stop()
                    log.exception("%s: watch loop gave up: %s", self.resource.name, e)

    def _log_retry(self, state: tenacity.RetryCallState) -> None:
        e = state.outcome.exception() if state.outcome else None
        what = "list" if self.need_list else f"watch from resourceVersion {self.resource_version}"
        log.warning("%s: %s failed (%s); retrying in %.1fs (attempt %d)",
                    self.resource.name, what, rest.describe_error(e),
                    state.next_action.sleep if state.next_action else 0.0, state.attempt_number)
        metrics.WATCH_RESTARTS.labels(self.resource.name, "error").inc()

    def _list_and_watch_once(self) -> None:
        if self._stop.is_set():
            return
        if not self.need_list and self.resync and time.monotonic() - self.last_list >= self.resync:
            log.debug("%s: periodic resync", self.resource.name)
            metrics.WATCH_RESTARTS.labels(self.resource.name, "resync").inc()
            self.need_list = True
        if self.need_list:
            self.relist()
        try:
            self._watch()
        except ResourceExpired as e:
            log.info("%s: %s; relisting", self.resource.name, e)
            metrics.WATCH_RESTARTS.labels(self.resource.name, "expired").inc()
            self.need_list = True

    def relist(self) -> int:
        """List everything, replace the store, remember the list's
        resourceVersion. Returns how many differences it emitted."""
        items, rv = self._list()
        changes = self.cache._replace(self.resource, items)
        self.resource_version = rv
        self.need_list = False
        self.last_list = time.monotonic()
        if not self.synced.is_set():
            log.info("%s: synced, %d objects at resourceVersion %s", self.resource.name, len(items), rv)
            self.synced.set()
            self.cache.changed.set()  # wake a reconcile loop even when the type is empty
        elif changes:
            log.info("%s: relist at resourceVersion %s found %d changes the watch had not delivered",
                     self.resource.name, rv, changes)
        return changes

    def _list(self) -> tuple[dict[Hashable, dict], str]:
        r = self.resource
        for _ in range(3):
            items: dict[Hashable, dict] = {}
            query: dict[str, Any] = {"limit": LIST_PAGE}
            try:
                while True:
                    page = rest.request(self.cache.api, "GET", r.path(), query=query)
                    for obj in page.get("items") or []:
                        # List items omit kind and apiVersion; watch events carry them.
                        obj.setdefault("kind", r.kind)
                        obj.setdefault("apiVersion", r.api_version)
                        items[r.key(obj)] = obj
                    meta = page.get("metadata") or {}
                    if not meta.get("continue"):
                        return items, meta.get("resourceVersion")
                    query = {"limit": LIST_PAGE, "continue": meta["continue"]}
            except rest.ApiError as e:
                if e.status != 410 or "continue" not in query:
                    raise
                log.info("%s: list continue token expired; listing again", r.name)
        raise RuntimeError(f"{r.name}: list kept expiring between pages")

    def _watch(self) -> None:
        timeout = self.watch_timeout * random.uniform(0.9, 1.0)  # spread reconnects of the types
        if self.resync:
            timeout = min(timeout, self.resync - (time.monotonic() - self.last_list))
        timeout_s = max(1, int(timeout))
        query = {"watch": "true", "allowWatchBookmarks": "true",
                 "resourceVersion": self.resource_version, "timeoutSeconds": timeout_s}
        try:
            resp = rest.open_stream(self.cache.api, self.resource.path(), query,
                                    timeout=(CONNECT_TIMEOUT, timeout_s + READ_MARGIN))
        except rest.ApiError as e:
            if e.status == 410:
                raise ResourceExpired(e.message) from e
            raise
        with self._response_lock:
            self._response = resp
        finished = False
        try:
            if self._stop.is_set():
                return
            for event in rest.iter_json_lines(resp):
                self._handle(event)
                if self._stop.is_set():
                    return
            finished = not self._stop.is_set()  # a shutdown() also ends the body early
        finally:
            with self._response_lock:
                self._response = None
            if not finished:
                resp.close()  # unread data must not go back to the pool
            resp.release_conn()
        log.debug("%s: watch ended by the server; resuming from %s", self.resource.name, self.resource_version)
        metrics.WATCH_RESTARTS.labels(self.resource.name, "closed").inc()

    def _handle(self, event: dict) -> None:
        kind, obj = event.get("type"), event.get("object") or {}
        metrics.WATCH_EVENTS.labels(self.resource.name, kind).inc()
        if kind == ERROR:
            code, message = obj.get("code"), obj.get("message", "")
            if code == 410:
                raise ResourceExpired(message or "410 Gone")
            self.need_list = True
            raise WatchError(f"ERROR event {code} {obj.get('reason', '')}: {message}")
        if kind not in (ADDED, MODIFIED, DELETED, BOOKMARK):
            raise WatchError(f"unexpected watch event type {kind!r}")
        if kind != BOOKMARK:
            self.cache._apply(self.resource, kind, obj)
        rv = _rv(obj)
        if rv:
            self.resource_version = rv
