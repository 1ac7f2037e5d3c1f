"""The dataplane for all programmed Gateways: one Service per address and
accepted listener, balanced over the backends of the listener's oldest
attached route (the one that wins when several attach, as the conformance
multiple-routes tests require; the others stay Accepted but get no traffic)."""

from __future__ import annotations

import ipaddress

from blixt.dataplane.model import Dataplane, Service

from .backends import Index, Ref, backends
from .memo import Entries
from .model import age_key


def build(gateways, routes: dict, resolutions: dict, index: Index, node_name: str | None,
          memo: Entries | None = None) -> list[tuple[tuple[str, str], tuple[Service, ...]]]:
    """Each programmed Gateway's frontends, in the order given (the fit's
    units). routes: (kind, ns, name) -> route object; resolutions likewise.
    memo: the backends of earlier calls (translate.memo), by what they were
    made from."""
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
                    cache[winner] = _backends(resolutions[winner].refs, index, node_name, memo)
                picked = cache[winner]
            for addr in gs.assigned.addresses:
                services.append(Service(ipaddress.IPv4Address(addr), l.port, l.proto, picked,
                                        name=f"gateway/{ns}/{name}/{l.name}"))
        units.append((gs.key, tuple(services)))
    if memo is not None:
        memo.sweep()
    return units


def _backends(refs: list[Ref], index: Index, node_name: str | None, memo: Entries | None):
    """backends(), or what it gave for the same refs over the same
    EndpointSlice objects (all it reads of a ref: its Service's slices, the
    port's name and protocol, the weight)."""
    if memo is None:
        return backends(refs, index, node_name)
    own = [tuple(index.slices.get(r.service, ())) for r in refs]
    key = (node_name, tuple((r.service, r.port.get("name"), r.port.get("protocol"), r.weight, len(sl))
                            for r, sl in zip(refs, own)))
    return memo.get(key, tuple(s for sl in own for s in sl), lambda: backends(refs, index, node_name))


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
