import ipaddress

import pytest

from blixt.dataplane.model import MAX_WEIGHT
from blixt.translate import ObjectRef

from gwbuilders import (EARLIER, NOW, backend, basic, cond, csr, endpoint, endpoint_slice, gateway, listener,
                        parent, reference_grant, run, service, tcp_route, udp_route)

pytestmark = pytest.mark.unit

R = ObjectRef("TCPRoute", "default", "r")


def refs_cond(t, ref=R):
    (p,) = t.statuses[ref]["parents"]
    return cond(p["conditions"], "ResolvedRefs")


def weights(t):
    (svc,) = t.dataplane.services
    return {(str(b.address), b.port): b.weight for b in svc.backends}


def test_resolved_backend_reaches_the_dataplane():
    t = run(*basic(gateway(), tcp_route(), service(), endpoint_slice(endpoints=["10.1.0.1"])))
    c = refs_cond(t)
    assert (c["status"], c["reason"], c["observedGeneration"]) == ("True", "ResolvedRefs", 1)
    assert weights(t) == {("10.1.0.1", 8080): 1}


def test_missing_service_is_backend_not_found():
    t = run(*basic(gateway(), tcp_route(backends=[backend("nonexistent-service", 8080)])))
    c = refs_cond(t)
    assert (c["status"], c["reason"]) == ("False", "BackendNotFound")
    assert "default/nonexistent-service" in c["message"]
    # The route is still accepted; its listener rejects connections.
    (p,) = t.statuses[R]["parents"]
    assert csr(p["conditions"], "Accepted") == ("True", "Accepted")
    (svc,) = t.dataplane.services
    assert svc.backends == ()


def test_service_without_the_port_is_backend_not_found():
    t = run(*basic(gateway(), tcp_route(backends=[backend(port=81)]), service()))
    c = refs_cond(t)
    assert (c["status"], c["reason"]) == ("False", "BackendNotFound")
    assert "port 81" in c["message"]


def test_service_port_of_the_other_protocol_does_not_match():
    objs = basic(gateway(listeners=[listener("dns", 53, "UDP")]), udp_route(backends=[backend("dns", 53)]),
                 service("dns", ports=[("dns-tcp", 53, 53, "TCP")]))
    c = refs_cond(run(*objs), ObjectRef("UDPRoute", "default", "r"))
    assert (c["status"], c["reason"]) == ("False", "BackendNotFound")


def test_missing_port_is_reported():
    ref = backend()
    del ref["port"]
    c = refs_cond(run(*basic(gateway(), tcp_route(backends=[ref]), service())))
    assert (c["status"], c["reason"]) == ("False", "BackendNotFound")
    assert "port is required" in c["message"]


@pytest.mark.parametrize("group, kind", [("", "Pod"), ("example.com", "Backend"), ("apps", "Service")])
def test_unsupported_kinds(group, kind):
    t = run(*basic(gateway(), tcp_route(backends=[backend(kind=kind, group=group), backend()]), service(),
                   endpoint_slice(endpoints=["10.1.0.1"])))
    c = refs_cond(t)
    assert (c["status"], c["reason"]) == ("False", "InvalidKind")
    assert weights(t) == {("10.1.0.1", 8080): 1}  # the valid ref still serves


def cross(grants=(), service_exists=True):
    objs = [gateway(), tcp_route(backends=[backend("svc", ns="backends")]), *grants]
    if service_exists:
        objs += [service("svc", "backends"), endpoint_slice("svc", "backends", endpoints=["10.3.0.1"])]
    return basic(*objs)


def test_cross_namespace_without_grant_is_not_permitted():
    t = run(*cross())
    c = refs_cond(t)
    assert (c["status"], c["reason"]) == ("False", "RefNotPermitted")
    (p,) = t.statuses[R]["parents"]
    assert csr(p["conditions"], "Accepted") == ("True", "Accepted")
    assert weights(t) == {}


def test_ref_not_permitted_wins_over_backend_not_found():
    c = refs_cond(run(*cross(service_exists=False)))
    assert (c["status"], c["reason"]) == ("False", "RefNotPermitted")


