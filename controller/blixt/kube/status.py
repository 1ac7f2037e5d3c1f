"""Writes the status of GatewayClasses, Gateways, TCPRoutes and UDPRoutes,
only when it differs from the live one, without clobbering other writers.

How a write avoids clobbering:
- It reads the live object, then sends a JSON merge patch to the /status
  subresource that carries the live metadata.resourceVersion: the apiserver
  applies it only if the object is still at that version, else answers 409;
  the writer then reads again and recomputes (bounded retries). The /status
  subresource ignores spec and metadata, so a concurrent spec change is never
  touched, and the patch holds only the status fields that differ (removed
  fields as null), so nothing else is rewritten.
- Route status is shared by every controller attached to the route: each
  owns the `parents` entries with its controllerName. With `controller_name`
  set, the writer takes blixt's entries from the caller and everyone else's
  from the live object at each attempt, so an entry another controller wrote
  after the caller's snapshot survives.

"Differs" is semantic: conditions keep their live lastTransitionTime while
their status is unchanged (the Kubernetes convention, which also makes a
caller that stamps "now" idempotent); map-like lists (conditions by type,
listeners by name, parents by parentRef and controllerName) compare without
order; fields the CRDs default (parentRef group and kind, supportedKinds
group, address type) compare as defaulted. And a write the apiserver found to
be a no-op (resourceVersion unchanged) reports False.
"""

from __future__ import annotations

import copy
import logging
from typing import Any

import tenacity
from kubernetes.client import ApiClient

from blixt import api_groups
from blixt.gateway_api import ROUTE_KINDS, parent_ref_key
from blixt.timestamps import utc_now

from . import metrics, rest
from .resources import STATUS_KINDS, Resource

log = logging.getLogger(__name__)


class _Conflict(Exception):
    pass


class StatusWriter:
    def __init__(self, api_client: ApiClient, field_manager: str = "blixt-controller",
                 controller_name: str | None = None, attempts: int = 5, timeout: float = rest.DEFAULT_TIMEOUT):
        self.api = api_client
        self.field_manager = field_manager
        self.controller_name = controller_name
        self.attempts = attempts
        self.timeout = timeout

    def write(self, kind: str, namespace: str | None, name: str, status: dict) -> bool:
        """Make the object's status `status`; True if it wrote (the object
        changed), False if it was already so or the object is gone.
        Raises ApiError on other failures, or after `attempts` conflicts."""
        resource = STATUS_KINDS.get(kind)
        if resource is None:
            raise ValueError(f"no status writer for kind {kind!r}; known: {sorted(STATUS_KINDS)}")
        namespace = namespace if resource.namespaced else None
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type(_Conflict),
            stop=tenacity.stop_after_attempt(self.attempts),
            wait=tenacity.wait_random(0, 0.2),
            reraise=True,
        )
        try:
            result = retrying(self._attempt, resource, namespace, name, status)
        except _Conflict as e:
            metrics.STATUS_WRITES.labels(kind, "error").inc()
            raise e.__cause__ or e
        except rest.ApiError as e:
            if e.status == 404:
                metrics.STATUS_WRITES.labels(kind, "not_found").inc()
                log.debug("%s %s: gone; no status to write", kind, _ref(namespace, name))
                return False
            metrics.STATUS_WRITES.labels(kind, "error").inc()
            raise
        except Exception:
            metrics.STATUS_WRITES.labels(kind, "error").inc()
            raise
        metrics.STATUS_WRITES.labels(kind, "written" if result else "unchanged").inc()
        return result

    def _read(self, resource: Resource, namespace: str | None, name: str) -> dict:
        return rest.request(self.api, "GET", resource.path(namespace, name), timeout=self.timeout)

    def _attempt(self, resource: Resource, namespace: str | None, name: str, status: dict) -> bool:
        live = self._read(resource, namespace, name)
        live_status = live.get("status") or {}
        desired = _drop_none(copy.deepcopy(status))
        if resource.kind in ROUTE_KINDS and self.controller_name:
            desired = merge_parents(desired, live_status, self.controller_name)
        desired = keep_transition_times(desired, live_status)
        if canonical(resource.kind, desired) == canonical(resource.kind, live_status):
            return False
        rv = live["metadata"]["resourceVersion"]
        body = {"metadata": {"resourceVersion": rv}, "status": merge_patch(live_status, desired)}
        try:
            updated = rest.request(
                self.api, "PATCH", resource.path(namespace, name, "status"),
                query={"fieldManager": self.field_manager}, body=body,
                content_type=rest.MERGE_PATCH, timeout=self.timeout)
        except rest.ApiError as e:
            if e.status == 409:
                log.debug("%s %s: changed since read (%s); reading again",
                          resource.kind, _ref(namespace, name), e.message)
                metrics.STATUS_WRITES.labels(resource.kind, "conflict").inc()
                raise _Conflict() from e
            raise
        written = updated["metadata"]["resourceVersion"] != rv
        if written:
            log.debug("%s %s: status written", resource.kind, _ref(namespace, name))
        return written


