"""Kubernetes Services -> the frontends one node serves, as kube-proxy
(v1.35, nftables mode) would: which endpoints each frontend balances over,
who is masqueraded, and whether a frontend with no usable endpoint rejects
or drops. Pure: no I/O.

Per Service port (services.frontends gives the frontends, endpoints.select
kube-proxy's endpoint choice):

* ClusterIP: all endpoints, or the node's own with internalTrafficPolicy
  Local. Masqueraded when the source is outside the pod CIDRs (kube-proxy's
  ClusterCIDR local detector; nothing without CIDRs), or always with
  masquerade-all.
* NodePort, LoadBalancer IPs, externalIPs: externalTrafficPolicy Cluster
  masquerades every flow and uses all endpoints; Local keeps the client IP
  and uses the node's own endpoints, except for pod sources and the node's
  own traffic, which go to all endpoints (a twin entry with scope "pod").
* No endpoint anywhere that can serve: reject. Endpoints only on other nodes
  under a Local policy: drop.
* loadBalancerSourceRanges on LoadBalancer IPs, from every source; when a
  range holds a node IP, the LoadBalancer IPs themselves are allowed too (a
  node reaching its own VIP has it as source), as kube-proxy does.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import ipaddress
from typing import Iterable, Mapping

from blixt.dataplane.layout import PROTOCOLS as SUPPORTED
from blixt.dataplane.model import Backend, Service

from . import endpoints, health, services
from .memo import Entries
from .model import NsName, age_key, is_int

_API_PROTOCOL = {v: k for k, v in services.PROTOCOLS.items()}


@dataclasses.dataclass(frozen=True)
class ProxyOptions:
    node: str
    zone: str = ""
    pod_cidrs: tuple[ipaddress.IPv4Network, ...] = ()
    masquerade_all: bool = False
    node_ips: tuple[ipaddress.IPv4Address, ...] = ()  # primary IPs, for source ranges


@dataclasses.dataclass(frozen=True)
class HealthCheck:
    """A healthCheckNodePort (LoadBalancer, externalTrafficPolicy Local) and
    what it answers on this node (translate/health.py)."""
    port: int
    namespace: str
    name: str
    local_endpoints: int


@dataclasses.dataclass(frozen=True)
class Proxied:
    # Each Service's frontends, oldest Service first (the fit's units).
    units: tuple[tuple[NsName, tuple[Service, ...]], ...]
    skipped: tuple[str, ...]  # frontends not served, with why (for logs)
    health_checks: tuple[HealthCheck, ...] = ()

    @property
    def services(self) -> tuple[Service, ...]:
        return tuple(s for _, unit in self.units for s in unit)


def build(service_objs: Mapping[NsName, dict], slices: Mapping[NsName, list[dict]],
          opts: ProxyOptions, memo: Entries | None = None) -> Proxied:
    """slices: EndpointSlices by the Service they belong to (backends.Index.slices).
    memo: what earlier calls made of each Service (translate.memo): a
    Service whose object, EndpointSlices and options are the same objects
    is not translated again (same result)."""
    out: dict[NsName, list[Service]] = {}
    skipped: list[str] = []
    checks: dict[int, HealthCheck] = {}
    taken: set = set()
    for key, obj in sorted(service_objs.items()):
        own = tuple(slices.get(key, ()))
        make = functools.partial(_made, obj, own, opts)
        check, made_services, notes = make() if memo is None else memo.get(key, (obj, opts, *own), make)
        skipped.extend(notes)
        if check is not None and check.port not in checks:
            checks[check.port] = check
        for svc in made_services:
            if svc.fast_key in taken:
                skipped.append(f"{svc.name}: {svc.key_text} is already served by another Service")
                continue
            taken.add(svc.fast_key)
            out.setdefault(key, []).append(svc)
    # A twin whose main entry lost a conflict has nothing to stand in for.
    mains = {s.fast_key[:3] for unit in out.values() for s in unit if s.scope == "any"}
    units = [(key, tuple(s for s in unit if s.fast_key[:3] in mains))
             for key, unit in sorted(out.items(), key=lambda kv: age_key(service_objs[kv[0]]))]
    if memo is not None:
        memo.sweep()
    return Proxied(tuple(u for u in units if u[1]), tuple(skipped), tuple(checks.values()))


def _made(obj: dict, slices: tuple, opts: ProxyOptions) -> tuple:
    """One Service's health check, frontends and notes."""
    notes: list[str] = []
    return _health_check(obj, slices, opts), tuple(_service(obj, slices, opts, notes)), tuple(notes)


