import pytest

from blixt.translate import ObjectRef

from gwbuilders import (EARLIER, GROUP, NOW, basic, config_map, cond, csr, gateway, gateway_class, listener,
                        pool_ref, run)

pytestmark = pytest.mark.unit

GW = ObjectRef("Gateway", "default", "gw")


def listeners_by_name(st):
    return {l["name"]: l for l in st["listeners"]}


def test_gateway_of_another_class_gets_no_status():
    t = run(*basic(gateway(cls="other")), gateway_class(name="other", controller="example.com/x"))
    assert GW not in t.statuses
    assert t.dataplane.services == ()


def test_gateway_of_a_missing_class_gets_no_status():
    t = run(*basic(gateway(cls="nope")))
    assert GW not in t.statuses


def test_valid_gateway_is_accepted_and_programmed_with_every_listener_condition():
    t = run(*basic(gateway(generation=4, listeners=[listener("a", 80), listener("b", 53, "UDP")])))
    st = t.statuses[GW]
    assert csr(st["conditions"], "Accepted") == ("True", "Accepted")
    assert csr(st["conditions"], "Programmed") == ("True", "Programmed")
    assert all(c["observedGeneration"] == 4 for c in st["conditions"])
    ls = listeners_by_name(st)
    assert ls["a"]["supportedKinds"] == [{"group": GROUP, "kind": "TCPRoute"}]
    assert ls["b"]["supportedKinds"] == [{"group": GROUP, "kind": "UDPRoute"}]
    for l in ls.values():
        assert {c["type"] for c in l["conditions"]} == {"Accepted", "ResolvedRefs", "Programmed", "Conflicted"}
        assert all(c["observedGeneration"] == 4 for c in l["conditions"])
        assert csr(l["conditions"], "Accepted") == ("True", "Accepted")
        assert csr(l["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")
        assert csr(l["conditions"], "Programmed") == ("True", "Programmed")
        assert csr(l["conditions"], "Conflicted") == ("False", "NoConflicts")
        assert l["attachedRoutes"] == 0


def test_only_unsupported_protocols_reject_the_gateway():
    st = run(*basic(gateway(listeners=[listener("invalid", 1111, "INVALID")]))).statuses[GW]
    assert csr(st["conditions"], "Accepted") == ("False", "ListenersNotValid")
    assert csr(st["conditions"], "Programmed") == ("False", "Invalid")
    l = st["listeners"][0]
    assert l["supportedKinds"] == []
    assert csr(l["conditions"], "Accepted") == ("False", "UnsupportedProtocol")
    assert csr(l["conditions"], "Programmed") == ("False", "Invalid")
    assert st["addresses"] == []


def test_some_unsupported_protocols_accept_the_gateway_with_listeners_not_valid():
    t = run(*basic(gateway(listeners=[listener("tcp", 80), listener("http", 8080, "HTTP")])))
    st = t.statuses[GW]
    c = cond(st["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("True", "ListenersNotValid")
    assert "http" in c["message"]
    assert csr(st["conditions"], "Programmed") == ("True", "Programmed")
    ls = listeners_by_name(st)
    assert csr(ls["http"]["conditions"], "Accepted") == ("False", "UnsupportedProtocol")
    assert ls["http"]["supportedKinds"] == []
    assert csr(ls["tcp"]["conditions"], "Programmed") == ("True", "Programmed")
    assert [(s.port, s.protocol) for s in t.dataplane.services] == [(80, "tcp")]


def test_same_port_and_protocol_conflict_and_neither_wins():
    t = run(*basic(gateway(listeners=[listener("a", 80), listener("b", 80), listener("c", 80, "UDP")])))
    st = t.statuses[GW]
    ls = listeners_by_name(st)
    for name in "ab":
        assert csr(ls[name]["conditions"], "Conflicted") == ("True", "ProtocolConflict")
        assert csr(ls[name]["conditions"], "Accepted") == ("False", "PortUnavailable")
        assert csr(ls[name]["conditions"], "Programmed") == ("False", "Invalid")
    # TCP and UDP on one port are distinct listeners.
    assert csr(ls["c"]["conditions"], "Conflicted") == ("False", "NoConflicts")
    assert csr(ls["c"]["conditions"], "Accepted") == ("True", "Accepted")
    assert csr(st["conditions"], "Accepted") == ("True", "ListenersNotValid")
    assert [(s.port, s.protocol) for s in t.dataplane.services] == [(80, "udp")]


def test_only_conflicted_listeners_reject_the_gateway():
    st = run(*basic(gateway(listeners=[listener("a", 80), listener("b", 80)]))).statuses[GW]
    assert csr(st["conditions"], "Accepted") == ("False", "ListenersNotValid")


def test_invalid_route_kinds_only():
    st = run(*basic(gateway(listeners=[listener(kinds=["InvalidRoute", "UDPRoute"])]))).statuses[GW]
    l = st["listeners"][0]
    c = cond(l["conditions"], "ResolvedRefs")
    assert (c["status"], c["reason"]) == ("False", "InvalidRouteKinds")
    assert "InvalidRoute" in c["message"] and "UDPRoute" in c["message"]
    assert l["supportedKinds"] == []


def test_invalid_and_valid_route_kinds_keep_the_valid_one():
    kinds = ["InvalidRoute", {"group": "example.com", "kind": "TCPRoute"}, "TCPRoute", "TCPRoute"]
    st = run(*basic(gateway(listeners=[listener(kinds=kinds)]))).statuses[GW]
    l = st["listeners"][0]
    assert csr(l["conditions"], "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert l["supportedKinds"] == [{"group": GROUP, "kind": "TCPRoute"}]
    assert csr(l["conditions"], "Accepted") == ("True", "Accepted")


def test_kind_without_group_defaults_to_gateway_api_group():
    st = run(*basic(gateway(listeners=[listener(kinds=[{"kind": "TCPRoute"}])]))).statuses[GW]
    assert csr(st["listeners"][0]["conditions"], "ResolvedRefs") == ("True", "ResolvedRefs")


def test_unsupported_protocol_with_kinds_reports_invalid_route_kinds():
    # The conformance GatewayInvalidRouteKind case, on a protocol we do not serve.
    l = run(*basic(gateway(listeners=[listener("http", 80, "HTTP", kinds=["InvalidRoute"])]))).statuses[GW]["listeners"][0]
    assert csr(l["conditions"], "ResolvedRefs") == ("False", "InvalidRouteKinds")
    assert l["supportedKinds"] == []


def test_gateway_of_a_rejected_class_is_not_accepted():
    t = run(gateway_class(params=pool_ref(name="missing")), gateway())
    st = t.statuses[GW]
    c = cond(st["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("False", "Invalid")
    assert "not found" in c["message"]
    assert csr(st["conditions"], "Programmed") == ("False", "Invalid")
    assert t.dataplane.services == () and t.addresses == {}


@pytest.mark.parametrize("params, fragment", [
    ({"group": "invalid.io", "kind": "InvalidParameters", "name": "invalid"}, "core/v1 ConfigMap"),
    ({"group": "", "kind": "ConfigMap", "name": "absent"}, "default/absent not found"),
])
def test_invalid_gateway_parameters(params, fragment):
    st = run(*basic(gateway(infra_params=params))).statuses[GW]
    c = cond(st["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("False", "InvalidParameters")
    assert fragment in c["message"]


def test_gateway_parameters_pool_replaces_the_class_pool():
    t = run(*basic(gateway(infra_params={"group": "", "kind": "ConfigMap", "name": "mine"}),
                   config_map("mine", "default", "192.168.7.7")))
    assert t.addresses == {("default", "gw"): ["192.168.7.7"]}


def test_unsupported_address_type_rejects_the_gateway():
    addrs = [{"type": "test/fake-invalid-type", "value": "fake"}, "10.9.9.9"]
    st = run(*basic(gateway(addresses=addrs))).statuses[GW]
    c = cond(st["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("False", "UnsupportedAddress")
    assert "test/fake-invalid-type" in c["message"]
    assert st["addresses"] == []


def test_hostname_address_is_unsupported():
    st = run(*basic(gateway(addresses=[{"type": "Hostname", "value": "lb.example.com"}]))).statuses[GW]
    assert csr(st["conditions"], "Accepted") == ("False", "UnsupportedAddress")


def test_observed_generation_bump_and_transition_times():
    first = run(*basic(gateway(generation=1)), now=EARLIER).statuses[GW]
    second = run(*basic(gateway(generation=2, status=first)), now=NOW).statuses[GW]
    for c in second["conditions"] + second["listeners"][0]["conditions"]:
        assert c["observedGeneration"] == 2
        assert c["lastTransitionTime"] == EARLIER, c


def test_transition_time_moves_only_for_changed_conditions():
    first = run(*basic(gateway(listeners=[listener("a", 80), listener("b", 81)])), now=EARLIER).statuses[GW]
    # b now conflicts with a: no listener is left valid, so the Gateway's Accepted
    # flips and its time moves; b's untouched ResolvedRefs keeps its time.
    second = run(*basic(gateway(generation=2, status=first, listeners=[listener("a", 80), listener("b", 80)])),
                 now=NOW).statuses[GW]
    acc = cond(second["conditions"], "Accepted")
    assert (acc["status"], acc["reason"], acc["lastTransitionTime"]) == ("False", "ListenersNotValid", NOW)
    b = listeners_by_name(second)["b"]
    assert cond(b["conditions"], "Conflicted")["lastTransitionTime"] == NOW
    assert cond(b["conditions"], "ResolvedRefs")["lastTransitionTime"] == EARLIER


def test_foreign_gateway_conditions_are_preserved():
    other = {"type": "example.com/Scanned", "status": "True", "reason": "Ok", "message": "",
             "observedGeneration": 1, "lastTransitionTime": EARLIER}
    st = run(*basic(gateway(status={"conditions": [other]}))).statuses[GW]
    assert other in st["conditions"]
    assert {"Accepted", "Programmed"} <= {c["type"] for c in st["conditions"]}


def test_class_without_pool_and_static_address_is_programmed():
    t = run(gateway_class(), gateway(addresses=["192.0.2.10"]))
    assert csr(t.statuses[GW]["conditions"], "Programmed") == ("True", "Programmed")
    assert t.statuses[GW]["addresses"] == [{"type": "IPAddress", "value": "192.0.2.10"}]


def test_invalid_listener_port_is_rejected_without_failing_the_translation():
    t = run(*basic(gateway(listeners=[listener("bad", 0), listener("ok", 80)])))
    ls = listeners_by_name(t.statuses[GW])
    assert csr(ls["bad"]["conditions"], "Accepted") == ("False", "PortUnavailable")
    assert [s.port for s in t.dataplane.services] == [80]


def test_a_boolean_port_is_not_a_port():
    """JSON true is no integer (Python's bool is an int: the translation must not take it for 1)."""
    st = run(*basic(gateway(listeners=[listener("t", True)]))).statuses[ObjectRef("Gateway", "default", "gw")]
    (l,) = st["listeners"]
    assert csr(l["conditions"], "Accepted")[1] == "PortUnavailable"
