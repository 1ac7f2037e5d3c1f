import ipaddress

import pytest

from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.plan import CapacityError, Current, after, plan, service_key

MARKS = MarkConfig()
VIP = "10.0.0.10"


def svc(*backends, port=80, proto="tcp", addr=VIP, **kw):
    return Service(addr, port, proto, tuple(backends), **kw)


def b(i, weight=1, masq=False, port=8080):
    return Backend(f"192.168.0.{i}", port, weight, masq)


def applied(p, current=None):
    """What the kernel holds after the plan, as the manager applies it."""
    return after(current or Current(), p)


def test_fresh_service_gets_ids_slots_members_and_nft_entries():
    dp = Dataplane.of([svc(b(1, 70), b(2, 30), b(3, 0))])
    p = plan(dp, Current(), MARKS)
    key = service_key(dp.services[0])
    val = p.services_put[key]
    assert (val.id, val.gen, val.slot_count, val.flags) == (1, 0, 10, 0)
    # The value carries its own key, which the program checks.
    assert (val.key_addr, val.key_port, val.key_proto) == (int(ipaddress.IPv4Address(VIP)), 80, 6)
    assert sorted(p.nft_put) == [1, 2]  # weight 0 gets no backend id
    assert p.nft_put[1] == (ipaddress.IPv4Address("192.168.0.1"), 8080)
    assert sorted(v[0] for v in p.slots_put.values()).count(1) == 7
    assert set(p.members_put) == {(1, 1), (1, 2)}


def test_same_desired_state_is_an_empty_plan():
    dp = Dataplane.of([svc(b(1), b(2))], local_addresses=["192.0.2.1"])
    state = applied(plan(dp, Current(), MARKS))
    again = plan(dp, state, MARKS)
    assert again.empty, again.summary()


def test_backend_change_flips_generation_and_drops_old_slots():
    first = Dataplane.of([svc(b(1), b(2))])
    state = applied(plan(first, Current(), MARKS))
    p = plan(Dataplane.of([svc(b(1), b(3))]), state, MARKS)
    (key, val), = p.services_put.items()
    assert val[1] == 1  # new generation
    assert all(k[1] == 1 for k in p.slots_put)
    assert sorted(p.slots_delete) == [(1, 0, 0), (1, 0, 1)]
    # backend 2 goes, 3 comes with a fresh id, never 2's.
    assert p.nft_delete == [2]
    assert list(p.nft_put) == [3]
    after = applied(p, state)
    assert set(after.slots) == {(1, 1, 0), (1, 1, 1)}


def test_ids_survive_a_restart_reading_state_back():
    dp = Dataplane.of([svc(b(1)), svc(b(2), port=81)])
    state = applied(plan(dp, Current(), MARKS))
    # A new agent starts with only the kernel's state: same ids, nothing to do.
    p = plan(dp, state, MARKS)
    assert p.empty
    assert p.service_ids == {service_key(s): i + 1 for i, s in enumerate(dp.services)}


def test_removed_service_cleans_everything():
    dp = Dataplane.of([svc(b(1)), svc(b(2), port=81)])
    state = applied(plan(dp, Current(), MARKS))
    p = plan(Dataplane.of([svc(b(1))]), state, MARKS)
    after = applied(p, state)
    assert len(after.services) == 1
    assert all(k[0] == 1 for k in after.slots)
    assert set(after.members) == {(1, 1)}
    assert set(after.backends) == {1}
    assert p.removed_ids == [2]


def test_no_backends_is_a_service_with_zero_slots():
    p = plan(Dataplane.of([svc()]), Current(), MARKS)
    (val,) = p.services_put.values()
    assert val[2] == 0 and not p.slots_put


def test_masquerade_and_affinity_flags():
    p = plan(Dataplane.of([svc(b(1, masq=True), affinity_timeout=30)]), Current(), MARKS)
    (val,) = p.services_put.values()
    assert val[3] == layout.SVC_AFFINITY and val[4] == 30
    addr = int(ipaddress.IPv4Address("192.168.0.1"))
    assert set(p.slots_put.values()) == {(1, layout.SLOT_MASQ, 1, addr)}  # backend, flags, service, address


def test_masquerade_change_rewrites_slots_and_members():
    state = applied(plan(Dataplane.of([svc(b(1))]), Current(), MARKS))
    p = plan(Dataplane.of([svc(b(1, masq=True))]), state, MARKS)
    addr = int(ipaddress.IPv4Address("192.168.0.1"))
    assert p.members_put == {(1, 1): (1, layout.SLOT_MASQ, 1, addr)}
    assert list(p.slots_put.values()) == [(1, layout.SLOT_MASQ, 1, addr)]


def test_wildcard_service_and_local_addresses():
    dp = Dataplane.of([svc(b(1), addr=None, port=30080)], local_addresses=["192.0.2.2"])
    p = plan(dp, Current(), MARKS)
    assert list(p.services_put)[0][0] == 0
    assert p.local_put == {int(ipaddress.IPv4Address("192.0.2.2"))}


