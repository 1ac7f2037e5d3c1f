"""Endpoints of one Service port, read from its EndpointSlices, and the choice
among them that kube-proxy makes (its endpoint conditions, KEP-1669, and
topology hints). Pure: no I/O.

The Gateway path uses `from_slices` with ready, not terminating endpoints
(backends.py); `select` is kube-proxy's CategorizeEndpoints (pkg/proxy/
topology.go, v1.35), which a Service proxy needs:

* cluster endpoints: the ready ones, narrowed by topology hints when every
  ready endpoint has a hint and one names this node (forNodes) or zone
  (forZones); if none is ready, the serving and terminating ones;
* local endpoints: this node's ready ones; if none, this node's serving and
  terminating ones (each set falls back on its own);
* reachable: what either set may send traffic to.
"""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Iterable

from .model import is_int

PREFER_SAME_NODE = "PreferSameNode"
PREFER_SAME_ZONE = "PreferSameZone"
ZONE_LABEL = "topology.kubernetes.io/zone"


@dataclasses.dataclass(frozen=True)
class Endpoint:
    ip: ipaddress.IPv4Address
    port: int
    node: str                    # nodeName ("" when the slice gives none)
    ready: bool = True
    serving: bool = True
    terminating: bool = False
    zone_hints: frozenset[str] = frozenset()
    node_hints: frozenset[str] = frozenset()

    def local(self, node: str) -> bool:
        return bool(node) and self.node == node


def slice_port(s: dict, name: str, protocol: str) -> int | None:
    """The slice's port number for the Service port of that name and protocol.
    The EndpointSlice controller resolved named targetPorts into it."""
    for p in s.get("ports") or ():
        if (p.get("name") or "") == name and (p.get("protocol") or "TCP") == protocol:
            port = p.get("port")
            return port if is_int(port) and 1 <= port <= 65535 else None
    return None


def _ipv4(text) -> ipaddress.IPv4Address:
    """An endpoint address, parsed once per distinct string: the same
    addresses come back in every slice of every pass, and IPv4Address(str)
    is slow in Python. ValueError for anything but an IPv4 string."""
    if type(text) is not str:
        raise ValueError(f"{text!r} is not an address")
    return _parse_ipv4(text)


_parse_ipv4 = functools.lru_cache(maxsize=1 << 17)(ipaddress.IPv4Address)


def from_slices(slices: Iterable[dict], name: str, protocol: str, node: str = "") -> tuple[Endpoint, ...]:
    """The IPv4 endpoints of one Service port (its name and protocol), once
    each: the first slice to list an ip:port wins, unless a later one puts it
    on this node. Missing conditions count as ready and serving, as the API
    says; only the first address of an endpoint has defined meaning."""
    found: dict[tuple[int, int], Endpoint] = {}  # by (address as an int, port): hashed in C
    for s in slices:
        if s.get("addressType") != "IPv4":
            continue
        port = slice_port(s, name, protocol)
        if port is None:
            continue
        for ep in s.get("endpoints") or ():
            try:
                ip = _ipv4((ep.get("addresses") or [None])[0])
            except ValueError:
                continue
            cond = ep.get("conditions") or {}
            hints = ep.get("hints") or {}
            e = Endpoint(
                ip, port, ep.get("nodeName") or "",
                ready=cond.get("ready") is not False,
                serving=cond.get("serving") is not False,
                terminating=cond.get("terminating") is True,
                zone_hints=frozenset(z.get("name") for z in hints.get("forZones") or () if z.get("name")),
                node_hints=frozenset(n.get("name") for n in hints.get("forNodes") or () if n.get("name")),
            )
            if (ip._ip, port) not in found or e.local(node):
                found[(ip._ip, port)] = e
    return tuple(found.values())


def topology_mode(endpoints: Iterable[Endpoint], node: str, zone: str) -> str:
    """PreferSameNode when every ready endpoint has node hints and one names
    this node; else PreferSameZone likewise for zones; else "" (no narrowing)."""
    ready = [e for e in endpoints if e.ready]
    if not ready:
        return ""
    if all(e.node_hints for e in ready) and any(node in e.node_hints for e in ready):
        return PREFER_SAME_NODE
    if all(e.zone_hints for e in ready) and any(zone in e.zone_hints for e in ready):
        return PREFER_SAME_ZONE
    return ""


def _for_topology(e: Endpoint, mode: str, node: str, zone: str) -> bool:
    if mode == PREFER_SAME_NODE:
        return node in e.node_hints
    if mode == PREFER_SAME_ZONE:
        return zone in e.zone_hints
    return True


@dataclasses.dataclass(frozen=True)
class Selection:
    cluster: tuple[Endpoint, ...] = ()    # for Cluster traffic policies
    local: tuple[Endpoint, ...] = ()      # for Local traffic policies
    reachable: tuple[Endpoint, ...] = ()  # either
    has_any: bool = False                 # some endpoint anywhere can serve


def select(endpoints: Iterable[Endpoint], node: str, zone: str = "",
           uses_cluster: bool = True, uses_local: bool = False) -> Selection:
    """kube-proxy's choice for one Service port on `node` (in `zone`).
    uses_cluster/uses_local: whether any traffic policy of the Service is
    Cluster/Local (`traffic_policies`)."""
    eps = tuple(endpoints)
    if not eps:
        return Selection()
    cluster: tuple[Endpoint, ...] = ()
    mode = ""
    has_any = False
    if uses_cluster:
        mode = topology_mode(eps, node, zone)
        cluster = tuple(e for e in eps if e.ready and _for_topology(e, mode, node, zone))
        if not cluster:
            cluster = tuple(e for e in eps if e.serving and e.terminating)
        has_any = bool(cluster)
    if not uses_local:
        return Selection(cluster, (), cluster, has_any)
    has_any = has_any or any(e.ready or (e.serving and e.terminating) for e in eps)
    local = tuple(e for e in eps if e.local(node) and e.ready)
    fell_back = False
    if not local:
        local = tuple(e for e in eps if e.local(node) and e.serving and e.terminating)
        fell_back = bool(local)
    if not uses_cluster:
        return Selection((), local, local, has_any)
    if not mode and not fell_back:
        # Without narrowing, every local ready endpoint is a cluster one too.
        return Selection(cluster, local, cluster, has_any)
    reachable = {(e.ip, e.port): e for e in (*cluster, *local)}
    return Selection(cluster, local, tuple(reachable.values()), has_any)


EXTERNAL_TYPES = ("NodePort", "LoadBalancer")


def traffic_policies(service: dict) -> tuple[bool, bool]:
    """(uses_cluster, uses_local) for a Service, as kube-proxy's ServicePort:
    its internal policy, and its external one if it can be reached from
    outside (NodePort, LoadBalancer or externalIPs)."""
    spec = service.get("spec") or {}
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    external = spec.get("type") in EXTERNAL_TYPES or bool(spec.get("externalIPs"))
    external_local = external and spec.get("externalTrafficPolicy") == "Local"
    uses_cluster = not internal_local or (external and not external_local)
    uses_local = internal_local or external_local
    return uses_cluster, uses_local
