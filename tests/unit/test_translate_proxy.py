"""blixt.translate.proxy: Services + EndpointSlices -> the frontends one node
serves, with kube-proxy v1.35's (nftables mode) choices of endpoints,
masquerade, reject and drop. One test per rule."""

from __future__ import annotations

import ipaddress

import pytest

from blixt import translate
from blixt.translate import proxy as P
from blixt.translate.model import Snapshot

pytestmark = pytest.mark.unit

NODE = "node-a"
CIDRS = (ipaddress.IPv4Network("10.244.0.0/16"),)
OPTS = P.ProxyOptions(NODE, pod_cidrs=CIDRS, node_ips=(ipaddress.IPv4Address("192.0.2.10"),))


def svc(name="web", **spec) -> dict:
    status = spec.pop("status", {})
    return {"metadata": {"namespace": "ns", "name": name},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec},
            "status": status}


def eps(*endpoints, name="web", port=8080, port_name="http", protocol="TCP", slice_name="x") -> dict:
    """endpoints: (last octet, node[, conditions])."""
    return {"metadata": {"namespace": "ns", "name": f"{name}-{slice_name}", "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4", "ports": [{"name": port_name, "port": port, "protocol": protocol}],
            "endpoints": [{"addresses": [f"10.244.0.{e[0]}"], "nodeName": e[1],
                           **({"conditions": e[2]} if len(e) > 2 else {})} for e in endpoints]}


def build(services, slices, opts=OPTS) -> dict:
    """(address or None, port, protocol, scope) -> Service."""
    snap = Snapshot(services={("ns", s["metadata"]["name"]): s for s in services},
                    endpoint_slices={("ns", s["metadata"]["name"]): s for s in slices})
    out = translate.translate(snap, now="2026-12-01T00:00:00Z", node_name=opts.node, services=opts)
    return {(str(s.address) if s.address else None, s.port, s.protocol, s.scope): s
            for s in out.dataplane.services}


def backends(s) -> set[str]:
    return {f"{b.address}:{b.port}" for b in s.backends}


LOCAL, REMOTE = (1, NODE), (2, "node-b")


def test_cluster_ip_uses_the_slice_port_of_the_same_name_and_protocol():
    out = build([svc(ports=[{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9999}])],
                [eps(LOCAL, REMOTE), eps((3, NODE), port=5353, port_name="http", protocol="UDP", slice_name="y")])
    s = out[("10.96.0.10", 80, "tcp", "any")]
    assert backends(s) == {"10.244.0.1:8080", "10.244.0.2:8080"}
    assert s.masquerade == "off-pod" and not s.drop_when_empty and len(out) == 1


def test_cluster_ip_masquerade_follows_the_options():
    slices = [eps(LOCAL)]
    assert build([svc()], slices)[("10.96.0.10", 80, "tcp", "any")].masquerade == "off-pod"
    none = P.ProxyOptions(NODE)
    assert build([svc()], slices, none)[("10.96.0.10", 80, "tcp", "any")].masquerade == ""
    every = P.ProxyOptions(NODE, pod_cidrs=CIDRS, masquerade_all=True)
    assert build([svc()], slices, every)[("10.96.0.10", 80, "tcp", "any")].masquerade == "all"


def test_no_endpoints_rejects_on_every_frontend():
    out = build([svc(type="NodePort", ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}])],
                [eps((1, NODE, {"ready": False, "serving": False}))])
    assert set(out) == {("10.96.0.10", 80, "tcp", "any"), (None, 30080, "tcp", "any")}
    assert all(not s.backends and not s.drop_when_empty for s in out.values())


def test_internal_traffic_policy_local():
    out = build([svc(internalTrafficPolicy="Local")], [eps(LOCAL, REMOTE)])
    assert backends(out[("10.96.0.10", 80, "tcp", "any")]) == {"10.244.0.1:8080"}
    out = build([svc(internalTrafficPolicy="Local")], [eps(REMOTE)])
    s = out[("10.96.0.10", 80, "tcp", "any")]
    assert not s.backends and s.drop_when_empty  # endpoints elsewhere: DROP, not REJECT


def lb(**spec):
    return svc(type="LoadBalancer", ports=[{"name": "http", "port": 80, "protocol": "TCP", "nodePort": 30080}],
               status={"loadBalancer": {"ingress": [{"ip": "198.51.100.7"}]}}, **spec)


def test_external_traffic_policy_cluster_masquerades_every_flow_to_all_endpoints():
    out = build([lb(externalIPs=["203.0.113.9"])], [eps(LOCAL, REMOTE)])
    for key in [(None, 30080, "tcp", "any"), ("198.51.100.7", 80, "tcp", "any"), ("203.0.113.9", 80, "tcp", "any")]:
        s = out[key]
        assert backends(s) == {"10.244.0.1:8080", "10.244.0.2:8080"} and s.masquerade == "all", key
    assert not any(k[3] == "pod" for k in out)


def test_external_traffic_policy_local_keeps_the_client_and_pods_get_every_endpoint():
    out = build([lb(externalTrafficPolicy="Local")], [eps(LOCAL, REMOTE)])
    for addr, port in [(None, 30080), ("198.51.100.7", 80)]:
        main, twin = out[(addr, port, "tcp", "any")], out[(addr, port, "tcp", "pod")]
        assert backends(main) == {"10.244.0.1:8080"} and main.masquerade == "" and main.drop_when_empty
        assert backends(twin) == {"10.244.0.1:8080", "10.244.0.2:8080"} and twin.masquerade == ""
    # The ClusterIP is internal traffic: Cluster policy, every endpoint.
    assert backends(out[("10.96.0.10", 80, "tcp", "any")]) == {"10.244.0.1:8080", "10.244.0.2:8080"}