def test_shared_backend_has_one_id():
    p = plan(Dataplane.of([svc(b(1)), svc(b(1), port=81, proto="udp")]), Current(), MARKS)
    assert list(p.nft_put) == [1]


def test_capacity_error_names_map_and_limit():
    """The limits are those of the maps written (a build may size them)."""
    with pytest.raises(CapacityError) as exc:
        plan(Dataplane.of([svc(b(1), port=p) for p in (1, 2, 3)]), Current(capacity=layout.Capacity(services=2)),
             MARKS)
    assert "blixt_services" in str(exc.value) and "2" in str(exc.value)
    for cap in (layout.Capacity(slots=2), layout.Capacity(members=2)):
        with pytest.raises(CapacityError):
            plan(Dataplane.of([svc(b(1), b(2), b(3))]), Current(capacity=cap), MARKS)
    plan(Dataplane.of([svc(b(1), b(2), b(3))]), Current(capacity=layout.Capacity(3, 3, 3)), MARKS)


def test_backend_ids_limited_by_mark_field():
    marks = MarkConfig(id_shift=8, id_mask=0x300)  # ids 1..3
    with pytest.raises(CapacityError):
        plan(Dataplane.of([svc(*(b(i) for i in range(1, 5)))]), Current(), marks)


def test_duplicate_service_or_backend_rejected():
    with pytest.raises(ValueError):
        Dataplane.of([svc(b(1)), svc(b(2))])
    with pytest.raises(ValueError):
        svc(b(1), b(1))
    with pytest.raises(ValueError):
        Backend("::1", 80)
    with pytest.raises(ValueError):
        Backend("10.0.0.1", 0)


def test_stale_udp_flows_of_removed_backends_and_services():
    dp = Dataplane.of([svc(b(1), b(2), proto="udp"), svc(b(1), port=81, proto="udp"), svc(b(1), port=82)])
    state = applied(plan(dp, Current(), MARKS))
    p = plan(Dataplane.of([svc(b(1), proto="udp"), svc(b(1), port=82)]), state, MARKS)
    vip = ipaddress.IPv4Address(VIP)
    assert (vip, 81, None) in p.udp_flushes  # the removed UDP service, every flow
    assert (vip, 80, (ipaddress.IPv4Address("192.168.0.2"), 8080)) in p.udp_flushes  # its removed backend
    assert len(p.udp_flushes) == 2  # TCP is left to its peers


def test_udp_flows_are_flushed_when_a_frontend_gets_its_first_backend():
    """A UDP flow that reached the address before the frontend had a backend
    was never NATed; its conntrack entry would keep it so."""
    vip = ipaddress.IPv4Address(VIP)
    fresh = plan(Dataplane.of([svc(b(1), proto="udp"), svc(b(1), port=81)]), Current(), MARKS)
    assert fresh.udp_flushes == [(vip, 80, None)]  # new UDP frontend with a backend; TCP needs none
    empty = applied(plan(Dataplane.of([svc(proto="udp"), svc(port=53, addr=None, proto="udp")]), Current(), MARKS))
    first = plan(Dataplane.of([svc(b(1), proto="udp"), svc(b(1), port=53, addr=None, proto="udp")]), empty, MARKS)
    assert sorted(first.udp_flushes, key=str) == sorted([(vip, 80, None), (None, 53, None)], key=str)
    again = plan(Dataplane.of([svc(b(1), b(2), proto="udp")]), applied(first, empty), MARKS)
    assert not [f for f in again.udp_flushes if f[2] is None and f[1] == 80]  # 1 -> 2 backends: nothing to flush


def test_fresh_and_removed_service_ids_are_listed_for_sweeping():
    state = applied(plan(Dataplane.of([svc(b(1), affinity_timeout=60)]), Current(), MARKS))
    gone = plan(Dataplane(), state, MARKS)
    assert gone.removed_ids == [1] and gone.fresh_ids == []
    reused = plan(Dataplane.of([svc(b(1), port=81, affinity_timeout=60)]), applied(gone, state), MARKS)
    assert reused.fresh_ids == [1]  # id 1 again: the manager sweeps what it left


