"""TCPRoute/UDPRoute attachment to our Gateways and the route status
entries we own."""

from __future__ import annotations

from blixt import api_groups
from blixt.gateway_api import parent_ref_key

from .backends import Index, Resolution, resolve
from .conditions import Cond, render
from .gateway import GatewayState
from .model import generation, meta


def _accept(route_kind: str, route_ns: str, ref: dict, gs: GatewayState, namespaces, route_id) -> Cond:
    section, port = ref.get("sectionName"), ref.get("port")
    candidates = [l for l in gs.listeners
                  if (not section or l.name == section) and (port is None or l.port == port)]
    if not candidates:
        what = " and ".join(x for x in (section and f"sectionName {section}", port and f"port {port}") if x)
        return Cond("Accepted", False, "NoMatchingParent",
                    f"Gateway {gs.key[0]}/{gs.key[1]} has no listener" + (f" with {what}" if what else "s"))
    allowed = [l for l in candidates if l.allows(route_kind, route_ns, namespaces)]
    if not allowed:
        return Cond("Accepted", False, "NotAllowedByListeners",
                    f"no listener of Gateway {gs.key[0]}/{gs.key[1]} allows this {route_kind} (kind or namespace)")
    for l in allowed:
        l.attached.add(route_id)
    return Cond("Accepted", True, "Accepted", "")


def _refs_cond(res: Resolution) -> Cond:
    if res.reason:
        return Cond("ResolvedRefs", False, res.reason, res.message)
    return Cond("ResolvedRefs", True, "ResolvedRefs", "")


def attach(route_kind: str, route: dict, gateways: dict[tuple[str, str], GatewayState], namespaces,
           index: Index, controller_name: str, now: str) -> tuple[list[dict], Resolution | None]:
    """Our parents[] entries for this route, attaching it to listeners as a
    side effect. The Resolution is None when no parentRef is ours."""
    m = meta(route)
    ns, gen = m.get("namespace") or "", generation(route)
    route_id = (route_kind, ns, m.get("name") or "")
    old = {}
    for p in (route.get("status") or {}).get("parents") or ():
        if p.get("controllerName") == controller_name:
            old[parent_ref_key(p.get("parentRef") or {}, ns)] = p.get("conditions")
    entries, seen, res = [], set(), None
    for ref in (route.get("spec") or {}).get("parentRefs") or ():
        key = parent_ref_key(ref, ns)
        if key.group != api_groups.GATEWAY or key.kind != "Gateway" or key in seen:
            continue
        gs = gateways.get((key.namespace, key.name))
        if gs is None:  # not a Gateway of ours: its controller writes the entry
            continue
        seen.add(key)
        res = res or resolve(route_kind, route, index)
        conds = [_accept(route_kind, ns, ref, gs, namespaces, route_id), _refs_cond(res)]
        entries.append({
            "parentRef": dict(ref),
            "controllerName": controller_name,
            "conditions": render(conds, old.get(key), gen, now),
        })
    return entries, res


def has_our_entries(route: dict, controller_name: str) -> bool:
    return any(p.get("controllerName") == controller_name
               for p in (route.get("status") or {}).get("parents") or ())
