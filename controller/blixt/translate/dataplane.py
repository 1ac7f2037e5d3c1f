"""The dataplane for all programmed Gateways: one Service per address and
accepted listener, balanced over the backends of the listener's oldest
attached route (the one that wins when several attach, as the conformance
multiple-routes tests require; the others stay Accepted but get no traffic)."""

from __future__ import annotations

import ipaddress

from blixt.dataplane.model import Dataplane, Service

from .backends import Index, backends
from .model import age_key


def build(gateways, routes: dict, resolutions: dict, index: Index,
          node_name: str | None) -> list[tuple[tuple[str, str], tuple[Service, ...]]]:
    """Each programmed Gateway's frontends, in the order given (the fit's
    units). routes: (kind, ns, name) -> route object; resolutions likewise."""
    units, cache = [], {}
    for gs in gateways:
        if not gs.programmed:
            continue
        ns, name = gs.key
        services = []
        for l in gs.listeners:
            if not l.accepted:
                continue
            winner = min(l.attached, key=lambda rid: age_key(routes[rid]), default=None)
            if winner is None:
                picked = ()  # no route: the dataplane rejects connections
            else:
                if winner not in cache:
                    cache[winner] = backends(resolutions[winner].refs, index, node_name)
                picked = cache[winner]
            for addr in gs.assigned.addresses:
                services.append(Service(ipaddress.IPv4Address(addr), l.port, l.proto, picked,
                                        name=f"gateway/{ns}/{name}/{l.name}"))
        units.append((gs.key, tuple(services)))
    return units


def merge(services, gateways: Dataplane, skipped=()) -> tuple[Dataplane, tuple[str, ...]]:
    """Kubernetes Services' frontends beside the Gateways'. A Gateway address
    and port that a Service already serves is left to the Service (the
    address is the Service's, by kube-proxy's rules), and said so."""
    taken = {s.fast_key[:3] for s in services}
    notes = list(skipped)
    kept = []
    for g in gateways.services:
        if g.fast_key[:3] in taken:
            notes.append(f"{g.name}: {g.key_text} is a Service's frontend; the Service wins")
        else:
            kept.append(g)
    return Dataplane.of((*services, *kept), gateways.local_addresses, gateways.pod_cidrs), tuple(notes)
