"""blixt.translate.endpoints: EndpointSlices -> endpoints, and kube-proxy's
choice among them (conditions, locality, topology hints). Each case is named
after the kube-proxy v1.35 TestCategorizeEndpoints case whose situation it
builds (pkg/proxy/topology_test.go); the data and assertions are ours."""

from __future__ import annotations

import ipaddress

import pytest

from blixt.translate import endpoints as E

pytestmark = pytest.mark.unit

NODE, ZONE = "node-a", "zone-a"


def ep(last: int, node: str = "node-b", ready=True, serving=True, terminating=False, zones=(), nodes=()):
    return E.Endpoint(ipaddress.IPv4Address(f"10.0.0.{last}"), 80, node, ready, serving, terminating,
                      frozenset(zones), frozenset(nodes))


def ips(eps) -> set[int]:
    return {int(str(e.ip).rsplit(".", 1)[1]) for e in eps}


def pick(eps, uses_cluster=True, uses_local=False, zone=ZONE):
    return E.select(eps, NODE, zone, uses_cluster, uses_local)


# -- topology hints ------------------------------------------------------------

def test_should_use_topology_since_all_endpoints_have_hints_and_one_is_for_the_zone():
    s = pick([ep(1, zones=["zone-a"]), ep(2, zones=["zone-b"]), ep(3, zones=["zone-a", "zone-c"])])
    assert ips(s.cluster) == {1, 3} and ips(s.reachable) == {1, 3} and s.has_any


@pytest.mark.parametrize("zone", ["", "zone-x"], ids=["empty zone label", "node in different zone"])
def test_no_zone_or_a_zone_without_hints_does_not_filter(zone):
    s = pick([ep(1, zones=["zone-a"]), ep(2, zones=["zone-b"])], zone=zone)
    assert ips(s.cluster) == {1, 2}


def test_missing_hints_no_filtering_applied():
    assert ips(pick([ep(1, zones=["zone-a"]), ep(2)]).cluster) == {1, 2}


def test_unready_endpoints_neither_vote_nor_serve():
    # An unready endpoint without hints does not stop topology; it is not used either.
    s = pick([ep(1, zones=["zone-a"]), ep(2, zones=["zone-b"]), ep(3, ready=False)])
    assert ips(s.cluster) == {1}


def test_only_unready_endpoints_in_same_zone_should_not_filter():
    s = pick([ep(1, zones=["zone-a"], ready=False), ep(2, zones=["zone-b"])])
    assert ips(s.cluster) == {2}


def test_prefer_same_node_available():
    eps = [ep(1, node=NODE, zones=["zone-a"], nodes=[NODE]), ep(2, zones=["zone-a"], nodes=["node-b"])]
    assert E.topology_mode(eps, NODE, ZONE) == E.PREFER_SAME_NODE
    assert ips(pick(eps).cluster) == {1}


def test_prefer_same_node_ignored_if_some_endpoints_unhinted():
    eps = [ep(1, node=NODE, zones=["zone-a"], nodes=[NODE]), ep(2, zones=["zone-a"])]
    assert E.topology_mode(eps, NODE, ZONE) == E.PREFER_SAME_ZONE
    assert ips(pick(eps).cluster) == {1, 2}


def test_prefer_same_node_falls_back_to_prefer_same_zone_if_no_endpoint_for_node():
    eps = [ep(1, zones=["zone-a"], nodes=["node-c"]), ep(2, zones=["zone-b"], nodes=["node-b"])]
    assert E.topology_mode(eps, NODE, ZONE) == E.PREFER_SAME_ZONE
    assert ips(pick(eps).cluster) == {1}


def test_external_traffic_policy_local_topology_ignored_for_local_endpoints():
    eps = [ep(1, node=NODE, zones=["zone-b"]), ep(2, zones=["zone-a"])]
    s = pick(eps, uses_cluster=True, uses_local=True)
    assert ips(s.cluster) == {2} and ips(s.local) == {1}
    # Topology narrowed the cluster set, so the local one is reachable besides it.
    assert ips(s.reachable) == {1, 2}


# -- conditions ----------------------------------------------------------------

def test_cluster_traffic_policy_endpoints_not_ready():
    s = pick([ep(1, ready=False), ep(2, ready=False, serving=False)])
    assert s.cluster == () and not s.has_any


def test_cluster_traffic_policy_some_endpoints_are_ready():
    assert ips(pick([ep(1, ready=False), ep(2)]).cluster) == {2}


def test_cluster_traffic_policy_all_endpoints_are_terminating():
    s = pick([ep(1, ready=False, serving=True, terminating=True),
              ep(2, ready=False, serving=False, terminating=True)])
    assert ips(s.cluster) == {1} and s.has_any  # serving and terminating; never non-serving


def test_ready_endpoints_win_over_serving_terminating_ones():
    assert ips(pick([ep(1, ready=False, terminating=True), ep(2)]).cluster) == {2}


# -- locality --------------------------------------------------------------------

def test_internal_traffic_policy_local_with_empty_endpoints():
    assert pick([], uses_cluster=False, uses_local=True) == E.Selection()


