"""TCPRoute* and UDPRoute* scenarios of the upstream v1.6.1 suite, each run
for both route kinds (UDPRoute-only ones at the end)."""

from __future__ import annotations

import time

import pytest

from harness.scenario import Scenario

KINDS = [pytest.param("TCP", "TCPRoute", id="TCPRoute"), pytest.param("UDP", "UDPRoute", id="UDPRoute")]
L = Scenario.listener
ACCEPTED = ("True", "Accepted")
RESOLVED = ("True", "ResolvedRefs")


def backend(name, port=8080, weight=None, namespace=None):
    ref = {"name": name, "port": port}
    if weight is not None:
        ref["weight"] = weight
    if namespace:
        ref["namespace"] = namespace
    return ref


@pytest.mark.parametrize("proto,kind", KINDS)
def test_invalid_backend_ref_nonexistent(sc, proto, kind):
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("l", proto, 9000)])
    sc.route(kind, ns, "r", [{"name": "gw"}], [backend("does-not-exist")])
    sc.wait_route(kind, ns, "r", {"Accepted": ACCEPTED, "ResolvedRefs": ("False", "BackendNotFound")})
    # Nothing to send to: the listener rejects.
    sc.wait_traffic(proto, sc.address(ns, "gw"), 9000, set())


@pytest.mark.parametrize("proto,kind", KINDS)
def test_invalid_cross_namespace_backend_ref(sc, proto, kind):
    ns, other = sc.namespace("a"), sc.namespace("b")
    sc.gateway(ns, "gw", [L("l", proto, 9000)])
    sc.service(other, "svc", [0], proto)
    sc.route(kind, ns, "r", [{"name": "gw"}], [backend("svc", namespace=other)])
    sc.wait_route(kind, ns, "r", {"Accepted": ACCEPTED, "ResolvedRefs": ("False", "RefNotPermitted")})
    sc.wait_traffic(proto, sc.address(ns, "gw"), 9000, set())


@pytest.mark.parametrize("proto,kind", KINDS)
def test_invalid_listener_protocol(sc, proto, kind):
    """TCPRouteInvalidNonTCPListener (and its UDP twin): a route aimed by
    sectionName at a listener of another protocol is not accepted."""
    ns = sc.namespace("a")
    other = "UDP" if proto == "TCP" else "TCP"
    sc.gateway(ns, "gw", [L("http", "HTTP", 5300), L("mine", proto, 9000), L("other", other, 9001)])
    sc.service(ns, "svc", [0], proto)
    sc.route(kind, ns, "r", [{"name": "gw", "sectionName": "http"}], [backend("svc")])
    sc.wait_route(kind, ns, "r", {"Accepted": ("False", "NotAllowedByListeners")})
    sc.route(kind, ns, "r2", [{"name": "gw", "sectionName": "other"}], [backend("svc")])
    sc.wait_route(kind, ns, "r2", {"Accepted": ("False", "NotAllowedByListeners")})


@pytest.mark.parametrize("proto,kind", KINDS)
def test_multiple_routes_attachment(sc, proto, kind):
    """Both routes are Accepted and counted; the older one carries the traffic."""
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("l", proto, 9000)])
    sc.service(ns, "old", [0], proto)
    sc.service(ns, "new", [1], proto)
    # Named against the grain, so only creationTimestamp (whole seconds) can
    # make "z-older" win the tie-break.
    sc.route(kind, ns, "z-older", [{"name": "gw"}], [backend("old")])
    sc.wait_route(kind, ns, "z-older", {"Accepted": ACCEPTED})
    time.sleep(1.1)
    sc.route(kind, ns, "a-newer", [{"name": "gw"}], [backend("new")])
    for r in ("z-older", "a-newer"):
        sc.wait_route(kind, ns, r, {"Accepted": ACCEPTED, "ResolvedRefs": RESOLVED})
    sc.node.wait_for("listener counts two attached routes",
                     lambda: sc.get("gateway", ns, "gw")["status"]["listeners"][0]["attachedRoutes"] == 2)
    sc.wait_traffic(proto, sc.address(ns, "gw"), 9000, {"pod0"})


@pytest.mark.parametrize("proto,kind", KINDS)
def test_parent_ref_attach_all(sc, proto, kind):
    """A parentRef without sectionName or port attaches to every listener
    that allows the route."""
    ns = sc.namespace("a")
    other = "UDP" if proto == "TCP" else "TCP"
    sc.gateway(ns, "gw", [L("l1", proto, 9000), L("l2", proto, 9001), L("x", other, 9002)])
    sc.service(ns, "svc", [2], proto)
    sc.route(kind, ns, "r", [{"name": "gw"}], [backend("svc")])
    sc.wait_route(kind, ns, "r", {"Accepted": ACCEPTED, "ResolvedRefs": RESOLVED})
    addr = sc.address(ns, "gw")
    for port in (9000, 9001):
        sc.wait_traffic(proto, addr, port, {"pod2"})
    counts = {l["name"]: l["attachedRoutes"] for l in sc.get("gateway", ns, "gw")["status"]["listeners"]}
    assert counts == {"l1": 1, "l2": 1, "x": 0}


