import pytest

from blixt.translate import ObjectRef

from gwbuilders import basic, cond, csr, gateway, gateway_class, run

pytestmark = pytest.mark.unit


def gw_status(t, name="gw", ns="default"):
    return t.statuses[ObjectRef("Gateway", ns, name)]


def at(day):
    return f"2025-01-{day:02d}T00:00:00Z"


def held(*ips):
    return {"addresses": [{"type": "IPAddress", "value": ip} for ip in ips]}


def test_static_address_is_honoured_and_reported():
    t = run(*basic(gateway(addresses=["192.0.2.1"])))
    assert t.addresses == {("default", "gw"): ["192.0.2.1"]}
    assert gw_status(t)["addresses"] == [{"type": "IPAddress", "value": "192.0.2.1"}]
    assert str(t.dataplane.services[0].address) == "192.0.2.1"


def test_address_without_type_is_an_ip_address():
    t = run(*basic(gateway(addresses=[{"value": "192.0.2.9"}])))
    assert t.addresses[("default", "gw")] == ["192.0.2.9"]


@pytest.mark.parametrize("value, fragment", [("2001:db8::1", "IPv6"), ("not-an-ip", "not an IP")])
def test_unusable_static_addresses(value, fragment):
    t = run(*basic(gateway(addresses=[value, "192.0.2.1"])))
    st = gw_status(t)
    assert csr(st["conditions"], "Accepted") == ("True", "Accepted")
    c = cond(st["conditions"], "Programmed")
    assert (c["status"], c["reason"]) == ("False", "AddressNotUsable")
    assert fragment in c["message"]
    assert st["addresses"] == [] and t.addresses == {} and t.dataplane.services == ()
    assert csr(st["listeners"][0]["conditions"], "Programmed") == ("False", "Pending")


def test_static_address_clash_goes_to_the_older_gateway():
    t = run(*basic(gateway("young", created=at(9), addresses=["192.0.2.1"]),
                   gateway("old", created=at(1), addresses=["192.0.2.1"])))
    assert t.addresses == {("default", "old"): ["192.0.2.1"]}
    c = cond(gw_status(t, "young")["conditions"], "Programmed")
    assert (c["status"], c["reason"]) == ("False", "AddressNotUsable")
    assert "default/old" in c["message"]


def test_no_addresses_allocates_the_lowest_free_pool_address():
    t = run(*basic(gateway("a", created=at(1)), gateway("b", created=at(2)), pool="10.0.0.1-10.0.0.9"))
    assert t.addresses == {("default", "a"): ["10.0.0.1"], ("default", "b"): ["10.0.0.2"]}


def test_ip_address_entry_without_value_allocates_from_the_pool():
    t = run(*basic(gateway(addresses=[{"type": "IPAddress"}]), pool="10.0.0.5"))
    assert t.addresses == {("default", "gw"): ["10.0.0.5"]}
    assert gw_status(t)["addresses"] == [{"type": "IPAddress", "value": "10.0.0.5"}]


def test_static_plus_empty_entry_gets_both():
    t = run(*basic(gateway(addresses=["192.0.2.1", {"type": "IPAddress"}]), pool="10.0.0.5"))
    assert t.addresses == {("default", "gw"): ["192.0.2.1", "10.0.0.5"]}


def test_allocation_is_stable_across_translations():
    # b holds .1 although a is older: it keeps it, a gets the next free one.
    t = run(*basic(gateway("a", created=at(1)), gateway("b", created=at(2), status=held("10.0.0.1")),
                   pool="10.0.0.1-10.0.0.9"))
    assert t.addresses == {("default", "a"): ["10.0.0.2"], ("default", "b"): ["10.0.0.1"]}
    # Feeding the statuses back changes nothing.
    again = run(*basic(gateway("a", created=at(1), status=gw_status(t, "a")),
                       gateway("b", created=at(2), status=gw_status(t, "b")), pool="10.0.0.1-10.0.0.9"))
    assert again.addresses == t.addresses


def test_held_address_outside_the_pool_is_replaced():
    t = run(*basic(gateway(status=held("172.16.0.1")), pool="10.0.0.1"))
    assert t.addresses == {("default", "gw"): ["10.0.0.1"]}


def test_held_address_claimed_statically_by_another_gateway_moves():
    t = run(*basic(gateway("dyn", created=at(1), status=held("10.0.0.1")),
                   gateway("static", created=at(5), addresses=["10.0.0.1"]), pool="10.0.0.1-10.0.0.2"))
    assert t.addresses == {("default", "dyn"): ["10.0.0.2"], ("default", "static"): ["10.0.0.1"]}


def test_static_addresses_inside_the_pool_are_not_handed_out():
    t = run(*basic(gateway("dyn", created=at(1)), gateway("static", created=at(5), addresses=["10.0.0.1"]),
                   pool="10.0.0.1-10.0.0.2"))
    assert t.addresses[("default", "dyn")] == ["10.0.0.2"]


def test_pool_exhaustion():
    t = run(*basic(gateway("a", created=at(1)), gateway("b", created=at(2)), pool="10.0.0.1"))
    assert t.addresses == {("default", "a"): ["10.0.0.1"]}
    c = cond(gw_status(t, "b")["conditions"], "Programmed")
    assert (c["status"], c["reason"]) == ("False", "AddressNotAssigned")
    assert "exhausted" in c["message"]
    assert gw_status(t, "b")["addresses"] == []


def test_failed_allocation_gives_its_addresses_back():
    # a wants two and gets none; its first pick must go to b.
    two = [{"type": "IPAddress"}, {"type": "IPAddress"}]
    t = run(*basic(gateway("a", created=at(1), addresses=two), gateway("b", created=at(2)), pool="10.0.0.1"))
    assert t.addresses == {("default", "b"): ["10.0.0.1"]}
    assert csr(gw_status(t, "a")["conditions"], "Programmed") == ("False", "AddressNotAssigned")


def test_no_pool_and_no_address():
    t = run(gateway_class(), gateway())
    c = cond(gw_status(t)["conditions"], "Programmed")
    assert (c["status"], c["reason"]) == ("False", "AddressNotAssigned")
    assert "no address pool" in c["message"]


def test_unaccepted_gateways_take_no_address():
    t = run(*basic(gateway("bad", created=at(1), addresses=[{"type": "Hostname", "value": "x.example"}]),
                   gateway("good", created=at(2)), pool="10.0.0.1"))
    assert t.addresses == {("default", "good"): ["10.0.0.1"]}


def test_addresses_are_unique_across_classes_sharing_a_pool():
    objs = basic(gateway("a", created=at(1)), gateway("b", cls="second", created=at(2)), pool="10.0.0.1-10.0.0.2")
    t = run(*objs, gateway_class("second", params=objs[0]["spec"]["parametersRef"]))
    assert sorted(sum(t.addresses.values(), [])) == ["10.0.0.1", "10.0.0.2"]


def test_programmed_transition_keeps_time_while_status_holds():
    first = run(*basic(gateway(status=None)), now=at(1))
    second = run(*basic(gateway(generation=2, status=gw_status(first))), now=at(2))
    c = cond(gw_status(second)["conditions"], "Programmed")
    assert (c["lastTransitionTime"], c["observedGeneration"]) == (at(1), 2)