def _health_check(obj: dict, slices, opts: ProxyOptions) -> HealthCheck | None:
    spec = obj.get("spec") or {}
    port = spec.get("healthCheckNodePort")
    if (not services.proxied(obj) or spec.get("type") != "LoadBalancer"
            or spec.get("externalTrafficPolicy") != "Local" or not is_int(port) or not 1 <= port <= 65535):
        return None
    slices = list(slices)
    per_port = [endpoints.from_slices(slices, p.get("name") or "", p.get("protocol") or "TCP", opts.node)
                for p in spec.get("ports") or ()]
    ns, name = (obj.get("metadata") or {}).get("namespace") or "", (obj.get("metadata") or {}).get("name") or ""
    return HealthCheck(port, ns, name, health.local_endpoints(per_port, opts.node))


def _service(obj: dict, slices: Iterable[dict], opts: ProxyOptions, skipped: list[str]) -> list[Service]:
    fronts = services.frontends(obj)
    if not fronts:
        return []
    spec = obj.get("spec") or {}
    internal_local = spec.get("internalTrafficPolicy") == "Local"
    external_local = spec.get("externalTrafficPolicy") == "Local"
    uses_cluster, uses_local = endpoints.traffic_policies(obj)
    slices = list(slices)
    by_port = collections.defaultdict(list)
    for f in fronts:
        by_port[(f.port_name, f.protocol)].append(f)
    out = []
    # Service ports that resolve to the same port in every slice have the
    # same endpoints (many ports, one targetPort): worked out once.
    chosen: dict[tuple, tuple] = {}
    for (port_name, proto), group in by_port.items():
        ns, name = group[0].service
        label = f"service/{ns}/{name}:{port_name or group[0].port}"
        if proto not in SUPPORTED:
            skipped.append(f"{label}: protocol {proto.upper()} is not supported")
            continue
        resolved = tuple(endpoints.slice_port(s, port_name, _API_PROTOCOL[proto]) for s in slices)
        if resolved not in chosen:
            eps = endpoints.from_slices(slices, port_name, _API_PROTOCOL[proto], opts.node)
            sel = endpoints.select(eps, opts.node, opts.zone, uses_cluster, uses_local)
            chosen[resolved] = (sel, _backends(sel.cluster), _backends(sel.local))
        sel, cluster, local = chosen[resolved]
        for f in group:
            common = dict(port=f.port, protocol=proto, affinity_timeout=f.affinity_timeout,
                          name=f"{label}/{f.kind}", source_ranges=_ranges(f, opts),
                          affinity_group=f"{label}/{proto}")
            if not f.external:
                local_policy = internal_local
                masq = "all" if opts.masquerade_all else ("off-pod" if opts.pod_cidrs else "")
            else:
                local_policy = external_local
                masq = "" if external_local else "all"
            picked = local if local_policy else cluster
            out.append(Service(f.address, backends=picked, masquerade=masq,
                               drop_when_empty=local_policy and sel.has_any, **common))
            # The cluster-policy twin of a Local frontend: for pods (sources in
            # the pod CIDRs) and for the node's own traffic (the output path).
            if f.external and external_local and cluster:
                out.append(Service(f.address, backends=cluster, scope="pod", **common))
    return out


def _backends(eps: Iterable[endpoints.Endpoint]) -> tuple[Backend, ...]:
    # Keyed and sorted by (address as an int, port): Backend's own order, with
    # no IPv4Address hashed or compared in Python code.
    unique = {(e.ip._ip, e.port): e for e in eps}
    return tuple(Backend(unique[k].ip, unique[k].port) for k in sorted(unique))


def _ranges(f: services.Frontend, opts: ProxyOptions) -> tuple[ipaddress.IPv4Network, ...]:
    ranges = f.source_ranges
    if ranges and f.address is not None and any(ip in r for r in ranges for ip in opts.node_ips):
        ranges = (*ranges, ipaddress.IPv4Network(f.address))
    return ranges