def test_internal_traffic_policy_local_but_all_endpoints_are_remote():
    s = pick([ep(1), ep(2)], uses_cluster=False, uses_local=True)
    assert s.local == () and s.reachable == () and s.cluster == ()
    assert s.has_any  # endpoints exist elsewhere: DROP, not REJECT


@pytest.mark.parametrize("nodes,want", [([NODE, NODE], {1, 2}), ([NODE, "node-b"], {1})],
                         ids=["all endpoints are local", "some endpoints are local"])
def test_internal_traffic_policy_local(nodes, want):
    s = pick([ep(1, node=nodes[0]), ep(2, node=nodes[1])], uses_cluster=False, uses_local=True)
    assert ips(s.local) == want and ips(s.reachable) == want and s.cluster == ()


def test_itp_local_etp_local_all_endpoints_remote_and_terminating():
    s = pick([ep(1, ready=False, terminating=True), ep(2, ready=False, terminating=True)],
             uses_cluster=False, uses_local=True)
    assert s.local == () and s.has_any


def test_itp_cluster_etp_local_with_terminating_endpoints():
    # No local endpoint is ready: the local set falls back to the local
    # serving-terminating one, independently of the cluster set.
    eps = [ep(1, node=NODE, ready=False, terminating=True), ep(2), ep(3, node=NODE, ready=False, serving=False)]
    s = pick(eps, uses_cluster=True, uses_local=True)
    assert ips(s.cluster) == {2} and ips(s.local) == {1} and ips(s.reachable) == {1, 2}


def test_itp_cluster_etp_local_some_endpoints_local():
    s = pick([ep(1, node=NODE), ep(2)], uses_cluster=True, uses_local=True)
    assert ips(s.cluster) == {1, 2} and ips(s.local) == {1} and ips(s.reachable) == {1, 2}


def test_an_empty_node_name_is_never_local():
    assert E.select([ep(1, node="")], "", "", uses_cluster=False, uses_local=True).local == ()


# -- traffic policies --------------------------------------------------------------

@pytest.mark.parametrize("spec,want", [
    ({"type": "ClusterIP"}, (True, False)),
    ({"type": "ClusterIP", "internalTrafficPolicy": "Local"}, (False, True)),
    ({"type": "NodePort", "externalTrafficPolicy": "Local"}, (True, True)),
    ({"type": "LoadBalancer", "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Cluster"}, (True, True)),
    ({"type": "LoadBalancer", "internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local"}, (False, True)),
    # externalTrafficPolicy ignored if not externally accessible ...
    ({"type": "ClusterIP", "externalTrafficPolicy": "Local"}, (True, False)),
    # ... and honoured for externalIPs.
    ({"type": "ClusterIP", "externalIPs": ["192.0.2.1"], "externalTrafficPolicy": "Local"}, (True, True)),
], ids=["cluster", "itp local", "etp local", "itp local etp cluster", "itp local etp local",
        "etp ignored when not external", "externalIPs are external"])
def test_traffic_policies(spec, want):
    assert E.traffic_policies({"spec": spec}) == want


# -- from slices ---------------------------------------------------------------------

def slice_(name, eps, port=8080, pname="http", proto="TCP", family="IPv4"):
    return {"metadata": {"name": name}, "addressType": family,
            "ports": [{"name": pname, "port": port, "protocol": proto}], "endpoints": eps}


def test_from_slices_reads_conditions_hints_and_the_named_port():
    slices = [slice_("s1", [
        {"addresses": ["10.0.0.1"], "nodeName": NODE},
        {"addresses": ["10.0.0.2"], "conditions": {"ready": False, "serving": True, "terminating": True},
         "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "node-b"}]}},
        {"addresses": []},
        {"addresses": ["fe80::1"]},
    ]), slice_("s2", [{"addresses": ["10.0.0.3"]}], pname="other"),
        slice_("s3", [{"addresses": ["10.0.0.4"]}], proto="UDP"),
        slice_("s4", [{"addresses": ["10.0.0.5"]}], family="IPv6")]
    got = E.from_slices(slices, "http", "TCP", NODE)
    assert [(str(e.ip), e.port) for e in got] == [("10.0.0.1", 8080), ("10.0.0.2", 8080)]
    first, second = got
    assert (first.ready, first.serving, first.terminating, first.local(NODE)) == (True, True, False, True)
    assert (second.ready, second.serving, second.terminating) == (False, True, True)
    assert second.zone_hints == {"zone-a"} and second.node_hints == {"node-b"}


def test_from_slices_a_duplicate_is_taken_once_preferring_this_nodes_copy():
    a = {"addresses": ["10.0.0.1"], "nodeName": "node-b", "conditions": {"ready": False}}
    b = {"addresses": ["10.0.0.1"], "nodeName": NODE}
    got = E.from_slices([slice_("s1", [a]), slice_("s2", [b])], "http", "TCP", NODE)
    assert len(got) == 1 and got[0].node == NODE and got[0].ready
    got = E.from_slices([slice_("s1", [b]), slice_("s2", [a])], "http", "TCP", NODE)
    assert len(got) == 1 and got[0].node == NODE


def test_a_slice_port_out_of_range_is_ignored():
    assert E.from_slices([slice_("s1", [{"addresses": ["10.0.0.1"]}], port=0)], "http", "TCP") == ()
