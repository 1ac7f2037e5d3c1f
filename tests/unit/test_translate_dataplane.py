import copy
import ipaddress

import pytest

from blixt.dataplane.model import Dataplane
from blixt.translate import Snapshot, translate

from gwbuilders import (NOW, snapshot, backend, basic, endpoint_slice, gateway, listener, parent, run, service, tcp_route,
                        udp_route)

pytestmark = pytest.mark.unit


def test_empty_snapshot():
    t = translate(Snapshot(), now=NOW)
    assert t.statuses == {} and t.addresses == {} and t.dataplane == Dataplane()


def test_every_address_times_every_accepted_listener():
    gw = gateway(addresses=["192.0.2.1", "192.0.2.2"],
                 listeners=[listener("t", 80), listener("u", 53, "UDP"), listener("h", 8080, "HTTP")])
    objs = basic(gw, tcp_route(parents=[parent(section="t")]),
                 udp_route("dns", parents=[parent(section="u")], backends=[backend("dns", 53)]),
                 service(), endpoint_slice(endpoints=["10.1.0.1"]),
                 service("dns", ports=[("dns", 53, 53, "UDP")]),
                 endpoint_slice("dns", endpoints=["10.2.0.1"], port=53, port_name="dns", protocol="UDP"))
    t = run(*objs)
    got = {(str(s.address), s.port, s.protocol): (s.name, [str(b.address) for b in s.backends])
           for s in t.dataplane.services}
    assert got == {
        ("192.0.2.1", 80, "tcp"): ("gateway/default/gw/t", ["10.1.0.1"]),
        ("192.0.2.2", 80, "tcp"): ("gateway/default/gw/t", ["10.1.0.1"]),
        ("192.0.2.1", 53, "udp"): ("gateway/default/gw/u", ["10.2.0.1"]),
        ("192.0.2.2", 53, "udp"): ("gateway/default/gw/u", ["10.2.0.1"]),
    }
    assert t.dataplane.local_addresses == frozenset()
    assert all(s.affinity_timeout == 0 for s in t.dataplane.services)


def test_listener_without_routes_gets_a_rejecting_service():
    (svc,) = run(*basic(gateway())).dataplane.services
    assert svc.backends == () and (svc.port, svc.protocol) == (9000, "tcp")
    assert svc.address == ipaddress.IPv4Address("10.0.0.0")


def test_same_listener_port_on_two_gateways_uses_distinct_addresses():
    t = run(*basic(gateway("a"), gateway("b", created="2025-02-01T00:00:00Z"), pool="10.0.0.1-10.0.0.2"))
    keys = sorted((str(s.address), s.port) for s in t.dataplane.services)
    assert keys == [("10.0.0.1", 9000), ("10.0.0.2", 9000)]


def test_route_not_accepted_sends_no_traffic():
    objs = basic(gateway(), tcp_route(ns="other", parents=[parent(ns="default")]), service("svc", "other"),
                 endpoint_slice("svc", "other", endpoints=["10.1.0.1"]))
    (svc,) = run(*objs).dataplane.services
    assert svc.backends == ()


def test_translation_does_not_modify_its_input():
    old = {"parents": [{"parentRef": parent(), "controllerName": "x/y", "conditions": []}]}
    snap = snapshot(*basic(gateway(status={"conditions": []}), tcp_route(status=old), service(),
                           endpoint_slice(endpoints=["10.1.0.1"])))
    before = copy.deepcopy(snap)
    translate(snap, now=NOW)
    assert snap == before
