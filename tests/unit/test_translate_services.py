"""blixt.translate.services: which Services a proxy serves and their
frontends (kube-proxy v1.35's reading of a Service), one test per rule."""

from __future__ import annotations

import ipaddress

import pytest

from blixt.translate import services as S

pytestmark = pytest.mark.unit


def svc(spec: dict, status: dict | None = None, labels: dict | None = None, name="web") -> dict:
    return {"metadata": {"namespace": "ns", "name": name, "labels": labels or {}},
            "spec": {"clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
                     "ports": [{"name": "http", "port": 80, "protocol": "TCP"}], **spec},
            "status": status or {}}


def rows(service) -> list[tuple]:
    return [(f.kind, str(f.address) if f.address else None, f.port, f.protocol) for f in S.frontends(service)]


def test_cluster_ip_every_port_and_protocol_same_number_two_frontends():
    s = svc({"ports": [{"name": "dns", "port": 53, "protocol": "UDP"}, {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
                       {"name": "sctp", "port": 9, "protocol": "SCTP"}]})
    assert rows(s) == [("ClusterIP", "10.96.0.10", 53, "udp"), ("ClusterIP", "10.96.0.10", 53, "tcp"),
                       ("ClusterIP", "10.96.0.10", 9, "sctp")]
    assert [f.port_name for f in S.frontends(s)] == ["dns", "dns-tcp", "sctp"]
    assert all(f.service == ("ns", "web") and not f.external for f in S.frontends(s))


def test_the_ipv4_cluster_ip_of_a_dual_stack_service():
    s = svc({"clusterIP": "fd00::10", "clusterIPs": ["fd00::10", "10.96.0.11"]})
    assert rows(s) == [("ClusterIP", "10.96.0.11", 80, "tcp")]
    assert S.frontends(svc({"clusterIP": "fd00::10", "clusterIPs": ["fd00::10"]})) == []


@pytest.mark.parametrize("spec,labels", [
    ({"clusterIP": "None", "clusterIPs": ["None"]}, {}),
    ({"clusterIP": "", "clusterIPs": []}, {}),
    ({"type": "ExternalName", "externalName": "example.com"}, {}),
    ({}, {S.PROXY_NAME_LABEL: "other-proxy"}),
    ({}, {S.HEADLESS_LABEL: ""}),
], ids=["headless", "no cluster ip", "external name", "another proxy's", "headless label"])
def test_skipped_services(spec, labels):
    s = svc(spec, labels=labels)
    assert not S.proxied(s) and S.frontends(s) == []


def test_node_port_is_a_wildcard_frontend_on_the_node_port():
    s = svc({"type": "NodePort", "ports": [{"name": "http", "port": 80, "nodePort": 30080, "protocol": "TCP"}]})
    assert rows(s) == [("ClusterIP", "10.96.0.10", 80, "tcp"), ("NodePort", None, 30080, "tcp")]
    assert S.frontends(s)[1].external


def test_load_balancer_vip_mode_ingress_ips_with_source_ranges():
    s = svc({"type": "LoadBalancer", "ports": [{"name": "http", "port": 80, "nodePort": 30080}],
             "loadBalancerSourceRanges": [" 192.0.2.0/24 ", "198.51.100.7/32", "not-a-cidr", "2001:db8::/32"]},
            {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}, {"ip": "203.0.113.2", "ipMode": "VIP"},
                                          {"ip": "203.0.113.3", "ipMode": "Proxy"}, {"hostname": "lb.example"},
                                          {"ip": "2001:db8::1"}]}})
    assert rows(s) == [("ClusterIP", "10.96.0.10", 80, "tcp"), ("NodePort", None, 30080, "tcp"),
                       ("LoadBalancer", "203.0.113.1", 80, "tcp"), ("LoadBalancer", "203.0.113.2", 80, "tcp")]
    lbs = [f for f in S.frontends(s) if f.kind == "LoadBalancer"]
    want = (ipaddress.IPv4Network("192.0.2.0/24"), ipaddress.IPv4Network("198.51.100.7/32"))
    assert all(f.source_ranges == want and f.external for f in lbs)
    # Source ranges apply to load balancer IPs only.
    assert all(f.source_ranges == () for f in S.frontends(s) if f.kind != "LoadBalancer")


def test_a_source_range_of_everything_is_no_filter():
    s = svc({"type": "LoadBalancer", "loadBalancerSourceRanges": ["192.0.2.0/24", "0.0.0.0/0"]},
            {"loadBalancer": {"ingress": [{"ip": "203.0.113.1"}]}})
    assert [f.source_ranges for f in S.frontends(s) if f.kind == "LoadBalancer"] == [()]


def test_external_ips_like_load_balancer_ips_without_source_ranges():
    s = svc({"externalIPs": ["192.0.2.50", "192.0.2.50", "2001:db8::5"], "loadBalancerSourceRanges": ["10.0.0.0/8"]})
    assert rows(s) == [("ClusterIP", "10.96.0.10", 80, "tcp"), ("ExternalIP", "192.0.2.50", 80, "tcp")]
    assert S.frontends(s)[1].external and S.frontends(s)[1].source_ranges == ()


@pytest.mark.parametrize("spec,want", [
    ({}, 0),
    ({"sessionAffinity": "None"}, 0),
    ({"sessionAffinity": "ClientIP"}, 10800),
    ({"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}, 60),
], ids=["unset", "None", "ClientIP default", "ClientIP 60 s"])
def test_session_affinity(spec, want):
    assert {f.affinity_timeout for f in S.frontends(svc(spec))} == {want}


def test_ports_with_unknown_protocols_or_numbers_are_left_out():
    s = svc({"ports": [{"name": "a", "port": 80, "protocol": "ICMP"}, {"name": "b", "port": 0},
                       {"name": "c", "port": 81}]})
    assert rows(s) == [("ClusterIP", "10.96.0.10", 81, "tcp")]
