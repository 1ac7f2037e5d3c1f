"""The API resources blixt reads and writes, and where each one lives."""

from __future__ import annotations

import dataclasses
from typing import Any

from blixt.api_groups import COORDINATION, DISCOVERY, GATEWAY


@dataclasses.dataclass(frozen=True)
class Resource:
    """One resource type. `name` is its key in a cache snapshot; the names of
    DEFAULT_RESOURCES match the fields of blixt.translate.Snapshot."""

    name: str
    group: str  # "" for the core API
    version: str
    plural: str
    kind: str
    namespaced: bool

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(self, namespace: str | None = None, name: str | None = None,
             subresource: str | None = None) -> str:
        """The URL path of the collection (namespace None: across all
        namespaces), of one object, or of one object's subresource."""
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace is not None:
            base += f"/namespaces/{namespace}"
        elif not self.namespaced and namespace:
            raise ValueError(f"{self.kind} is cluster-scoped; got namespace {namespace!r}")
        base += f"/{self.plural}"
        if name is not None:
            base += f"/{name}"
            if subresource:
                base += f"/{subresource}"
        return base

    def key(self, obj: dict[str, Any]) -> str | tuple[str, str]:
        """The cache key: the name when cluster-scoped, else (namespace, name)."""
        meta = obj["metadata"]
        return (meta["namespace"], meta["name"]) if self.namespaced else meta["name"]


SERVICES = Resource("services", "", "v1", "services", "Service", True)
NAMESPACES = Resource("namespaces", "", "v1", "namespaces", "Namespace", False)
CONFIG_MAPS = Resource("config_maps", "", "v1", "configmaps", "ConfigMap", True)
ENDPOINT_SLICES = Resource("endpoint_slices", DISCOVERY, "v1", "endpointslices", "EndpointSlice", True)
GATEWAY_CLASSES = Resource("gateway_classes", GATEWAY, "v1", "gatewayclasses", "GatewayClass", False)
GATEWAYS = Resource("gateways", GATEWAY, "v1", "gateways", "Gateway", True)
TCP_ROUTES = Resource("tcp_routes", GATEWAY, "v1", "tcproutes", "TCPRoute", True)
UDP_ROUTES = Resource("udp_routes", GATEWAY, "v1", "udproutes", "UDPRoute", True)
# v1beta1 is the storage version in Gateway API v1.6 and served everywhere
# ReferenceGrant exists; v1 is served only by newer bundles.
REFERENCE_GRANTS = Resource("reference_grants", GATEWAY, "v1beta1", "referencegrants", "ReferenceGrant", True)
LEASES = Resource("leases", COORDINATION, "v1", "leases", "Lease", True)

DEFAULT_RESOURCES: tuple[Resource, ...] = (
    SERVICES, NAMESPACES, CONFIG_MAPS, ENDPOINT_SLICES,
    GATEWAY_CLASSES, GATEWAYS, TCP_ROUTES, UDP_ROUTES, REFERENCE_GRANTS,
)

# The kinds whose status blixt writes.
STATUS_KINDS: dict[str, Resource] = {r.kind: r for r in (GATEWAY_CLASSES, GATEWAYS, TCP_ROUTES, UDP_ROUTES)}
