"""A Gateway of one of our classes: what it asks for, whether we accept it,
and its status once routes and addresses are known."""

from __future__ import annotations

import dataclasses

from blixt import api_groups

from . import listeners as L
from .addresses import Assigned, Request
from .conditions import Cond, render
from .gatewayclass import ClassState
from .model import generation, meta
from .params import ParamsError, gateway_pool
from .pool import Pool


@dataclasses.dataclass
class GatewayState:
    key: tuple[str, str]
    obj: dict
    listeners: list[L.Listener]
    accepted: Cond
    static: list[str]
    dynamic: int
    pool: Pool | None
    assigned: Assigned | None = None  # set for accepted Gateways
    no_resources: str = ""  # why its frontends do not fit the maps (dataplane/fit.py)

    @property
    def programmed(self) -> bool:
        return self.accepted.status and self.assigned is not None and not self.assigned.reason

    def request(self) -> Request:
        held = [a.get("value") or "" for a in (self.obj.get("status") or {}).get("addresses") or ()]
        return Request(self.key, self.static, self.dynamic, self.pool, held)


def _listener_problems(listeners: list[L.Listener]) -> list[str]:
    out = []
    for l in listeners:
        if not l.supported:
            out.append(f"listener {l.name}: protocol {l.protocol} is not supported")
        elif not l.port_ok:
            out.append(f"listener {l.name}: port {l.port!r} is not valid")
        elif l.conflicted:
            out.append(f"listener {l.name}: port {l.port}/{l.protocol} is used by another listener")
    return out


def evaluate(gw: dict, cls_name: str, cls: ClassState, config_maps) -> GatewayState:
    m = meta(gw)
    key = (m.get("namespace") or "", m.get("name") or "")
    listeners = L.evaluate(gw)
    static, dynamic, unsupported = [], 0, []
    addrs = (gw.get("spec") or {}).get("addresses") or []
    for a in addrs:
        kind = a.get("type") or "IPAddress"
        if kind != "IPAddress":
            unsupported.append(kind)
        elif a.get("value"):
            static.append(a["value"])
        else:
            dynamic += 1
    if not addrs:
        dynamic = 1

    pool, accepted = cls.pool, None
    if not cls.accepted:
        accepted = Cond("Accepted", False, "Invalid", f"GatewayClass {cls_name} is not accepted: {cls.message}")
    else:
        try:
            pool = gateway_pool(gw, config_maps) or cls.pool
        except ParamsError as e:
            accepted = Cond("Accepted", False, "InvalidParameters", str(e))
    if accepted is None and unsupported:
        accepted = Cond("Accepted", False, "UnsupportedAddress",
                        f"address type(s) {', '.join(sorted(set(unsupported)))} not supported; blixt supports IPAddress")
    problems = _listener_problems(listeners)
    if accepted is None and problems:
        some_valid = any(l.accepted for l in listeners)
        accepted = Cond("Accepted", some_valid, "ListenersNotValid", "; ".join(problems))
    if accepted is None:
        accepted = Cond("Accepted", True, "Accepted", "accepted by blixt")
    return GatewayState(key, gw, listeners, accepted, static, dynamic, pool)


def _listener_status(l: L.Listener, gs: GatewayState, old: dict, gen: int, now: str) -> dict:
    if not l.supported:
        acc = Cond("Accepted", False, "UnsupportedProtocol", f"protocol {l.protocol} is not supported; blixt serves TCP and UDP")
    elif not l.port_ok:
        acc = Cond("Accepted", False, "PortUnavailable", f"port {l.port!r} is not a valid port")
    elif l.conflicted:
        acc = Cond("Accepted", False, "PortUnavailable", f"port {l.port}/{l.protocol} is used by another listener of this Gateway")
    else:
        acc = Cond("Accepted", True, "Accepted", "")
    if l.invalid_kinds:
        refs = Cond("ResolvedRefs", False, "InvalidRouteKinds",
                    f"route kind(s) {', '.join(l.invalid_kinds)} cannot attach to a {l.protocol} listener")
    else:
        refs = Cond("ResolvedRefs", True, "ResolvedRefs", "")
    if not acc.status:
        prog = Cond("Programmed", False, "Invalid", acc.message)
    elif not gs.programmed or gs.no_resources:
        prog = Cond("Programmed", False, "Pending", "the Gateway is not programmed")
    else:
        prog = Cond("Programmed", True, "Programmed", "")
    if l.conflicted:
        conf = Cond("Conflicted", True, "ProtocolConflict", f"another listener also uses port {l.port}/{l.protocol}")
    else:
        conf = Cond("Conflicted", False, "NoConflicts", "")
    return {
        "name": l.name,
        "supportedKinds": [{"group": api_groups.GATEWAY, "kind": k} for k in l.kinds],
        "attachedRoutes": len(l.attached),
        "conditions": render([acc, refs, prog, conf], old.get("conditions"), gen, now),
    }


def status(gs: GatewayState, now: str) -> dict:
    gen = generation(gs.obj)
    old = gs.obj.get("status") or {}
    if not gs.accepted.status:
        prog = Cond("Programmed", False, "Invalid", "the Gateway is not accepted")
    elif gs.assigned is None:
        prog = Cond("Programmed", False, "Pending", "no addresses assigned yet")
    elif gs.assigned.reason:
        prog = Cond("Programmed", False, gs.assigned.reason, gs.assigned.message)
    elif gs.no_resources:
        prog = Cond("Programmed", False, "NoResources",
                    f"the dataplane maps have no room for this Gateway's frontends: {gs.no_resources}")
    else:
        prog = Cond("Programmed", True, "Programmed", "")
    old_listeners = {l.get("name"): l for l in old.get("listeners") or () if isinstance(l, dict)}
    return {
        "addresses": ([{"type": "IPAddress", "value": a} for a in gs.assigned.addresses]
                      if gs.programmed else []),
        "conditions": render([gs.accepted, prog], old.get("conditions"), gen, now, keep_foreign=True),
        "listeners": [_listener_status(l, gs, old_listeners.get(l.name) or {}, gen, now) for l in gs.listeners],
    }
