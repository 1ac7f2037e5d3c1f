"""Time the Gateway API translation at scale: 1,000 Gateways with 3 listeners
each (2 TCP, 1 UDP), 10,000 routes, a Service and an EndpointSlice of 3
endpoints per route, some cross-namespace refs behind ReferenceGrants.

    python tests/bench/translate_bench.py [--gateways N] [--routes N] [--runs N]

Prints the best and median wall time of a full translate() (statuses and
dataplane), from the first run, then with the previous run's statuses fed
back in, then as the controller and agent run it in steady state: statuses
fed back, a translate.Memo kept, one EndpointSlice replaced before each run. translate() pauses
the cyclic GC while it runs (blixt.gc_pause): left on, its passes over the
snapshot's dicts were about half of the time."""

from __future__ import annotations

import argparse
import dataclasses
import pathlib
import statistics
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "controller"))

from blixt.translate import Memo, ObjectRef, Snapshot, translate  # noqa: E402

GROUP = "gateway.networking.k8s.io"
NOW = "2025-06-01T12:00:00Z"


def meta(name, ns=None, created="2025-01-01T00:00:00Z", **extra):
    m = {"name": name, "generation": 1, "creationTimestamp": created, **extra}
    if ns:
        m["namespace"] = ns
    return m


def build(n_gateways: int, n_routes: int) -> Snapshot:
    namespaces = [f"ns-{i}" for i in range(max(1, n_gateways // 10))]
    classes = {"blixt": {"metadata": meta("blixt"), "spec": {
        "controllerName": "gateway.networking.k8s.io/blixt",
        "parametersRef": {"group": "", "kind": "ConfigMap", "name": "pool", "namespace": "blixt-system"}}}}
    config_maps = {("blixt-system", "pool"): {"metadata": meta("pool", "blixt-system"),
                                              "data": {"addresses": "10.200.0.0/16"}}}
    gateways, gw_list = {}, []
    for i in range(n_gateways):
        ns = namespaces[i % len(namespaces)]
        name = f"gw-{i}"
        gateways[(ns, name)] = {"metadata": meta(name, ns, f"2025-01-01T00:{i // 60 % 60:02d}:{i % 60:02d}Z"),
                                "spec": {"gatewayClassName": "blixt", "listeners": [
                                    {"name": "tcp-a", "port": 8000, "protocol": "TCP",
                                     "allowedRoutes": {"namespaces": {"from": "All"}}},
                                    {"name": "tcp-b", "port": 8001, "protocol": "TCP"},
                                    {"name": "udp", "port": 5300, "protocol": "UDP"}]}}
        gw_list.append((ns, name))
    tcp, udp, services, slices, grants = {}, {}, {}, {}, {}
    for ns in namespaces:
        grants[(ns, "allow-all")] = {"metadata": meta("allow-all", ns), "spec": {
            "from": [{"group": GROUP, "kind": "TCPRoute", "namespace": other} for other in namespaces[:16]],
            "to": [{"group": "", "kind": "Service"}]}}
    for r in range(n_routes):
        gns, gname = gw_list[r % len(gw_list)]
        kind = ("TCPRoute", "TCPRoute", "UDPRoute")[r % 3]
        section = ("tcp-a", "tcp-b", "udp")[r % 3]
        svc_ns = gns if r % 7 else namespaces[(r // 7) % len(namespaces)]  # every 7th crosses namespaces
        svc = f"svc-{r}"
        proto = "UDP" if kind == "UDPRoute" else "TCP"
        services[(svc_ns, svc)] = {"metadata": meta(svc, svc_ns), "spec": {
            "ports": [{"name": "p", "port": 80, "targetPort": 8080, "protocol": proto}]}}
        slices[(svc_ns, f"{svc}-x")] = {
            "metadata": meta(f"{svc}-x", svc_ns, labels={"kubernetes.io/service-name": svc}),
            "addressType": "IPv4", "ports": [{"name": "p", "port": 8080, "protocol": proto}],
            "endpoints": [{"addresses": [f"10.{(r >> 8) & 255}.{r & 255}.{e + 1}"], "conditions": {"ready": True},
                           "nodeName": f"node-{e}"} for e in range(3)]}
        route = {"metadata": meta(f"route-{r}", gns), "spec": {
            "parentRefs": [{"group": GROUP, "kind": "Gateway", "name": gname, "sectionName": section}],
            "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": svc, "namespace": svc_ns,
                                        "port": 80, "weight": 1 + r % 5}]}]}}
        (udp if kind == "UDPRoute" else tcp)[(gns, f"route-{r}")] = route
    return Snapshot(gateway_classes=classes, gateways=gateways, tcp_routes=tcp, udp_routes=udp,
                    reference_grants=grants, services=services, endpoint_slices=slices,
                    namespaces={ns: {"metadata": meta(ns)} for ns in namespaces}, config_maps=config_maps)


def with_statuses(snap: Snapshot, statuses: dict) -> Snapshot:
    def fed(objs, kind):
        return {k: {**o, "status": statuses.get(ObjectRef(kind, *k), {})} for k, o in objs.items()}
    return dataclasses.replace(snap, gateways=fed(snap.gateways, "Gateway"),
                               tcp_routes=fed(snap.tcp_routes, "TCPRoute"),
                               udp_routes=fed(snap.udp_routes, "UDPRoute"))


def timed(snap: Snapshot, runs: int):
    times, result = [], None
    for _ in range(runs):
        t0 = time.perf_counter()
        result = translate(snap, now=NOW)
        times.append(time.perf_counter() - t0)
    return times, result


def steady(snap: Snapshot, runs: int) -> list[float]:
    """Times of translations with a memo, each after one EndpointSlice was
    replaced (a new object, as the watch cache makes); the memo's first
    translation is not timed."""
    memo, times = Memo(), []
    slices = dict(snap.endpoint_slices)
    snap = dataclasses.replace(snap, endpoint_slices=slices)
    translate(snap, now=NOW, memo=memo)
    for i, key in zip(range(runs), sorted(slices)):
        slices[key] = {**slices[key], "endpoints": slices[key]["endpoints"][:-1]}
        t0 = time.perf_counter()
        translate(snap, now=NOW, memo=memo)
        times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gateways", type=int, default=1000)
    ap.add_argument("--routes", type=int, default=10000)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()

    t0 = time.perf_counter()
    snap = build(args.gateways, args.routes)
    print(f"built {args.gateways} Gateways, {args.routes} routes, {len(snap.services)} Services "
          f"in {time.perf_counter() - t0:.2f} s")

    cold, result = timed(snap, args.runs)
    accepted = sum(1 for ref, st in result.statuses.items() if ref.kind.endswith("Route")
                   and st["parents"] and st["parents"][0]["conditions"][0]["status"] == "True")
    backends = sum(len(s.backends) for s in result.dataplane.services)
    print(f"result: {len(result.statuses)} statuses, {accepted} routes accepted, "
          f"{len(result.addresses)} Gateways addressed, {len(result.dataplane.services)} dataplane services, "
          f"{backends} backends")
    fed = with_statuses(snap, result.statuses)
    warm, _ = timed(fed, args.runs)
    memo = steady(fed, args.runs)
    for label, times in (("first translation", cold), ("with statuses fed back", warm),
                         ("with a memo, one EndpointSlice changed", memo)):
        print(f"translate, {label}: best {min(times) * 1000:.0f} ms, median {statistics.median(times) * 1000:.0f} ms "
              f"over {len(times)} runs")


if __name__ == "__main__":
    main()
