"""The translation: a Snapshot of API objects in, statuses to write and the
desired dataplane out. Pure: no I/O, no clock (the caller passes `now`);
the cyclic GC is paused while it runs (blixt.gc_pause)."""

from __future__ import annotations

from blixt import gc_pause
from blixt.dataplane.fit import Budget, fit
from blixt.dataplane.model import Dataplane
from blixt.gateway_api import ROUTE_KINDS

from . import addresses, dataplane, gateway, gatewayclass, proxy, routes
from .backends import Index
from .memo import Memo
from .model import CONTROLLER_NAME, ObjectRef, Snapshot, Translation, age_key


def translate(snapshot: Snapshot, *, now: str, controller_name: str = CONTROLLER_NAME,
              node_name: str | None = None, services: proxy.ProxyOptions | None = None,
              budget: Budget | None = None, memo: Memo | None = None) -> Translation:
    """node_name: when given, backends on other nodes are masqueraded and
    local ones are not; when None (a cluster-wide view), all are.
    services: when given, Kubernetes Services are served too, for that node.
    budget: what the maps may hold (default: the default mark layout's).
    memo: kept by a caller that translates again and again (translate.memo):
    what unchanged objects gave is not made again; the result is the same."""
    with gc_pause.paused():
        return _translate(snapshot, now, controller_name, node_name, services, budget, memo)


def _translate(snapshot: Snapshot, now: str, controller_name: str, node_name: str | None,
               services: proxy.ProxyOptions | None, budget: Budget | None,
               memo: Memo | None) -> Translation:
    statuses: dict[ObjectRef, dict] = {}

    classes = {}
    for name, gwc in snapshot.gateway_classes.items():
        if (gwc.get("spec") or {}).get("controllerName") != controller_name:
            continue
        classes[name] = gatewayclass.evaluate(gwc, snapshot.config_maps)
        statuses[ObjectRef("GatewayClass", None, name)] = gatewayclass.status(gwc, classes[name], now)

    gateways = {}
    for key, gw in sorted(snapshot.gateways.items(), key=lambda kv: age_key(kv[1])):
        cls_name = (gw.get("spec") or {}).get("gatewayClassName") or ""
        if cls_name in classes:
            gateways[key] = gateway.evaluate(gw, cls_name, classes[cls_name], snapshot.config_maps)

    index = Index(snapshot)
    by_id, resolutions = {}, {}
    for kind, attr in ROUTE_KINDS.items():
        for (ns, name), route in getattr(snapshot, attr).items():
            entries, res = routes.attach(kind, route, gateways, snapshot.namespaces, index, controller_name, now)
            if entries or routes.has_our_entries(route, controller_name):
                statuses[ObjectRef(kind, ns, name)] = {"parents": entries}
            if res is not None:
                by_id[(kind, ns, name)] = route
                resolutions[(kind, ns, name)] = res

    accepted = [gs for gs in gateways.values() if gs.accepted.status]
    assigned = addresses.assign([gs.request() for gs in accepted])
    for gs in accepted:
        gs.assigned = assigned[gs.key]

    # Only what fits the maps is programmed (dataplane/fit.py): Gateways in
    # half the budget, oldest first, then Services in what they leave.
    budget = budget or Budget.of_maps()
    gw_units = dataplane.build(gateways.values(), by_id, resolutions, index, node_name,
                               memo.gateway_backends if memo is not None else None)
    gw_fit = fit(gw_units, budget.half())
    unfit: dict[ObjectRef, str] = {}
    for key, why in gw_fit.unfit.items():
        gateways[key].no_resources = why
        unfit[ObjectRef("Gateway", *key)] = why

    for key, gs in gateways.items():
        statuses[ObjectRef("Gateway", *key)] = gateway.status(gs, now)

    planes = Dataplane.of(gw_fit.kept)
    skipped: tuple[str, ...] = ()
    checks: tuple = ()
    if services is not None:
        proxied = proxy.build(snapshot.services, index.slices, services, memo.services if memo is not None else None)
        svc_fit = fit(proxied.units, budget.minus(gw_fit.used), memo.service_fit if memo is not None else None)
        unfit.update((ObjectRef("Service", *key), why) for key, why in svc_fit.unfit.items())
        planes, skipped = dataplane.merge(svc_fit.kept, planes, proxied.skipped)
        checks = proxied.health_checks
    skipped += tuple(f"{ref.kind.lower()} {ref.namespace}/{ref.name}: no room in the maps: {why}"
                     for ref, why in unfit.items())
    return Translation(
        statuses=statuses,
        dataplane=planes,
        addresses={key: list(gs.assigned.addresses) for key, gs in gateways.items() if gs.programmed},
        skipped=skipped,
        health_checks=checks,
        unfit=unfit,
    )