@pytest.mark.parametrize("proto,kind", KINDS)
def test_parent_ref_port_and_section_name(sc, proto, kind):
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("a", proto, 9000), L("b", proto, 9001), L("c", proto, 9002)])
    for i in range(3):
        sc.service(ns, f"s{i}", [i], proto)
    sc.route(kind, ns, "by-section", [{"name": "gw", "sectionName": "a"}], [backend("s0")])
    sc.route(kind, ns, "by-port", [{"name": "gw", "port": 9001}], [backend("s1")])
    sc.route(kind, ns, "by-both", [{"name": "gw", "sectionName": "c", "port": 9002}], [backend("s2")])
    sc.route(kind, ns, "mismatch", [{"name": "gw", "sectionName": "a", "port": 9001}], [backend("s2")])
    for r in ("by-section", "by-port", "by-both"):
        sc.wait_route(kind, ns, r, {"Accepted": ACCEPTED})
    sc.wait_route(kind, ns, "mismatch", {"Accepted": ("False", "NoMatchingParent")})
    addr = sc.address(ns, "gw")
    for port, pod in ((9000, "pod0"), (9001, "pod1"), (9002, "pod2")):
        sc.wait_traffic(proto, addr, port, {pod})


@pytest.mark.parametrize("proto,kind", KINDS)
def test_reference_grant(sc, proto, kind):
    ns, other = sc.namespace("a"), sc.namespace("b")
    sc.gateway(ns, "gw", [L("l", proto, 9000)])
    sc.service(other, "svc", [1], proto)
    sc.grant(other, "allow", kind, ns, to_name="svc")
    sc.route(kind, ns, "r", [{"name": "gw"}], [backend("svc", namespace=other)])
    sc.wait_route(kind, ns, "r", {"Accepted": ACCEPTED, "ResolvedRefs": RESOLVED})
    addr = sc.address(ns, "gw")
    sc.wait_traffic(proto, addr, 9000, {"pod1"})
    sc.delete("ReferenceGrant", other, "allow")
    sc.wait_route(kind, ns, "r", {"ResolvedRefs": ("False", "RefNotPermitted")})
    sc.wait_traffic(proto, addr, 9000, set())


@pytest.mark.parametrize("proto,kind", KINDS)
def test_weighted_routing(sc, proto, kind):
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("l", proto, 9000)])
    for i in range(3):
        sc.service(ns, f"s{i}", [i], proto)
    sc.route(kind, ns, "r", [{"name": "gw"}],
             [backend("s0", weight=70), backend("s1", weight=30), backend("s2", weight=0)])
    sc.wait_route(kind, ns, "r", {"Accepted": ACCEPTED, "ResolvedRefs": RESOLVED})
    addr = sc.address(ns, "gw")
    sc.wait_traffic(proto, addr, 9000, {"pod0", "pod1"})
    got = sc.who(proto, addr, 9000, count=500, sport_base=41000)
    assert got["pod2"] == 0 and "<error>" not in got, got
    assert 0.65 <= got["pod0"] / 500 <= 0.75, got


def test_udproute_simple(sc):
    """UDPRoute (the upstream "UDPRoute" test): a route to one Service."""
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("dns", "UDP", 5353)])
    sc.service(ns, "svc", [0, 1], "UDP")
    sc.route("UDPRoute", ns, "r", [{"name": "gw", "sectionName": "dns"}], [backend("svc")])
    sc.wait_route("UDPRoute", ns, "r", {"Accepted": ACCEPTED, "ResolvedRefs": RESOLVED})
    sc.wait_traffic("UDP", sc.address(ns, "gw"), 5353, {"pod0", "pod1"})


@pytest.mark.parametrize("proto,kind", KINDS)
def test_not_allowed_by_listeners(sc, proto, kind):
    """UDPRouteNotAllowedByListeners (and the TCP twin): namespaces Same and
    Selector keep a route from another namespace out; All lets it in."""
    gw_ns = sc.namespace("gw")
    route_ns = sc.namespace("routes", labels={"blixt-test": "allowed"})
    stranger = sc.namespace("stranger")
    sc.gateway(gw_ns, "same", [L("l", proto, 9000, from_="Same")])
    sc.gateway(gw_ns, "sel", [L("l", proto, 9000, from_="Selector",
                                selector={"matchLabels": {"blixt-test": "allowed"}})])
    sc.gateway(gw_ns, "all", [L("l", proto, 9000, from_="All")])
    for ns in (route_ns, stranger):
        sc.service(ns, "svc", [0], proto)
    sc.route(kind, route_ns, "r", [{"name": g, "namespace": gw_ns} for g in ("same", "sel", "all")],
             [backend("svc")])
    sc.route(kind, stranger, "r", [{"name": "sel", "namespace": gw_ns}], [backend("svc")])
    sc.wait_route(kind, route_ns, "r", {"Accepted": ("False", "NotAllowedByListeners")}, parent="same")
    sc.wait_route(kind, route_ns, "r", {"Accepted": ACCEPTED}, parent="sel")
    sc.wait_route(kind, route_ns, "r", {"Accepted": ACCEPTED}, parent="all")
    sc.wait_route(kind, stranger, "r", {"Accepted": ("False", "NotAllowedByListeners")}, parent="sel")
    sc.wait_traffic(proto, sc.address(gw_ns, "all"), 9000, {"pod0"})
    sc.wait_traffic(proto, sc.address(gw_ns, "same"), 9000, set())