def _ref(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _drop_none(value: Any) -> Any:
    """Merge patch cannot carry null values (null means delete)."""
    if isinstance(value, dict):
        return {k: _drop_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_none(v) for v in value]
    return value


def merge_patch(old: dict, new: dict) -> dict:
    """The RFC 7386 merge patch that turns `old` into `new`."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for k, v in new.items():
        if k in old and isinstance(v, dict) and isinstance(old[k], dict):
            sub = merge_patch(old[k], v)
            if sub:
                patch[k] = sub
        elif k not in old or old[k] != v:
            patch[k] = v
    return patch


def _parent_key(parent: dict) -> tuple:
    # The route's namespace is not at hand here: an omitted parentRef namespace
    # stays "", as the writer always compared it.
    return (parent.get("controllerName", ""), *parent_ref_key(parent.get("parentRef") or {}))


def merge_parents(desired: dict, live: dict, controller_name: str) -> dict:
    """Route status with `controller_name`'s parents from `desired` and every
    other controller's from `live`, in the caller's order where it has one."""
    live_others = {_parent_key(p): p for p in live.get("parents") or []
                   if p.get("controllerName") != controller_name}
    merged, used = [], set()
    for p in desired.get("parents") or []:
        if p.get("controllerName") == controller_name:
            merged.append(p)
            continue
        key = _parent_key(p)
        if key in live_others:  # the live entry is newer than the caller's copy
            merged.append(live_others[key])
            used.add(key)
    merged += [p for k, p in live_others.items() if k not in used]
    return {**desired, "parents": merged}


def _keep_conditions(desired: list, live: list) -> list:
    live_by_type = {c.get("type"): c for c in live if isinstance(c, dict)}
    out = []
    for c in desired:
        c = dict(c)
        old = live_by_type.get(c.get("type"))
        if old is not None and old.get("status") == c.get("status") and old.get("lastTransitionTime"):
            c["lastTransitionTime"] = old["lastTransitionTime"]
        elif not c.get("lastTransitionTime"):
            c["lastTransitionTime"] = utc_now()
        out.append(c)
    return out


def _match_by(desired: list, live: list, key) -> list:
    live_by_key = {key(x): x for x in live if isinstance(x, dict)}
    return [keep_transition_times(x, live_by_key.get(key(x), {})) if isinstance(x, dict) else x
            for x in desired]


def keep_transition_times(desired: dict, live: dict) -> dict:
    """`desired` with each condition's lastTransitionTime taken from the live
    condition of the same type when its status did not change (and "now" for
    a condition that has none), through listeners and parents."""
    out = dict(desired)
    for k, v in desired.items():
        old = live.get(k)
        if not isinstance(v, list):
            continue
        old = old if isinstance(old, list) else []
        if k == "conditions":
            out[k] = _keep_conditions(v, old)
        elif k == "listeners":
            out[k] = _match_by(v, old, lambda x: x.get("name"))
        elif k == "parents":
            out[k] = _match_by(v, old, _parent_key)
    return out


def canonical(kind: str, status: dict) -> Any:
    """A form of a status in which semantically equal statuses are equal."""
    s = _drop_none(copy.deepcopy(status or {}))
    for a in s.get("addresses") or []:
        a.setdefault("type", "IPAddress")
    for listener in s.get("listeners") or []:
        for k in listener.get("supportedKinds") or []:
            k.setdefault("group", api_groups.GATEWAY)
    for p in s.get("parents") or []:
        ref = p.setdefault("parentRef", {})
        ref.setdefault("group", api_groups.GATEWAY)
        ref.setdefault("kind", "Gateway")
    return _sorted_maps(s)


def _sorted_maps(value: Any, key: str = "") -> Any:
    if isinstance(value, dict):
        return {k: _sorted_maps(v, k) for k, v in value.items()}
    if isinstance(value, list):
        items = [_sorted_maps(v) for v in value]
        if key == "conditions":
            return sorted(items, key=lambda c: str(c.get("type")))
        if key == "listeners":
            return sorted(items, key=lambda x: str(x.get("name")))
        if key == "parents":
            return sorted(items, key=lambda p: repr(_parent_key(p)))
        return items
    return value
