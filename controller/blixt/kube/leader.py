"""Leader election on a coordination.k8s.io/v1 Lease, the way client-go does it.

- A candidate takes the Lease when it has no holder, or when its record has
  not changed for leaseDurationSeconds. "Not changed" is measured on this
  process's monotonic clock from when it last saw the Lease's
  resourceVersion move, not from the holder's renewTime, so clock skew
  between nodes cannot make a live leader look expired.
- Every write is an update guarded by the resourceVersion just read (and a
  create for a missing Lease): of two candidates racing, the apiserver lets
  one through and answers the other 409, which loses.
- The leader renews every retry_period. If it has not renewed for
  renew_deadline (shorter than the lease duration, so it steps down before
  anyone may take over), or it finds another holder, it steps down: it
  calls on_stopped and becomes a candidate again.
- stop() releases the Lease (holderIdentity emptied) so a successor need not
  wait for it to expire.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Callable

from kubernetes.client import ApiClient

from blixt.timestamps import utc_now_micro

from . import metrics, rest
from .resources import LEASES

log = logging.getLogger(__name__)

Callback = Callable[[], None]


class LeaderElector:
    def __init__(self, api_client: ApiClient, namespace: str, name: str, identity: str,
                 lease_duration: float = 15, renew_deadline: float = 10, retry_period: float = 2,
                 release_on_stop: bool = True):
        if not identity:
            raise ValueError("leader election needs a non-empty identity")
        if not lease_duration > renew_deadline > retry_period > 0:
            raise ValueError("need lease_duration > renew_deadline > retry_period > 0, got "
                             f"{lease_duration}, {renew_deadline}, {retry_period}")
        self.api = api_client
        self.namespace = namespace
        self.name = name
        self.identity = identity
        self.lease_duration = lease_duration
        self.renew_deadline = renew_deadline
        self.retry_period = retry_period
        self.release_on_stop = release_on_stop
        # Each request must end well inside the renew deadline.
        self._request_timeout = max(1.0, renew_deadline / 2)
        self._leading = threading.Event()
        self._stop = threading.Event()
        self._observed_rv: str | None = None
        self._observed_at = 0.0
        self._last_spec: dict = {}  # the Lease spec last read or written
        self._thread: threading.Thread | None = None
        self._gauge = metrics.LEADER.labels(f"{namespace}/{name}")
        self._gauge.set(0)

    def is_leader(self) -> bool:
        return self._leading.is_set()

    def run(self, on_started: Callback | None = None, on_stopped: Callback | None = None) -> threading.Thread:
        """Start electing in a thread. The callbacks run in that thread and
        must return promptly (start your work elsewhere): renewals wait."""
        if self._thread is not None:
            raise RuntimeError("LeaderElector.run() called twice")
        self._thread = threading.Thread(target=self._loop, args=(on_started, on_stopped),
                                        name=f"leader-{self.name}", daemon=True)
        self._thread.start()
        return self._thread

    def stop(self, timeout: float = 10.0) -> None:
        """Stop electing; a leader releases the Lease and calls on_stopped."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _loop(self, on_started: Callback | None, on_stopped: Callback | None) -> None:
        while not self._stop.is_set():
            if not self._try_acquire_or_renew():
                # Jitter keeps candidates from polling in lockstep.
                self._stop.wait(self.retry_period * random.uniform(1.0, 1.2))
                continue
            log.info("%s: became leader of Lease %s/%s", self.identity, self.namespace, self.name)
            self._set_leading(True, on_started)
            self._renew_until_lost()
            if self._stop.is_set():
                if self.release_on_stop:
                    self._release()
            self._set_leading(False, on_stopped)

    def _renew_until_lost(self) -> None:
        last_renew = time.monotonic()
        while not self._stop.wait(self.retry_period):
            # Every attempt ends by the deadline, so the step-down cannot slip
            # past it towards the moment others may take the Lease.
            left = self.renew_deadline - (time.monotonic() - last_renew)
            if self._try_acquire_or_renew(timeout=max(0.1, min(self._request_timeout, left))):
                last_renew = time.monotonic()
                continue
            if self._held_by_other():
                log.warning("%s: Lease %s/%s was taken by another holder; stepping down",
                            self.identity, self.namespace, self.name)
                return
            if self.renew_deadline - (time.monotonic() - last_renew) <= self.retry_period:
                log.warning("%s: could not renew Lease %s/%s for %.1fs (deadline %.1fs); stepping down",
                            self.identity, self.namespace, self.name,
                            time.monotonic() - last_renew, self.renew_deadline)
                return

    def _set_leading(self, leading: bool, callback: Callback | None) -> None:
        if leading:
            self._leading.set()
        else:
            self._leading.clear()
        self._gauge.set(1 if leading else 0)
        if callback is not None:
            try:
                callback()
            except Exception:
                log.exception("%s: leader election callback failed", self.identity)

    # The Lease record.

    def _path(self, with_name: bool = True) -> str:
        return LEASES.path(self.namespace, self.name if with_name else None)

    def _observe(self, lease: dict) -> None:
        rv = lease["metadata"]["resourceVersion"]
        if rv != self._observed_rv:
            self._observed_rv = rv
            self._observed_at = time.monotonic()

    def _held_by_other(self) -> bool:
        """From the last record read: another identity holds an unexpired Lease."""
        holder = self._last_spec.get("holderIdentity") or ""
        duration = self._last_spec.get("leaseDurationSeconds") or self.lease_duration
        return bool(holder) and holder != self.identity and time.monotonic() < self._observed_at + duration

    def _try_acquire_or_renew(self, timeout: float | None = None) -> bool:
        try:
            return self._acquire_or_renew(timeout or self._request_timeout)
        except rest.ApiError as e:
            if e.status == 409:
                log.debug("%s: lost a race for Lease %s/%s", self.identity, self.namespace, self.name)
            else:
                log.warning("%s: Lease %s/%s: %s", self.identity, self.namespace, self.name, e)
        except Exception as e:  # apiserver unreachable: keep trying until the deadline
            log.warning("%s: Lease %s/%s: %s", self.identity, self.namespace, self.name,
                        rest.describe_error(e))
        return False

    def _acquire_or_renew(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        now = utc_now_micro()
        try:
            lease = rest.request(self.api, "GET", self._path(), timeout=timeout)
        except rest.ApiError as e:
            if e.status != 404:
                raise
            return self._create(now, timeout)
        self._observe(lease)
        spec = lease.get("spec") or {}
        self._last_spec = spec
        if self._held_by_other():
            return False
        holder = spec.get("holderIdentity") or ""
        new_spec = dict(spec, holderIdentity=self.identity, renewTime=now,
                        leaseDurationSeconds=max(1, round(self.lease_duration)))
        if holder != self.identity:
            new_spec["acquireTime"] = now
            new_spec["leaseTransitions"] = (spec.get("leaseTransitions") or 0) + (1 if holder else 0)
        lease["spec"] = new_spec  # lease keeps metadata.resourceVersion: the update's precondition
        updated = rest.request(self.api, "PUT", self._path(), body=lease,
                               timeout=max(0.1, deadline - time.monotonic()))
        self._observe(updated)
        self._last_spec = updated.get("spec") or {}
        return True

    def _create(self, now: str, timeout: float) -> bool:
        lease = {
            "apiVersion": LEASES.api_version, "kind": LEASES.kind,
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {"holderIdentity": self.identity, "leaseDurationSeconds": max(1, round(self.lease_duration)),
                     "acquireTime": now, "renewTime": now, "leaseTransitions": 0},
        }
        created = rest.request(self.api, "POST", self._path(with_name=False), body=lease, timeout=timeout)
        self._observe(created)
        self._last_spec = created.get("spec") or {}
        return True

    def _release(self) -> None:
        """Empty holderIdentity so a successor takes over at once; best effort."""
        try:
            lease = rest.request(self.api, "GET", self._path(), timeout=self._request_timeout)
            spec = lease.get("spec") or {}
            if spec.get("holderIdentity") != self.identity:
                return
            lease["spec"] = dict(spec, holderIdentity="", leaseDurationSeconds=1, renewTime=utc_now_micro())
            rest.request(self.api, "PUT", self._path(), body=lease, timeout=self._request_timeout)
            log.info("%s: released Lease %s/%s", self.identity, self.namespace, self.name)
        except Exception as e:
            log.warning("%s: could not release Lease %s/%s (%s); it expires in %ss",
                        self.identity, self.namespace, self.name, e, self.lease_duration)
