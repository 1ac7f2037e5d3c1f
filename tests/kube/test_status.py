"""Status writes against the real apiserver: written when different, skipped
when equal, and never clobbering a concurrent writer."""

from __future__ import annotations

import pytest

import apiobjects as k
from apiobjects import condition
from blixt.kube import metrics, resources as R
from blixt.kube.status import StatusWriter

pytestmark = pytest.mark.kube

OTHER = "example.com/other-controller"


def _writes(kind: str, result: str) -> float:
    return metrics.REGISTRY.get_sample_value("blixt_status_writes_total", {"kind": kind, "result": result}) or 0.0


def _rv(obj: dict) -> str:
    return obj["metadata"]["resourceVersion"]


@pytest.fixture
def gateway(objects, unique):
    """A GatewayClass and a Gateway of it: (class name, gateway name)."""
    cls, gw = unique("gc"), unique("gw")
    objects.create(R.GATEWAY_CLASSES, k.gateway_class(cls))
    objects.create(R.GATEWAYS, k.gateway(gw, class_name=cls))
    return cls, gw


def _gateway_status(generation: int = 1, programmed: str = "True", when: str = "2026-01-01T00:00:00Z") -> dict:
    return {
        "conditions": [condition("Accepted", generation=generation, when=when),
                       condition("Programmed", programmed, generation=generation, when=when)],
        "listeners": [{
            "name": "tcp", "attachedRoutes": 1,
            # No group: the CRD defaults it, and the comparison must know.
            "supportedKinds": [{"kind": "TCPRoute"}],
            "conditions": [condition("Accepted", generation=generation, when=when),
                           condition("Programmed", programmed, generation=generation, when=when),
                           condition("ResolvedRefs", generation=generation, when=when)],
        }],
    }


def _route_status(gateway: str, controller: str = k.CONTROLLER, accepted: str = "True") -> dict:
    return {"parents": [{"parentRef": {"name": gateway}, "controllerName": controller,
                         "conditions": [condition("Accepted", accepted), condition("ResolvedRefs")]}]}


def test_gateway_class_status_is_written_once(api, objects, unique):
    name = unique("gc")
    objects.create(R.GATEWAY_CLASSES, k.gateway_class(name))
    writer = StatusWriter(api)
    status = {"conditions": [condition("Accepted", message="blixt handles this class")]}

    assert writer.write("GatewayClass", None, name, status) is True
    live = objects.get(R.GATEWAY_CLASSES, None, name)
    assert live["status"]["conditions"] == status["conditions"]

    unchanged_before = _writes("GatewayClass", "unchanged")
    assert writer.write("GatewayClass", None, name, status) is False
    assert _rv(objects.get(R.GATEWAY_CLASSES, None, name)) == _rv(live)
    # Same condition status stamped with a new time: still no write.
    restamped = {"conditions": [condition("Accepted", message="blixt handles this class",
                                          when="2030-01-01T00:00:00Z")]}
    assert writer.write("GatewayClass", "", name, restamped) is False
    assert _rv(objects.get(R.GATEWAY_CLASSES, None, name)) == _rv(live)
    assert _writes("GatewayClass", "unchanged") == unchanged_before + 2

    # A status change moves the transition time.
    writer.write("GatewayClass", None, name, {"conditions": [condition("Accepted", "False", reason="InvalidParameters",
                                                                        when="2030-01-01T00:00:00Z")]})
    cond = objects.get(R.GATEWAY_CLASSES, None, name)["status"]["conditions"][0]
    assert (cond["status"], cond["reason"], cond["lastTransitionTime"]) == ("False", "InvalidParameters",
                                                                            "2030-01-01T00:00:00Z")


def test_gateway_status_is_written_and_identical_writes_are_skipped(api, objects, gateway):
    _, gw = gateway
    writer = StatusWriter(api)
    initial = objects.get(R.GATEWAYS, "default", gw)
    assert initial["status"]["conditions"][0]["reason"] == "Pending"  # the CRD's default status

    assert writer.write("Gateway", "default", gw, _gateway_status()) is True
    live = objects.get(R.GATEWAYS, "default", gw)
    assert [c["status"] for c in live["status"]["conditions"]] == ["True", "True"]
    assert live["status"]["listeners"][0]["supportedKinds"] == [
        {"group": "gateway.networking.k8s.io", "kind": "TCPRoute"}]

    # Identical (up to defaults and the order of conditions): no write.
    reordered = _gateway_status()
    reordered["conditions"].reverse()
    assert writer.write("Gateway", "default", gw, reordered) is False
    assert _rv(objects.get(R.GATEWAYS, "default", gw)) == _rv(live)

    # A field the new status lacks is removed, not merged.
    with_addresses = dict(_gateway_status(), addresses=[{"value": "192.0.2.10"}])
    assert writer.write("Gateway", "default", gw, with_addresses) is True
    assert objects.get(R.GATEWAYS, "default", gw)["status"]["addresses"] == [
        {"type": "IPAddress", "value": "192.0.2.10"}]
    assert writer.write("Gateway", "default", gw, _gateway_status()) is True
    assert "addresses" not in objects.get(R.GATEWAYS, "default", gw)["status"]


