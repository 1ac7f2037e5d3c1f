"""Inputs and outputs of the translation: plain frozen values.

Objects are the API server's JSON (camelCase dicts), keyed by name for
cluster-scoped kinds and by (namespace, name) for namespaced ones."""

from __future__ import annotations

import dataclasses
from typing import Mapping, NamedTuple

from blixt import api_groups
from blixt.dataplane.model import Dataplane

CONTROLLER_NAME = f"{api_groups.GATEWAY}/blixt"

NsName = tuple[str, str]


class ObjectRef(NamedTuple):
    """Which object a status belongs to; namespace is None for a GatewayClass."""

    kind: str
    namespace: str | None
    name: str


@dataclasses.dataclass(frozen=True)
class Snapshot:
    gateway_classes: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    gateways: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)
    tcp_routes: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)
    udp_routes: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)
    reference_grants: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)
    services: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)
    endpoint_slices: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)
    namespaces: Mapping[str, dict] = dataclasses.field(default_factory=dict)
    config_maps: Mapping[NsName, dict] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Translation:
    statuses: Mapping[ObjectRef, dict]
    dataplane: Dataplane
    addresses: Mapping[NsName, list[str]]
    skipped: tuple[str, ...] = ()  # frontends not programmed, and why (the agent logs them)
    health_checks: tuple = ()      # proxy.HealthCheck: the node's healthCheckNodePorts
    # Gateways and Services left out because the maps have no room, and why.
    unfit: Mapping[ObjectRef, str] = dataclasses.field(default_factory=dict)


def meta(obj: dict) -> dict:
    return obj.get("metadata") or {}


def generation(obj: dict) -> int:
    return meta(obj).get("generation") or 0


def age_key(obj: dict) -> tuple[str, str, str]:
    """Oldest first: creationTimestamp (RFC 3339 in UTC sorts as text), then
    namespace/name, the tie-break Gateway API prescribes for conflicts."""
    m = meta(obj)
    return (m.get("creationTimestamp") or "", m.get("namespace") or "", m.get("name") or "")


def is_int(value) -> bool:
    """A JSON integer: bool is an int in Python, never in the API's schemas."""
    return type(value) is int
