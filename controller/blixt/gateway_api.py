"""Gateway API facts that the translation and the status writer must agree
on: the route kinds blixt serves and how a route's parentRef is identified."""

from __future__ import annotations

from typing import NamedTuple

from . import api_groups

# The route kinds blixt serves, each with its field in a cache snapshot
# (blixt.translate.Snapshot, and the name of its blixt.kube.resources entry).
ROUTE_KINDS = {"TCPRoute": "tcp_routes", "UDPRoute": "udp_routes"}


class ParentRefKey(NamedTuple):
    group: str
    kind: str
    namespace: str
    name: str
    section_name: str | None
    port: int | None


def parent_ref_key(ref: dict, route_ns: str = "") -> ParentRefKey:
    """A parentRef with the API's defaults filled in, so that refs to the
    same parent compare equal. An omitted namespace means the route's; without
    route_ns it stays "" (then it differs from the same namespace spelled out)."""
    return ParentRefKey(ref.get("group", api_groups.GATEWAY), ref.get("kind") or "Gateway",
                        ref.get("namespace") or route_ns, ref.get("name") or "",
                        ref.get("sectionName") or None, ref.get("port") or None)