@pytest.mark.parametrize("grant", [reference_grant(), reference_grant(to_name="svc")])
def test_grant_permits_the_reference(grant):
    t = run(*cross([grant]))
    assert refs_cond(t)["status"] == "True"
    assert weights(t) == {("10.3.0.1", 8080): 1}


@pytest.mark.parametrize("grant", [
    reference_grant(to_name="other"),
    reference_grant(from_kind="UDPRoute"),
    reference_grant(from_ns="elsewhere"),
    reference_grant(ns="default"),  # a grant lives in the target namespace
    reference_grant(to_kind="Secret"),
    reference_grant(from_group="example.com"),
])
def test_grants_that_do_not_cover_the_reference(grant):
    assert refs_cond(run(*cross([grant])))["reason"] == "RefNotPermitted"


def test_grant_deleted_then_added_back():
    with_grant = run(*cross([reference_grant()]), now=EARLIER)
    route_status = with_grant.statuses[R]
    objs = [o for o in cross() if o["kind"] != "TCPRoute"] + [
        tcp_route(backends=[backend("svc", ns="backends")], status=route_status)]
    without = run(*objs, now=NOW)
    c = refs_cond(without)
    assert (c["status"], c["reason"], c["lastTransitionTime"]) == ("False", "RefNotPermitted", NOW)
    assert weights(without) == {}
    back = run(*cross([reference_grant()]), now=NOW)
    assert refs_cond(back)["status"] == "True"


def test_conformance_weights_70_30_0():
    objs = basic(gateway(), tcp_route(backends=[backend("v1", 3000, weight=70), backend("v2", 3000, weight=30),
                                                backend("v3", 3000, weight=0)]))
    for name, ip in (("v1", "10.1.0.1"), ("v2", "10.2.0.1"), ("v3", "10.3.0.1")):
        objs += (service(name, ports=[("tcp", 3000, 3000, "TCP")]),
                 endpoint_slice(name, endpoints=[ip], port=3000, port_name="tcp"))
    t = run(*objs)
    assert refs_cond(t)["status"] == "True"
    assert weights(t) == {("10.1.0.1", 3000): 7, ("10.2.0.1", 3000): 3}


def test_weights_are_split_over_endpoints():
    objs = basic(gateway(), tcp_route(backends=[backend("a", weight=70), backend("b", weight=30)]),
                 service("a"), endpoint_slice("a", endpoints=["10.1.0.1", "10.1.0.2"]),
                 service("b"), endpoint_slice("b", endpoints=["10.2.0.1", "10.2.0.2", "10.2.0.3"]))
    w = weights(run(*objs))
    # 70/2 : 30/3 per endpoint -> 35 : 10 -> 7 : 2
    assert w == {("10.1.0.1", 8080): 7, ("10.1.0.2", 8080): 7,
                 ("10.2.0.1", 8080): 2, ("10.2.0.2", 8080): 2, ("10.2.0.3", 8080): 2}
    a = sum(v for (ip, _), v in w.items() if ip.startswith("10.1."))
    assert a / sum(w.values()) == pytest.approx(0.7)


def test_endpoint_in_two_refs_sums_its_weights():
    objs = basic(gateway(), tcp_route(backends=[backend("a", weight=1), backend("b", weight=1)]),
                 service("a"), endpoint_slice("a", endpoints=["10.1.0.1"]),
                 service("b"), endpoint_slice("b", endpoints=["10.1.0.1", "10.2.0.1"]))
    assert weights(run(*objs)) == {("10.1.0.1", 8080): 3, ("10.2.0.1", 8080): 1}


def test_weights_stay_within_the_dataplane_limit():
    objs = basic(gateway(), tcp_route(backends=[backend("a", weight=1_000_000), backend("b", weight=1)]),
                 service("a"), endpoint_slice("a", endpoints=["10.1.0.1"]),
                 service("b"), endpoint_slice("b", endpoints=[f"10.2.0.{i}" for i in range(1, 8)]))
    w = weights(run(*objs))
    assert max(w.values()) <= MAX_WEIGHT
    assert min(w.values()) >= 1
    # Ideal per-endpoint ratio 7,000,000 : 1 cannot fit; the share still holds.
    share = w[("10.1.0.1", 8080)] / sum(w.values())
    assert share == pytest.approx(1_000_000 / 1_000_001, abs=1e-5)


