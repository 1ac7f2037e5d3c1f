"""Listener validation: which protocols and route kinds we serve, and which
listeners conflict."""

from __future__ import annotations

import collections
import dataclasses

from blixt import api_groups

from .model import is_int, meta
from .selectors import matches

# Listener protocol -> (dataplane protocol, the one route kind it carries).
PROTOCOLS = {"TCP": ("tcp", "TCPRoute"), "UDP": ("udp", "UDPRoute")}


@dataclasses.dataclass
class Listener:
    name: str
    port: int
    protocol: str
    gateway_ns: str
    spec: dict
    kinds: list[str] = dataclasses.field(default_factory=list)  # supported, in spec order
    invalid_kinds: list[str] = dataclasses.field(default_factory=list)
    conflicted: bool = False
    attached: set = dataclasses.field(default_factory=set)  # (kind, ns, name) of routes

    @property
    def supported(self) -> bool:
        return self.protocol in PROTOCOLS

    @property
    def port_ok(self) -> bool:
        # The CRD enforces this; checked so one bad object cannot fail the whole translation.
        return is_int(self.port) and 1 <= self.port <= 65535

    @property
    def accepted(self) -> bool:
        return self.supported and self.port_ok and not self.conflicted

    @property
    def proto(self) -> str:
        return PROTOCOLS[self.protocol][0]

    def allows(self, route_kind: str, route_ns: str, namespaces) -> bool:
        if route_kind not in self.kinds:
            return False
        policy = (self.spec.get("allowedRoutes") or {}).get("namespaces") or {}
        frm = policy.get("from") or "Same"
        if frm == "All":
            return True
        if frm == "Same":
            return route_ns == self.gateway_ns
        if frm == "Selector":
            ns = namespaces.get(route_ns) or {}
            return matches(policy.get("selector"), meta(ns).get("labels") or {})
        return False


def _kinds(listener: Listener) -> None:
    native = PROTOCOLS.get(listener.protocol, (None, None))[1]
    wanted = (listener.spec.get("allowedRoutes") or {}).get("kinds") or []
    if not wanted:
        listener.kinds = [native] if native else []
        return
    for k in wanted:
        group = k.get("group", api_groups.GATEWAY)
        kind = k.get("kind") or ""
        if group == api_groups.GATEWAY and kind == native:
            if kind not in listener.kinds:
                listener.kinds.append(kind)
        else:
            listener.invalid_kinds.append(f"{group}/{kind}" if group else kind)


def evaluate(gw: dict) -> list[Listener]:
    ns = meta(gw).get("namespace") or ""
    out = []
    for spec in (gw.get("spec") or {}).get("listeners") or ():
        listener = Listener(spec.get("name") or "", spec.get("port") or 0, spec.get("protocol") or "", ns, spec)
        _kinds(listener)
        out.append(listener)
    # Same port and protocol cannot be told apart at L4: none of them may win.
    groups = collections.Counter((l.port, l.protocol) for l in out if l.supported and l.port_ok)
    for listener in out:
        listener.conflicted = groups[(listener.port, listener.protocol)] > 1 and listener.supported and listener.port_ok
    return out