def test_nft_view_knows_frontends_and_vips():
    from blixt.dataplane.plan import NftView, nft_changes
    node = ipaddress.IPv4Address("192.0.2.1")
    dp = Dataplane.of([svc(b(1), b(2)), svc(b(1), port=53, proto="udp", addr=node),
                       svc(b(2), port=30080, addr=None)], local_addresses=[node])
    view = NftView.of(applied(plan(dp, Current(), MARKS)))
    vip, n = int(ipaddress.IPv4Address(VIP)), int(node)
    b1, b2 = (int(ipaddress.IPv4Address(f"192.168.0.{i}")) for i in (1, 2))
    assert view.frontends == {(vip, 6, 80), (n, 17, 53)}
    assert view.node_frontends == {(6, 30080)}
    assert view.vips == {vip}  # the node's own address is never refused wholesale
    assert view.node_addrs == {n}
    assert {ep for ep in view.backends.values()} == {(ipaddress.IPv4Address(a), 8080) for a in (b1, b2)}
    add, delete = nft_changes(NftView(), view)
    assert add.add["frontends"] == view.frontends and not any(delete.delete.values())
    add, delete = nft_changes(view, NftView())
    assert delete.delete["vips"] == {vip} and set(delete.delete_backends) == set(view.backends)
    assert not add.put_backends


# -- Service policies ----------------------------------------------------------------

PODS = ["10.244.0.0/16"]


def test_policy_flags_and_the_pod_twin_written_first():
    main = svc(b(1), drop_when_empty=True, masquerade="off-pod", source_ranges=["203.0.113.0/24"])
    twin = svc(b(1), b(2), scope="pod", masquerade="all")
    p = plan(Dataplane.of([main, twin], pod_cidrs=PODS), Current(), MARKS)
    keys = list(p.services_put)
    assert [k.scope for k in keys] == [layout.SCOPE_POD, layout.SCOPE_ANY]  # the twin before what points at it
    flags = {k.scope: v.flags for k, v in p.services_put.items()}
    assert flags[layout.SCOPE_ANY] == (layout.SVC_DROP_EMPTY | layout.SVC_MASQ_OFF_POD | layout.SVC_SOURCE_RANGES
                                       | layout.SVC_POD_VARIANT)
    assert flags[layout.SCOPE_POD] == layout.SVC_MASQ_ALL
    sid = p.service_ids[service_key(main)]
    assert p.ranges_put == {(56, sid, int(ipaddress.IPv4Address("203.0.113.0")))}
    assert p.cidrs_put == {(16, int(ipaddress.IPv4Address("10.244.0.0")))}


def test_a_twin_needs_its_main_entry():
    with pytest.raises(ValueError, match="no entry for other sources"):
        Dataplane.of([svc(b(1), scope="pod")])


def test_source_ranges_and_pod_cidrs_follow_the_desired_state():
    cur = applied(plan(Dataplane.of([svc(b(1), source_ranges=["198.51.100.0/24"])], pod_cidrs=PODS), Current(),
                       MARKS))
    p = plan(Dataplane.of([svc(b(1), source_ranges=["198.51.100.7/32"])]), cur, MARKS)
    assert {r.prefixlen for r in p.ranges_put} == {64} and {r.prefixlen for r in p.ranges_delete} == {56}
    assert p.cidrs_delete == cur.pod_cidrs and not p.cidrs_put
    done = applied(p, cur)
    assert plan(Dataplane.of([svc(b(1), source_ranges=["198.51.100.7/32"])]), done, MARKS).empty
    gone = plan(Dataplane(), done, MARKS)
    assert gone.ranges_delete == done.source_ranges


def test_the_nodes_own_traffic_is_served_from_the_twin_and_masqueraded():
    from blixt.dataplane.plan import NftView
    main = svc(drop_when_empty=True)
    twin = svc(b(1), b(2), scope="pod", affinity_timeout=30)
    cur = applied(plan(Dataplane.of([main, twin, svc(port=81)]), Current(), MARKS))
    outs = {o.key[2]: o for o in NftView.of(cur).outputs.values()}
    assert sorted(outs) == [80, 81]  # one per frontend, not per entry
    o = outs[80]
    assert sorted(str(a) for a, _ in o.slots) == ["192.168.0.1", "192.168.0.2"]
    assert o.masquerade and o.affinity == 30 and not o.drop
    assert outs[81].slots == () and not outs[81].drop  # no endpoints: reject
    only = applied(plan(Dataplane.of([main]), cur, MARKS), cur)
    o = next(iter(NftView.of(only).outputs.values()))
    assert o.slots == () and o.drop


def test_frontends_of_one_service_port_share_affinity():
    a = svc(b(1), affinity_timeout=60, affinity_group="ns/web:http/tcp")
    c = svc(b(1), addr=None, port=30080, affinity_timeout=60, affinity_group="ns/web:http/tcp")
    other = svc(b(1), port=81, affinity_timeout=60, affinity_group="ns/web:other/tcp")
    p = plan(Dataplane.of([a, c, other], local_addresses=["192.0.2.1"]), Current(), MARKS)
    by_port = {k.port: v for k, v in p.services_put.items()}
    assert by_port[80].affinity_id == by_port[30080].affinity_id == min(by_port[80].id, by_port[30080].id)
    assert by_port[81].affinity_id == by_port[81].id
    plain = plan(Dataplane.of([svc(b(1), affinity_group="g")]), Current(), MARKS)
    assert [v.affinity_id for v in plain.services_put.values()] == [0]  # no affinity, no group