def test_all_weights_zero_means_no_backends():
    objs = basic(gateway(), tcp_route(backends=[backend(weight=0)]), service(),
                 endpoint_slice(endpoints=["10.1.0.1"]))
    t = run(*objs)
    assert refs_cond(t)["status"] == "True"
    assert weights(t) == {}


def test_endpoint_conditions():
    eps = [endpoint("10.1.0.1"), endpoint("10.1.0.2", ready=False),
           endpoint("10.1.0.3", ready=None), endpoint("10.1.0.4", ready=None, serving=True, terminating=True),
           endpoint("10.1.0.5", ready=True, terminating=False)]
    t = run(*basic(gateway(), tcp_route(), service(), endpoint_slice(endpoints=eps)))
    assert set(weights(t)) == {("10.1.0.1", 8080), ("10.1.0.3", 8080), ("10.1.0.5", 8080)}


def test_slices_of_other_services_address_types_and_duplicates():
    objs = basic(gateway(), tcp_route(), service(),
                 endpoint_slice(endpoints=["10.1.0.1"], name="s1"),
                 endpoint_slice(endpoints=["10.1.0.1", "10.1.0.2"], name="s2"),  # overlap during a rollout
                 endpoint_slice(endpoints=["fd00::1"], name="s6", address_type="IPv6"),
                 endpoint_slice("other", endpoints=["10.9.0.1"]))
    assert weights(run(*objs)) == {("10.1.0.1", 8080): 1, ("10.1.0.2", 8080): 1}


def test_named_target_port_resolves_through_the_slice_port_name():
    svc = service(ports=[("http", 80, "web", "TCP"), ("admin", 81, "admin", "TCP")])
    slices = [endpoint_slice(endpoints=["10.1.0.1"], port=8080, port_name="http", name="a"),
              endpoint_slice(endpoints=["10.1.0.2"], port=9090, port_name="http", name="b"),
              endpoint_slice(endpoints=["10.1.0.3"], port=7070, port_name="admin", name="c")]
    w = weights(run(*basic(gateway(), tcp_route(backends=[backend(port=80)]), svc, *slices)))
    assert w == {("10.1.0.1", 8080): 1, ("10.1.0.2", 9090): 1}


def test_service_with_no_endpoints_resolves_but_serves_nothing():
    t = run(*basic(gateway(), tcp_route(), service()))
    assert refs_cond(t)["status"] == "True"
    assert weights(t) == {}


def test_masquerade_depends_on_the_node():
    eps = [endpoint("10.1.0.1", node="node-a"), endpoint("10.1.0.2", node="node-b")]
    objs = basic(gateway(), tcp_route(), service(), endpoint_slice(endpoints=eps))
    (svc,) = run(*objs).dataplane.services
    assert all(b.masquerade for b in svc.backends)
    (svc,) = run(*objs, node_name="node-a").dataplane.services
    assert {str(b.address): b.masquerade for b in svc.backends} == {"10.1.0.1": False, "10.1.0.2": True}


def test_udp_route_backends():
    objs = basic(gateway(listeners=[listener("udp", 5300, "UDP")]),
                 udp_route(parents=[parent(section="udp")], backends=[backend("dns", 53)]),
                 service("dns", ports=[("dns", 53, 53, "UDP"), ("dns-tcp", 53, 53, "TCP")]),
                 endpoint_slice("dns", endpoints=["10.4.0.1"], port=53, port_name="dns", protocol="UDP", name="u"),
                 endpoint_slice("dns", endpoints=["10.4.0.9"], port=53, port_name="dns-tcp", name="t"))
    (svc,) = run(*objs).dataplane.services
    assert (svc.port, svc.protocol) == (5300, "udp")
    assert [(str(b.address), b.port) for b in svc.backends] == [("10.4.0.1", 53)]
    assert svc.backends[0].address == ipaddress.IPv4Address("10.4.0.1")
