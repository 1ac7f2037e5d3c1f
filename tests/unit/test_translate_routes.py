import pytest

from blixt.translate import CONTROLLER_NAME, ObjectRef

from gwbuilders import (EARLIER, NOW, basic, backend, cond, csr, endpoint_slice, gateway, gateway_class,
                        listener, namespace, parent, run, service, tcp_route, udp_route)

pytestmark = pytest.mark.unit

GW = ObjectRef("Gateway", "default", "gw")
R = ObjectRef("TCPRoute", "default", "r")


def three_listeners(**kw):
    return gateway(listeners=[listener("one", 9300, **kw), listener("two", 9301, **kw),
                              listener("three", 9302, **kw)])


def attached(t, gw=GW):
    return {l["name"]: l["attachedRoutes"] for l in t.statuses[gw]["listeners"]}


def parents(t, ref=R):
    return t.statuses[ref]["parents"]


def only_parent(t, ref=R):
    (p,) = parents(t, ref)
    return p


@pytest.mark.parametrize("ref, expect", [
    (parent(port=9300), {"one": 1, "two": 0, "three": 0}),
    (parent(section="two"), {"one": 0, "two": 1, "three": 0}),
    (parent(section="three", port=9302), {"one": 0, "two": 0, "three": 1}),
    (parent(), {"one": 1, "two": 1, "three": 1}),
])
def test_attach_by_port_section_both_or_all(ref, expect):
    t = run(*basic(three_listeners(), tcp_route(parents=[ref])))
    p = only_parent(t)
    assert p["controllerName"] == CONTROLLER_NAME
    assert p["parentRef"] == ref
    assert csr(p["conditions"], "Accepted") == ("True", "Accepted")
    assert attached(t) == expect


