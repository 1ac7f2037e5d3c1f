"""blixt.dataplane.fit: which frontends fit the maps, and how the translation
reports the Gateways and Services that do not (Gateway Programmed=False
NoResources; Translation.unfit for the agent's Events)."""

from __future__ import annotations

import ipaddress

import pytest

from blixt.dataplane import layout
from blixt.dataplane.fit import Budget, fit
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.plan import Current, after, plan
from blixt.translate import ObjectRef
from blixt.translate import proxy as P
from blixt.translate.model import Snapshot
from blixt import translate

from gwbuilders import basic, backend, endpoint_slice, gateway, listener, parent, run, service, tcp_route, cond

pytestmark = pytest.mark.unit


def svc(port: int, *hosts: int, weight: int = 1, ranges=()) -> Service:
    return Service(ipaddress.IPv4Address("192.0.2.1"), port, "tcp",
                   tuple(Backend(f"10.0.{h // 250}.{h % 250 + 1}", 80, weight) for h in hosts),
                   source_ranges=ranges)


ROOMY = Budget(services=100, slots=100, members=100, backends=100, source_ranges=100)


def test_of_maps_is_half_of_every_map_and_of_the_mark_id_space():
    b = Budget.of_maps(MarkConfig())
    assert b == Budget(layout.MAX_SERVICES // 2, layout.MAX_SLOTS // 2, layout.MAX_MEMBERS // 2,
                       0xFFFF // 2, layout.MAX_SOURCE_RANGES // 2)
    assert Budget.of_maps(MarkConfig(id_shift=16, id_mask=0x003F0000)).backends == 31
    assert b.half().services == layout.MAX_SERVICES // 4
    big = Budget.of_maps(MarkConfig(), layout.Capacity(services=2**18, slots=2**20, members=2**19))
    assert (big.services, big.slots, big.members) == (2**17, 2**19, 2**18)


def test_units_are_all_or_nothing_in_order_and_later_smaller_ones_still_fit():
    budget = Budget(services=100, slots=100, members=100, backends=5, source_ranges=100)
    got = fit([("a", [svc(1, 1, 2), svc(2, 1, 2)]),   # 2 distinct backends
               ("b", [svc(3, 3, 4, 5, 6)]),            # 4 more: 6 > 5
               ("c", [svc(4, 3, 4, 5)])], budget)      # 3 more: 5
    assert [s.port for s in got.kept] == [1, 2, 4]
    assert list(got.unfit) == ["b"]
    assert "backend ids" in got.unfit["b"] and "needs 4" in got.unfit["b"] and "3 left of the 5" in got.unfit["b"]
    assert got.used == Budget(services=3, slots=7, members=7, backends=5, source_ranges=0)


@pytest.mark.parametrize("field, unit, word", [
    ("services", [svc(p) for p in range(1, 6)], "blixt_services"),
    ("slots", [svc(1, 1, 2, weight=3), svc(2, 3, weight=1), svc(3, 4, 5, 6, 7, 8)], "blixt_slots"),
    ("members", [svc(1, 1, 2, 3), svc(2, 1, 2)], "blixt_members"),
    ("source_ranges", [svc(1, ranges=[f"10.{i}.0.0/16" for i in range(5)])], "blixt_source_ranges"),
])
def test_each_map_is_counted(field, unit, word):
    tight = Budget(**{**ROOMY.__dict__, field: 4})
    got = fit([("u", unit)], tight)
    assert not got.kept and word in got.unfit["u"]
    assert fit([("u", unit)], ROOMY).kept == tuple(unit)


def test_more_weighted_backends_than_a_slot_table_is_unfit_not_an_error():
    big = svc(1, *range(layout.MAX_SLOTS_PER_SERVICE + 1))
    roomy = Budget(10, 10**6, 10**6, 10**6, 10)
    got = fit([("big", [big]), ("small", [svc(2, 1)])], roomy)
    assert [s.port for s in got.kept] == [2]
    assert "slots per service" in got.unfit["big"]


def test_whatever_fits_can_replace_whatever_fits_without_overflowing_a_map():
    """The half budget is what makes an apply safe: the planner's peak check
    (old and new generations at once) passes between any two fitted states."""
    cap = layout.Capacity(services=8, slots=16, members=16)
    marks = MarkConfig(id_shift=16, id_mask=0x000F0000)  # 15 ids
    budget = Budget.of_maps(marks, cap)
    one = fit([(i, [svc(i, i, i + 1)]) for i in range(1, 10)], budget)
    two = fit([(i, [svc(i, i + 20, i + 21, weight=2)]) for i in range(10, 20)], budget)
    assert one.unfit and two.unfit  # both were cut to the budget
    state = Current(capacity=cap)
    for fitted in (one, two, one):
        p = plan(Dataplane.of(fitted.kept), state, marks)  # raises CapacityError at a peak
        state = after(state, p)


# -- through the translation -----------------------------------------------


def gateways_with_backends(n_gateways: int, per_gateway: int):
    """Gateways (oldest first), each with one listener and a route to a Service
    with `per_gateway` endpoints of its own."""
    objs = []
    for g in range(n_gateways):
        name = f"gw{g}"
        objs += [gateway(name, addresses=[f"192.0.2.{g + 1}"], created=f"2026-01-0{g + 1}T00:00:00Z"),
                 tcp_route(f"r{g}", parents=[parent(name)], backends=[backend(f"s{g}")]),
                 service(f"s{g}"),
                 endpoint_slice(f"s{g}", endpoints=[f"10.{g}.{i // 250}.{i % 250 + 1}" for i in range(per_gateway)])]
    return basic(*objs)


def test_gateway_past_its_half_of_the_budget_is_not_programmed_no_resources():
    budget = Budget(services=100, slots=100, members=100, backends=20, source_ranges=100)  # Gateways: 10
    t = run(*gateways_with_backends(3, 4), budget=budget)
    got = {str(s.address) for s in t.dataplane.services}
    assert got == {"192.0.2.1", "192.0.2.2"}
    assert set(t.unfit) == {ObjectRef("Gateway", "default", "gw2")}
    prog = cond(t.statuses[ObjectRef("Gateway", "default", "gw2")]["conditions"], "Programmed")
    assert (prog["status"], prog["reason"]) == ("False", "NoResources")
    assert "backend ids" in prog["message"] and "needs 4" in prog["message"]
    listener_prog = cond(t.statuses[ObjectRef("Gateway", "default", "gw2")]["listeners"][0]["conditions"],
                         "Programmed")
    assert (listener_prog["status"], listener_prog["reason"]) == ("False", "Pending")
    # It keeps its address (so no other Gateway takes it); the older ones are Programmed.
    assert t.statuses[ObjectRef("Gateway", "default", "gw2")]["addresses"] == [
        {"type": "IPAddress", "value": "192.0.2.3"}]
    for g in ("gw0", "gw1"):
        assert cond(t.statuses[ObjectRef("Gateway", "default", g)]["conditions"], "Programmed")["status"] == "True"
    assert any("gateway default/gw2: no room in the maps" in note for note in t.skipped)


def test_services_get_what_gateways_leave_and_the_youngest_service_is_left_out():
    budget = Budget(services=100, slots=100, members=100, backends=12, source_ranges=100)
    objs = list(gateways_with_backends(1, 4))  # the Gateway uses 4 of the 6 it may
    for i, created in enumerate(("2026-03-02T00:00:00Z", "2026-03-01T00:00:00Z", "2026-03-03T00:00:00Z")):
        s = service(f"k{i}")
        s["metadata"]["creationTimestamp"] = created
        s["spec"]["clusterIP"] = f"10.96.0.{i + 1}"
        objs += [s, endpoint_slice(f"k{i}", endpoints=[f"10.50.{i}.{j}" for j in range(1, 4)])]
    opts = P.ProxyOptions("node-a")
    t = run(*objs, budget=budget, node_name="node-a", services=opts)
    # 12 - 4 = 8 for Services, 3 each, oldest first: k1, k0; not k2.
    assert set(t.unfit) == {ObjectRef("Service", "default", "k2")}
    served = {str(s.address) for s in t.dataplane.services}
    assert {"10.96.0.1", "10.96.0.2", "192.0.2.1"} <= served and "10.96.0.3" not in served


def test_default_budget_leaves_ordinary_translations_alone():
    t = run(*gateways_with_backends(2, 3))
    assert not t.unfit and len(t.dataplane.services) == 2


def test_a_memo_gives_the_result_fit_gives_without_it():
    """The memo reuses a unit's measure only while it is made of the very
    same Service objects: changed, added, removed and shared backends all
    come out as fit() without a memo says."""
    from blixt.dataplane.fit import Memo
    tight = Budget(services=6, slots=20, members=20, backends=7, source_ranges=2)
    units = {"a": (svc(1, 1, 2, 3),), "b": (svc(2, 3, 4), svc(3, 4)), "c": (svc(4, 5, 6, 7, 8),)}
    memo = Memo()
    steps = [
        lambda u: None,
        lambda u: u.update(b=(svc(2, 3, 4), svc(3, 4))),           # equal, new objects
        lambda u: u.update(a=(svc(1, 1, 2, 3, 9, 10, 11),)),        # grows: c no longer fits
        lambda u: u.pop("a"),                                       # c fits again
        lambda u: u.update(d=(svc(5, *range(1, 40)),)),             # too big for the budget
        lambda u: u.update(b=(svc(2, 3, 4, ranges=("10.0.0.0/8", "11.0.0.0/8", "12.0.0.0/8")),)),
    ]
    for change in steps:
        change(units)
        got = fit(list(units.items()), tight, memo)
        assert got == fit(list(units.items()), tight)
    assert set(memo.entries) == set(units)  # gone units are forgotten