def test_external_traffic_policy_local_with_endpoints_elsewhere_drops_and_without_any_rejects():
    out = build([lb(externalTrafficPolicy="Local")], [eps(REMOTE)])
    main = out[(None, 30080, "tcp", "any")]
    assert not main.backends and main.drop_when_empty
    assert backends(out[(None, 30080, "tcp", "pod")]) == {"10.244.0.2:8080"}
    out = build([lb(externalTrafficPolicy="Local")], [])
    assert not out[(None, 30080, "tcp", "any")].drop_when_empty and (None, 30080, "tcp", "pod") not in out


def test_without_pod_cidrs_the_twin_is_still_there_for_the_node_itself():
    out = build([lb(externalTrafficPolicy="Local")], [eps(LOCAL, REMOTE)], P.ProxyOptions(NODE))
    assert backends(out[(None, 30080, "tcp", "pod")]) == {"10.244.0.1:8080", "10.244.0.2:8080"}


def test_terminating_serving_endpoints_when_none_is_ready():
    out = build([svc()], [eps((1, NODE, {"ready": False, "serving": True, "terminating": True}),
                              (2, "node-b", {"ready": False, "serving": False, "terminating": True}))])
    assert backends(out[("10.96.0.10", 80, "tcp", "any")]) == {"10.244.0.1:8080"}


def test_source_ranges_apply_to_load_balancer_ips_only():
    out = build([lb(loadBalancerSourceRanges=[" 203.0.113.0/24 "])], [eps(LOCAL)])
    assert out[("198.51.100.7", 80, "tcp", "any")].source_ranges == (ipaddress.IPv4Network("203.0.113.0/24"),)
    assert out[(None, 30080, "tcp", "any")].source_ranges == ()
    assert out[("10.96.0.10", 80, "tcp", "any")].source_ranges == ()


def test_a_source_range_holding_the_node_ip_allows_the_load_balancer_ip_itself():
    out = build([lb(loadBalancerSourceRanges=["192.0.2.0/24"])], [eps(LOCAL)])
    assert out[("198.51.100.7", 80, "tcp", "any")].source_ranges == (
        ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Network("198.51.100.7/32"))


def test_affinity_on_every_frontend():
    out = build([lb(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": 60}})],
                [eps(LOCAL)])
    assert {s.affinity_timeout for s in out.values()} == {60}


@pytest.mark.parametrize("timeout", [86401, 2**31])
def test_an_affinity_timeout_beyond_a_day_reads_as_the_default(timeout):
    # The API server allows 1..86400 s; a larger one (found by
    # tests/reliability) used to make the dataplane model raise, failing the
    # whole translation.
    out = build([lb(sessionAffinity="ClientIP", sessionAffinityConfig={"clientIP": {"timeoutSeconds": timeout}})],
                [eps(LOCAL)])
    assert {s.affinity_timeout for s in out.values()} == {10800}


def test_sctp_is_skipped_with_a_reason():
    snap = Snapshot(services={("ns", "web"): svc(ports=[{"name": "s", "port": 9, "protocol": "SCTP"}])})
    out = translate.translate(snap, now="2026-12-01T00:00:00Z", node_name=NODE, services=OPTS)
    assert out.dataplane.services == () and out.skipped == ("service/ns/web:s: protocol SCTP is not supported",)


def test_two_services_on_one_load_balancer_ip_and_port_the_first_wins():
    a = lb()
    b = lb()
    b["metadata"]["name"] = "zzz"
    b["spec"]["clusterIP"] = b["spec"]["clusterIPs"][0] = "10.96.0.11"
    b["spec"]["ports"][0]["nodePort"] = 30081
    snap = Snapshot(services={("ns", "web"): a, ("ns", "zzz"): b})
    out = translate.translate(snap, now="2026-12-01T00:00:00Z", node_name=NODE, services=OPTS)
    lbs = [s for s in out.dataplane.services if str(s.address) == "198.51.100.7"]
    assert [s.name for s in lbs] == ["service/ns/web:http/LoadBalancer"]
    assert any("zzz" in n and "already served" in n for n in out.skipped)


def test_services_are_not_served_unless_asked():
    snap = Snapshot(services={("ns", "web"): svc()}, endpoint_slices={("ns", "web-x"): eps(LOCAL)})
    assert translate.translate(snap, now="2026-12-01T00:00:00Z", node_name=NODE).dataplane.services == ()


def test_health_check_node_port_counts_local_endpoint_ips():
    s = lb(externalTrafficPolicy="Local", healthCheckNodePort=32000)
    snap = Snapshot(services={("ns", "web"): s},
                    endpoint_slices={("ns", "web-x"): eps(LOCAL, (3, NODE), REMOTE,
                                                          (4, NODE, {"ready": False}))})
    out = translate.translate(snap, now="2026-12-01T00:00:00Z", node_name=NODE, services=OPTS)
    assert out.health_checks == (P.HealthCheck(32000, "ns", "web", 2),)
    # Cluster policy: no health check port is served.
    snap = Snapshot(services={("ns", "web"): lb(healthCheckNodePort=32000)})
    assert translate.translate(snap, now="2026-12-01T00:00:00Z", node_name=NODE, services=OPTS).health_checks == ()
