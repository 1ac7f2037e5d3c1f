"""backendRefs: resolution (for the route's ResolvedRefs condition) and
expansion into weighted endpoints (for the dataplane)."""

from __future__ import annotations

import collections
import dataclasses
import ipaddress
import math

from blixt import api_groups
from blixt.dataplane.model import MAX_WEIGHT, Backend

from .endpoints import from_slices
from .listeners import PROTOCOLS
from .model import is_int, meta

# A route kind -> the Service protocol its backends serve: the listener's.
ROUTE_PROTOCOL = {kind: protocol for protocol, (_, kind) in PROTOCOLS.items()}
SERVICE_NAME_LABEL = "kubernetes.io/service-name"

# The condition carries one reason when refs fail differently. RefNotPermitted
# comes first: without a grant we must not reveal whether the target exists.
REASON_ORDER = ("RefNotPermitted", "InvalidKind", "BackendNotFound")


@dataclasses.dataclass(frozen=True)
class Ref:
    service: tuple[str, str]
    port: dict  # the Service's port entry the backendRef selects
    weight: int


@dataclasses.dataclass
class Resolution:
    refs: list[Ref]
    problems: list[tuple[str, str]]  # (reason, message)

    @property
    def reason(self) -> str | None:
        if not self.problems:
            return None
        reasons = {r for r, _ in self.problems}
        return next(r for r in REASON_ORDER if r in reasons)

    @property
    def message(self) -> str:
        return "; ".join(m for _, m in self.problems)


class Index:
    """Lookups built once per translation."""

    def __init__(self, snapshot):
        self.services = snapshot.services
        self.grants = collections.defaultdict(list)
        for (ns, _), g in snapshot.reference_grants.items():
            self.grants[ns].append(g.get("spec") or {})
        self.slices = collections.defaultdict(list)
        for (ns, _), s in snapshot.endpoint_slices.items():
            svc = (meta(s).get("labels") or {}).get(SERVICE_NAME_LABEL)
            if svc:
                self.slices[(ns, svc)].append(s)

    def permitted(self, from_kind: str, from_ns: str, to_ns: str, to_name: str) -> bool:
        for spec in self.grants.get(to_ns, ()):
            if not any(f.get("group") == api_groups.GATEWAY and f.get("kind") == from_kind
                       and f.get("namespace") == from_ns for f in spec.get("from") or ()):
                continue
            if any((t.get("group") or "") == "" and t.get("kind") == "Service"
                   and (not t.get("name") or t.get("name") == to_name) for t in spec.get("to") or ()):
                return True
        return False


def resolve(route_kind: str, route: dict, index: Index) -> Resolution:
    route_ns = meta(route).get("namespace") or ""
    protocol = ROUTE_PROTOCOL[route_kind]
    refs, problems = [], []
    for rule in (route.get("spec") or {}).get("rules") or ():
        for b in rule.get("backendRefs") or ():
            group, kind = b.get("group") or "", b.get("kind") or "Service"
            name, ns = b.get("name") or "", b.get("namespace") or route_ns
            if group != "" or kind != "Service":
                problems.append(("InvalidKind", f"backendRef {name}: kind {kind} in group {group!r} is not supported, only core Service"))
                continue
            if ns != route_ns and not index.permitted(route_kind, route_ns, ns, name):
                problems.append(("RefNotPermitted", f"backendRef {ns}/{name}: no ReferenceGrant in {ns} allows {route_kind}s from {route_ns}"))
                continue
            svc = index.services.get((ns, name))
            if svc is None:
                problems.append(("BackendNotFound", f"Service {ns}/{name} not found"))
                continue
            port = b.get("port")
            if port is None:
                problems.append(("BackendNotFound", f"backendRef {ns}/{name}: port is required for a Service"))
                continue
            sp = next((p for p in (svc.get("spec") or {}).get("ports") or ()
                       if p.get("port") == port and (p.get("protocol") or "TCP") == protocol), None)
            if sp is None:
                problems.append(("BackendNotFound", f"Service {ns}/{name} has no {protocol} port {port}"))
                continue
            weight = b.get("weight", 1)
            refs.append(Ref((ns, name), sp, weight if is_int(weight) and weight > 0 else 0))
    return Resolution(refs, problems)


def endpoints(ref: Ref, index: Index) -> dict[tuple[ipaddress.IPv4Address, int], str]:
    """(ip, port) -> nodeName of the ready, not terminating IPv4 endpoints."""
    found = from_slices(index.slices.get(ref.service, ()), ref.port.get("name") or "",
                        ref.port.get("protocol") or "TCP")
    return {(e.ip, e.port): e.node for e in found if e.ready and not e.terminating}


def backends(refs: list[Ref], index: Index, node_name: str | None = None) -> tuple[Backend, ...]:
    """Each ref's weight is split evenly over its endpoints, so that the
    route's weights hold per connection whatever the endpoint counts: with
    L the lcm of the counts, an endpoint of ref i weighs w_i * L / n_i.
    masquerade: a remote backend (or any, without a node) needs SNAT."""
    expanded = [(r.weight, endpoints(r, index)) for r in refs if r.weight > 0]
    expanded = [(w, eps) for w, eps in expanded if eps]
    if not expanded:
        return ()
    lcm = math.lcm(*(len(eps) for _, eps in expanded))
    weights: dict[tuple[ipaddress.IPv4Address, int], int] = collections.Counter()
    nodes = {}
    for w, eps in expanded:
        for ep, node in eps.items():
            weights[ep] += w * (lcm // len(eps))
            nodes[ep] = node
    g = math.gcd(*weights.values())
    top = max(weights.values()) // g
    scale = min(1.0, MAX_WEIGHT / top)
    out = []
    for (ip, port), w in sorted(weights.items()):
        w //= g
        if scale < 1.0:
            w = max(1, round(w * scale))
        remote = node_name is None or nodes[(ip, port)] != node_name
        out.append(Backend(ip, port, w, remote))
    return tuple(out)