@pytest.mark.parametrize("ref", [parent(section="nope"), parent(port=1), parent(section="one", port=9301)])
def test_no_matching_parent(ref):
    t = run(*basic(three_listeners(), tcp_route(parents=[ref])))
    c = cond(only_parent(t)["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("False", "NoMatchingParent")
    assert c["observedGeneration"] == 1
    assert attached(t) == {"one": 0, "two": 0, "three": 0}


def test_parent_ref_is_copied_exactly_as_written():
    ref = parent(section="one", defaults=False)
    p = only_parent(run(*basic(three_listeners(), tcp_route(parents=[ref]))))
    assert p["parentRef"] == {"name": "gw", "sectionName": "one"}
    assert csr(p["conditions"], "Accepted") == ("True", "Accepted")


def test_tcp_route_on_a_non_tcp_listener_is_not_allowed():
    gw = gateway(listeners=[listener("only-allow-http-routes", 5300, "HTTP", kinds=["HTTPRoute"])])
    t = run(*basic(gw, tcp_route(parents=[parent(section="only-allow-http-routes")])))
    assert csr(only_parent(t)["conditions"], "Accepted") == ("False", "NotAllowedByListeners")
    assert attached(t) == {"only-allow-http-routes": 0}


def test_udp_route_on_a_tcp_listener_is_not_allowed():
    t = run(*basic(gateway(listeners=[listener("tcp", 53)]), udp_route(parents=[parent(section="tcp")])))
    assert csr(only_parent(t, ObjectRef("UDPRoute", "default", "r"))["conditions"], "Accepted") == \
        ("False", "NotAllowedByListeners")


def test_attach_all_skips_listeners_of_the_other_protocol():
    gw = gateway(listeners=[listener("t", 53), listener("u", 53, "UDP")])
    t = run(*basic(gw, udp_route()))
    assert attached(t) == {"t": 0, "u": 1}


def test_namespace_same_is_the_default():
    t = run(*basic(gateway(), tcp_route(ns="other", parents=[parent(ns="default")])))
    c = cond(only_parent(t, ObjectRef("TCPRoute", "other", "r"))["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("False", "NotAllowedByListeners")


def test_namespace_all():
    t = run(*basic(gateway(listeners=[listener(from_="All")]), tcp_route(ns="other", parents=[parent(ns="default")])))
    assert csr(only_parent(t, ObjectRef("TCPRoute", "other", "r"))["conditions"], "Accepted") == ("True", "Accepted")


@pytest.mark.parametrize("selector, allowed", [
    ({"matchLabels": {"team": "a"}}, True),
    ({"matchLabels": {"team": "b"}}, False),
    ({"matchExpressions": [{"key": "team", "operator": "In", "values": ["a", "c"]}]}, True),
    ({"matchExpressions": [{"key": "team", "operator": "NotIn", "values": ["a"]}]}, False),
    ({"matchExpressions": [{"key": "team", "operator": "Exists"}]}, True),
    ({"matchExpressions": [{"key": "env", "operator": "DoesNotExist"}]}, True),
    ({"matchExpressions": [{"key": "team", "operator": "DoesNotExist"}]}, False),
    ({"matchLabels": {"team": "a"}, "matchExpressions": [{"key": "env", "operator": "Exists"}]}, False),
    ({"matchExpressions": [{"key": "team", "operator": "Bogus", "values": ["a"]}]}, False),
    ({}, True),
])
def test_namespace_selector(selector, allowed):
    gw = gateway(listeners=[listener(from_="Selector", selector=selector)])
    t = run(*basic(gw, namespace("other", {"team": "a"}), tcp_route(ns="other", parents=[parent(ns="default")])))
    want = ("True", "Accepted") if allowed else ("False", "NotAllowedByListeners")
    assert csr(only_parent(t, ObjectRef("TCPRoute", "other", "r"))["conditions"], "Accepted") == want


def test_selector_against_a_namespace_missing_from_the_snapshot_sees_no_labels():
    gw = gateway(listeners=[listener(from_="Selector", selector={"matchLabels": {"team": "a"}})])
    t = run(*basic(gw, tcp_route(ns="other", parents=[parent(ns="default")])))
    assert csr(only_parent(t, ObjectRef("TCPRoute", "other", "r"))["conditions"], "Accepted")[0] == "False"


def test_one_allowing_listener_is_enough():
    gw = gateway(listeners=[listener("same", 1), listener("all", 2, from_="All")])
    t = run(*basic(gw, tcp_route(ns="other", parents=[parent(ns="default")])))
    assert csr(only_parent(t, ObjectRef("TCPRoute", "other", "r"))["conditions"], "Accepted") == ("True", "Accepted")
    assert attached(t) == {"same": 0, "all": 1}


def test_route_to_a_gateway_that_is_not_ours_gets_no_entry():
    t = run(*basic(gateway("theirs", cls="x"), gateway_class("x", controller="example.com/x"),
                   tcp_route(parents=[parent("theirs")])))
    assert R not in t.statuses


def test_route_to_a_missing_gateway_or_other_kind_gets_no_entry():
    svc_parent = {"group": "", "kind": "Service", "name": "gw"}
    t = run(*basic(gateway(), tcp_route(parents=[parent("ghost"), svc_parent])))
    assert R not in t.statuses


def test_stale_entries_of_ours_yield_an_empty_parents_list():
    old = {"parents": [{"parentRef": parent(), "controllerName": CONTROLLER_NAME, "conditions": []}]}
    t = run(*basic(gateway(), tcp_route(parents=[parent("ghost")], status=old)))
    assert t.statuses[R] == {"parents": []}


def test_several_parents_each_get_an_entry():
    t = run(*basic(gateway("a", listeners=[listener("x", 1)]), gateway("b", listeners=[listener("y", 2)]),
                   tcp_route(parents=[parent("a"), parent("b", section="nope")])))
    a, b = parents(t)
    assert a["parentRef"]["name"] == "a" and csr(a["conditions"], "Accepted") == ("True", "Accepted")
    assert b["parentRef"]["name"] == "b" and csr(b["conditions"], "Accepted") == ("False", "NoMatchingParent")


def test_two_refs_to_one_listener_count_the_route_once():
    t = run(*basic(gateway(), tcp_route(parents=[parent(section="tcp"), parent(port=9000)])))
    assert len(parents(t)) == 2
    assert attached(t) == {"tcp": 1}


def test_multiple_routes_on_one_listener_are_all_accepted_and_the_oldest_wins():
    objs = basic(
        gateway(listeners=[listener("tcp", 9310, kinds=["TCPRoute"], from_="Same")]),
        tcp_route("newer", created="2025-03-01T00:00:00Z", parents=[parent(section="tcp")],
                  backends=[backend("b2", 3000)]),
        tcp_route("older", created="2025-02-01T00:00:00Z", parents=[parent(section="tcp")],
                  backends=[backend("b1", 3000)]),
        service("b1", ports=[("tcp", 3000, 3000, "TCP")]), service("b2", ports=[("tcp", 3000, 3000, "TCP")]),
        endpoint_slice("b1", endpoints=["10.1.0.1"], port=3000, port_name="tcp"),
        endpoint_slice("b2", endpoints=["10.2.0.1"], port=3000, port_name="tcp"),
    )
    t = run(*objs)
    for name in ("older", "newer"):
        assert csr(only_parent(t, ObjectRef("TCPRoute", "default", name))["conditions"], "Accepted") == \
            ("True", "Accepted")
    assert attached(t) == {"tcp": 2}
    (svc,) = t.dataplane.services
    assert [str(b.address) for b in svc.backends] == ["10.1.0.1"]


def test_same_creation_time_falls_back_to_namespace_then_name():
    objs = basic(
        gateway(listeners=[listener(from_="All")]),
        tcp_route("b", ns="aaa", parents=[parent(ns="default")], backends=[backend("s1", ns=None)]),
        tcp_route("a", ns="zzz", parents=[parent(ns="default")], backends=[backend("s2")]),
        service("s1", "aaa"), endpoint_slice("s1", "aaa", endpoints=["10.1.0.1"]),
        service("s2", "zzz"), endpoint_slice("s2", "zzz", endpoints=["10.2.0.1"]),
    )
    (svc,) = run(*objs).dataplane.services
    assert [str(b.address) for b in svc.backends] == ["10.1.0.1"]


def test_route_observed_generation_and_transition_time():
    first = run(*basic(gateway(), tcp_route(generation=1)), now=EARLIER)
    second = run(*basic(gateway(), tcp_route(generation=5, status=first.statuses[R])), now=NOW)
    for c in only_parent(second)["conditions"]:
        assert c["observedGeneration"] == 5
        assert c["lastTransitionTime"] == EARLIER


def test_route_transition_time_moves_when_acceptance_changes():
    first = run(*basic(gateway(), tcp_route()), now=EARLIER)
    moved = tcp_route(generation=2, parents=[parent(section="nope")], status=first.statuses[R])
    c = cond(only_parent(run(*basic(gateway(), moved), now=NOW))["conditions"], "Accepted")
    assert (c["status"], c["lastTransitionTime"]) == ("False", NOW)


def test_routes_attach_even_while_the_gateway_is_not_programmed():
    # Attachment depends only on allowedRoutes and parentRefs.
    t = run(gateway_class(), gateway(), tcp_route())
    assert csr(t.statuses[GW]["conditions"], "Programmed") == ("False", "AddressNotAssigned")
    assert csr(only_parent(t)["conditions"], "Accepted") == ("True", "Accepted")
    assert attached(t) == {"tcp": 1}
    assert t.dataplane.services == ()
