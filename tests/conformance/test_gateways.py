"""Core Gateway and GatewayClass scenarios of the upstream v1.6.1 suite,
with L4 listeners."""

from __future__ import annotations

import json

from harness.scenario import GROUP, Scenario

L = Scenario.listener


def test_gatewayclass_observed_generation_bump(sc):
    name = f"{sc.prefix}-class"
    sc.create({"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": name},
               "spec": {"controllerName": "gateway.networking.k8s.io/blixt", "description": "before"}})

    def accepted_at_current_generation():
        gwc = sc.get("gatewayclass", None, name)
        conds = gwc.get("status", {}).get("conditions", [])
        ok = [c for c in conds if c["type"] == "Accepted" and c["status"] == "True"
              and c["observedGeneration"] == gwc["metadata"]["generation"]]
        return gwc["metadata"]["generation"] if ok else None

    first = sc.node.wait_for("GatewayClass Accepted", accepted_at_current_generation)
    sc.node.cluster.kubectl("patch", "gatewayclass", name, "--type=merge", "-p",
                            json.dumps({"spec": {"description": "after"}}))
    second = sc.node.wait_for("observedGeneration follows the bump",
                              lambda: (g := accepted_at_current_generation()) and g > first and g)
    assert second == first + 1
    features = {f["name"] for f in sc.get("gatewayclass", None, name)["status"]["supportedFeatures"]}
    assert {"Gateway", "TCPRoute", "UDPRoute", "ReferenceGrant"} <= features


def test_gateway_observed_generation_bump(sc):
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("l", "TCP", 9000)])
    gw = sc.wait_gateway(ns, "gw", {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")})
    gen = gw["metadata"]["generation"]
    sc.gateway(ns, "gw", [L("l", "TCP", 9000), L("l2", "UDP", 9001)])
    gw = sc.wait_gateway(ns, "gw", {"Accepted": ("True", "Accepted"), "Programmed": ("True", "Programmed")})
    assert gw["metadata"]["generation"] == gen + 1
    for listener in gw["status"]["listeners"]:
        assert all(c["observedGeneration"] == gen + 1 for c in listener["conditions"]), listener


def test_gateway_listener_unsupported_protocol(sc):
    ns = sc.namespace("a")
    sc.gateway(ns, "only-http", [L("http", "HTTP", 8080)])
    gw = sc.wait_gateway(ns, "only-http", {"Accepted": ("False", "ListenersNotValid")})
    (listener,) = gw["status"]["listeners"]
    assert Scenario.conditions(listener["conditions"])["Accepted"] == ("False", "UnsupportedProtocol")
    assert listener["supportedKinds"] == []
    sc.gateway(ns, "mixed", [L("http", "HTTP", 8080), L("tcp", "TCP", 9000)])
    gw = sc.wait_gateway(ns, "mixed", {"Accepted": ("True", "ListenersNotValid")})
    listeners = {l["name"]: Scenario.conditions(l["conditions"]) for l in gw["status"]["listeners"]}
    assert listeners["http"]["Accepted"] == ("False", "UnsupportedProtocol")
    assert listeners["tcp"]["Accepted"] == ("True", "Accepted")


def test_gateway_invalid_parameters_ref(sc):
    ns = sc.namespace("a")
    sc.gateway(ns, "gw", [L("l", "TCP", 9000)],
               infrastructure={"parametersRef": {"group": "", "kind": "ConfigMap", "name": "missing"}})
    sc.wait_gateway(ns, "gw", {"Accepted": ("False", "InvalidParameters")})


def test_gatewayclass_invalid_parameters_ref(sc):
    name = f"{sc.prefix}-badclass"
    sc.create({"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": {"name": name},
               "spec": {"controllerName": "gateway.networking.k8s.io/blixt",
                        "parametersRef": {"group": "", "kind": "ConfigMap", "name": "nope",
                                          "namespace": "blixt-system"}}})
    sc.node.wait_for("GatewayClass InvalidParameters", lambda: Scenario.conditions(
        sc.get("gatewayclass", None, name)).get("Accepted") == ("False", "InvalidParameters"))


def test_gateway_static_addresses(sc):
    ns = sc.namespace("a")
    sc.service(ns, "svc", [2], "TCP")
    sc.gateway(ns, "gw", [L("l", "TCP", 9000)], addresses=[{"type": "IPAddress", "value": "198.18.201.7"}])
    sc.route("TCPRoute", ns, "r", [{"name": "gw"}], [{"name": "svc", "port": 8080}])
    gw = sc.wait_gateway(ns, "gw", {"Programmed": ("True", "Programmed")})
    assert gw["status"]["addresses"] == [{"type": "IPAddress", "value": "198.18.201.7"}]
    sc.node.topo.client.exec("ip", "route", "replace", "198.18.201.0/24", "via", sc.node.topo.node.address)
    sc.wait_traffic("TCP", "198.18.201.7", 9000, {"pod2"})
    # IPv6 (the dataplane is IPv4) and an address another Gateway holds
    # cannot be used; an unknown type is unsupported.
    sc.gateway(ns, "v6", [L("l", "TCP", 9000)], addresses=[{"type": "IPAddress", "value": "fd00::7"}])
    sc.wait_gateway(ns, "v6", {"Programmed": ("False", "AddressNotUsable")})
    sc.gateway(ns, "taken", [L("l", "TCP", 9001)], addresses=[{"type": "IPAddress", "value": "198.18.201.7"}])
    sc.wait_gateway(ns, "taken", {"Programmed": ("False", "AddressNotUsable")})
    sc.gateway(ns, "odd", [L("l", "TCP", 9000)], addresses=[{"type": "example.com/custom", "value": "x"}])
    sc.wait_gateway(ns, "odd", {"Accepted": ("False", "UnsupportedAddress")})
