"""The current time in UTC as Kubernetes spells it."""

from __future__ import annotations

import datetime


def _utc_now(fmt: str) -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime(fmt)


def utc_now() -> str:
    """A metav1.Time (RFC 3339 to the second): conditions' lastTransitionTime.
    Fixed width, so such timestamps sort as text."""
    return _utc_now("%Y-%m-%dT%H:%M:%SZ")


def utc_now_micro() -> str:
    """A metav1.MicroTime, the format of a Lease's acquireTime and renewTime."""
    return _utc_now("%Y-%m-%dT%H:%M:%S.%fZ")