def test_a_concurrent_spec_change_and_status_write_both_survive(api, objects, gateway):
    """Someone changes the spec between the writer's read and its patch: the
    patch gets 409, the writer reads again, and both changes stand."""
    _, gw = gateway
    writer = StatusWriter(api)
    real_read = writer._read
    reads = []

    def read_then_interfere(resource, namespace, name):
        live = real_read(resource, namespace, name)
        reads.append(_rv(live))
        if len(reads) == 1:
            objects.patch(R.GATEWAYS, namespace, name, {
                "metadata": {"labels": {"changed": "meanwhile"}},
                "spec": {"listeners": [{"name": "tcp", "protocol": "TCP", "port": 9100}]}})
        return live

    writer._read = read_then_interfere
    conflicts_before = _writes("Gateway", "conflict")
    assert writer.write("Gateway", "default", gw, _gateway_status(generation=2)) is True
    assert len(reads) == 2 and reads[0] != reads[1]
    assert _writes("Gateway", "conflict") == conflicts_before + 1

    live = objects.get(R.GATEWAYS, "default", gw)
    assert live["spec"]["listeners"][0]["port"] == 9100
    assert live["metadata"]["labels"] == {"changed": "meanwhile"}
    assert live["metadata"]["generation"] == 2
    assert {c["observedGeneration"] for c in live["status"]["conditions"]} == {2}


def test_route_parents_of_other_controllers_survive(api, objects, unique, gateway):
    _, gw = gateway
    route = unique("tcp")
    objects.create(R.TCP_ROUTES, k.tcp_route(route, gateway_name=gw))
    ours = StatusWriter(api, controller_name=k.CONTROLLER)
    theirs = StatusWriter(api, field_manager="other-controller", controller_name=OTHER)

    assert theirs.write("TCPRoute", "default", route, _route_status(gw, OTHER)) is True
    # Ours was computed from a snapshot taken before theirs was written.
    assert ours.write("TCPRoute", "default", route, _route_status(gw)) is True
    parents = objects.get(R.TCP_ROUTES, "default", route)["status"]["parents"]
    assert sorted(p["controllerName"] for p in parents) == sorted([k.CONTROLLER, OTHER])

    # They write again between our read and our patch: 409, reread, merge.
    real_read = ours._read
    interfered = []

    def read_then_interfere(resource, namespace, name):
        live = real_read(resource, namespace, name)
        if not interfered:
            interfered.append(True)
            theirs.write("TCPRoute", namespace, name, _route_status(gw, OTHER, accepted="False"))
        return live

    ours._read = read_then_interfere
    assert ours.write("TCPRoute", "default", route, _route_status(gw, accepted="False")) is True
    parents = {p["controllerName"]: p for p in objects.get(R.TCP_ROUTES, "default", route)["status"]["parents"]}
    assert set(parents) == {k.CONTROLLER, OTHER}
    assert parents[OTHER]["conditions"][0]["status"] == "False"
    assert parents[k.CONTROLLER]["conditions"][0]["status"] == "False"
    # The parentRef defaults (group, kind) do not make an equal status look different.
    assert ours.write("TCPRoute", "default", route, _route_status(gw, accepted="False")) is False


def test_udp_route_and_a_missing_object(api, objects, unique, gateway):
    _, gw = gateway
    route = unique("udp")
    objects.create(R.UDP_ROUTES, k.udp_route(route, gateway_name=gw))
    writer = StatusWriter(api, controller_name=k.CONTROLLER)
    assert writer.write("UDPRoute", "default", route, _route_status(gw)) is True
    assert writer.write("UDPRoute", "default", route, _route_status(gw)) is False
    assert writer.write("UDPRoute", "default", unique("absent"), _route_status(gw)) is False
    with pytest.raises(ValueError):
        writer.write("HTTPRoute", "default", route, {})
