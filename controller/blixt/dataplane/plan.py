"""From a desired Dataplane and what the kernel holds now, the exact map and
nftables changes to make, in a safe order. Pure: no I/O.

Entries are the layout mirrors' Records (layout.py), the one Python form of
each map entry; the manager packs them as they are.

Ids are stable: a service or backend that exists keeps its id (read back
from the maps, so an agent restart changes nothing), and an id freed in this
apply is not handed out again in the same apply, so a packet marked a moment
before the change never reaches a different backend. A service id handed out
anew is swept of affinity and counters a previous holder may have left.

A service's slot table changes atomically: new slots are written under a new
generation, then the service entry is flipped to it, then the old slots go.

The nftables table holds what the NAT rules need to know besides the
backends: which frontends blixt owns (only their decisions are acted on),
and which addresses are VIPs (anything else sent to them is refused).
`NftView` derives all of it from the maps.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import ipaddress
from typing import Iterable, Mapping, NamedTuple

from . import layout
from .marks import MarkConfig
from .model import PROTOCOLS, Dataplane, Service
from .slots import slot_table

ServiceKey = layout.ServiceKey.Record
ServiceVal = layout.Service.Record
SlotKey = layout.SlotKey.Record
SlotVal = layout.Slot.Record
MemberKey = layout.MemberKey.Record
CidrKey = layout.CidrKey.Record
RangeKey = layout.SourceRangeKey.Record
Endpoint = tuple[ipaddress.IPv4Address, int]
# An endpoint as (address as an int, port), the key of dicts over every
# backend: an IPv4Address hashes in Python code, an int in C.
EpKey = tuple[int, int]

UDP = PROTOCOLS["udp"]
_new = tuple.__new__


class CapacityError(ValueError):
    """The desired dataplane does not fit a map; nothing was changed."""


@dataclasses.dataclass
class Current:
    """What the kernel holds now."""

    services: dict[ServiceKey, ServiceVal] = dataclasses.field(default_factory=dict)
    slots: dict[SlotKey, SlotVal] = dataclasses.field(default_factory=dict)
    members: dict[MemberKey, SlotVal] = dataclasses.field(default_factory=dict)
    backends: dict[int, Endpoint] = dataclasses.field(default_factory=dict)  # nft map
    local_addresses: set[int] = dataclasses.field(default_factory=set)
    pod_cidrs: set[CidrKey] = dataclasses.field(default_factory=set)
    source_ranges: set[RangeKey] = dataclasses.field(default_factory=set)
    capacity: layout.Capacity = layout.Capacity()  # of the maps these entries are in


# (service address or None for a wildcard service, service port, backend or None for all)
Flush = tuple[ipaddress.IPv4Address | None, int, Endpoint | None]


@dataclasses.dataclass
class Plan:
    """Changes in the order the manager applies them."""

    nft_put: dict[int, Endpoint]            # 1. backends new slots will name
    slots_put: dict[SlotKey, SlotVal]       # 2. new generations
    members_put: dict[MemberKey, SlotVal]   # 3. before affinity can point at them
    local_put: set[int]                     # 4. before wildcard services need them
    cidrs_put: set[CidrKey]                 #    and pod CIDRs and source ranges
    ranges_put: set[RangeKey]               #    before the flags that use them
    fresh_ids: list[int]                    # 5. swept of old affinity and counters
    services_put: dict[ServiceKey, ServiceVal]  # 6. the flip
    services_delete: list[ServiceKey]       # 7. then what is gone
    slots_delete: list[SlotKey]
    members_delete: list[MemberKey]
    removed_ids: list[int]                  # their affinity and counters go too
    local_delete: set[int]
    cidrs_delete: set[CidrKey]
    ranges_delete: set[RangeKey]
    nft_delete: list[int]                   # 8. last: no slot names them now
    service_ids: dict[ServiceKey, int]      # for logs and metrics
    names: dict[int, str]                   # service id -> Service.name
    udp_flushes: list[Flush] = dataclasses.field(default_factory=list)  # 9. conntrack
    changed: Mapping[ServiceKey, Service] = dataclasses.field(default_factory=dict)  # services_put's, for logs
    # What the nft map holds now for the backend ids nft_delete and nft_put
    # name (where it holds them): the state the plan was made from may be
    # advanced in place before the table is written.
    nft_was: Mapping[int, Endpoint] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not any((self.nft_put, self.slots_put, self.members_put, self.local_put,
                        self.cidrs_put, self.ranges_put,
                        self.services_put, self.services_delete, self.slots_delete,
                        self.members_delete, self.local_delete, self.cidrs_delete,
                        self.ranges_delete, self.nft_delete))

    def summary(self) -> str:
        return (f"services +{len(self.services_put)} -{len(self.services_delete)}, "
                f"slots +{len(self.slots_put)} -{len(self.slots_delete)}, "
                f"members +{len(self.members_put)} -{len(self.members_delete)}, "
                f"backends +{len(self.nft_put)} -{len(self.nft_delete)}, "
                f"local addresses +{len(self.local_put)} -{len(self.local_delete)}, "
                f"pod CIDRs +{len(self.cidrs_put)} -{len(self.cidrs_delete)}, "
                f"source ranges +{len(self.ranges_put)} -{len(self.ranges_delete)}")


def after(current: Current, p: Plan) -> Current:
    """What the kernel holds once `p` is applied to `current` (pure), so the
    manager need not read every map back after each apply."""
    return advance(Current(dict(current.services), dict(current.slots), dict(current.members),
                           dict(current.backends), set(current.local_addresses), set(current.pod_cidrs),
                           set(current.source_ranges), current.capacity), p)


def advance(out: Current, p: Plan) -> Current:
    """`after`, in place: `out` made what the kernel holds once `p` (planned
    from it) is applied; returns it. The work is the plan's size, not the
    maps' (the manager's copy of 10,000 frontends' entries, and freeing the
    old one, took longer than the rest of a one-Service pass)."""
    out.pod_cidrs |= p.cidrs_put
    out.pod_cidrs -= p.cidrs_delete
    out.source_ranges |= p.ranges_put
    out.source_ranges -= p.ranges_delete
    out.backends.update(p.nft_put)
    out.slots.update(p.slots_put)
    out.members.update(p.members_put)
    out.local_addresses |= p.local_put
    out.services.update(p.services_put)
    for k in p.services_delete:
        del out.services[k]
    for k in p.slots_delete:
        del out.slots[k]
    for k in p.members_delete:
        del out.members[k]
    out.local_addresses -= p.local_delete
    for k in p.nft_delete:
        del out.backends[k]
    return out


_SCOPES = {"any": layout.SCOPE_ANY, "pod": layout.SCOPE_POD}
_MASQ = {"": 0, "all": layout.SVC_MASQ_ALL, "off-pod": layout.SVC_MASQ_OFF_POD}


def service_key(svc: Service) -> ServiceKey:
    addr = int(svc.address) if svc.address is not None else 0
    return _new(ServiceKey, (addr, svc.port, PROTOCOLS[svc.protocol], _SCOPES[svc.scope]))


def _flags(svc: Service, has_pod_twin: bool) -> int:
    return ((layout.SVC_AFFINITY if svc.affinity_timeout else 0) | _MASQ[svc.masquerade]
            | (layout.SVC_DROP_EMPTY if svc.drop_when_empty else 0)
            | (layout.SVC_SOURCE_RANGES if svc.source_ranges else 0)
            | (layout.SVC_POD_VARIANT if has_pod_twin else 0))


class _Ids:
    """Stable small-integer ids: keep the ones in use, never reuse a freed one
    within one apply, hand out the lowest free otherwise. `current` (thing ->
    id) is read, not copied; `release` frees an id for a later apply."""

    def __init__(self, current: Mapping, limit: int, what: str):
        self.current = current
        self.new: dict = {}
        self.used = set(current.values())
        top = max(self.used, default=0)
        self.holes = [i for i in range(1, top + 1) if i not in self.used]  # sorted: a heap
        self.top = top + 1
        self.limit = limit
        self.what = what
        self.fresh: list[int] = []

    def get(self, thing) -> int:
        found = self.current.get(thing)
        if found is None:
            found = self.new.get(thing)
        if found is not None:
            return found
        holes = self.holes
        while holes and holes[0] in self.used:
            heapq.heappop(holes)
        if holes:
            got = heapq.heappop(holes)
        else:
            got, self.top = self.top, self.top + 1
        if got > self.limit:
            raise CapacityError(f"more than {self.limit} {self.what} ids needed")
        self.used.add(got)
        self.new[thing] = got
        self.fresh.append(got)
        return got

    def release(self, i: int) -> None:
        self.used.discard(i)
        heapq.heappush(self.holes, i)


class _Part(NamedTuple):
    """One frontend's share of the maps, as planned from one Service value."""

    svc: Service
    twin: bool                      # a scope "pod" entry shares its address
    affinity_id: int
    val: ServiceVal
    members: dict[MemberKey, SlotVal]
    endpoints: dict[EpKey, Endpoint]  # its live backends'
    ranges: frozenset[RangeKey]


def _part(svc: Service, key: ServiceKey, sid: int, twin: bool, affinity_id: int, old: ServiceVal | None,
          slots: Mapping[SlotKey, SlotVal], backend_id) -> tuple[_Part, dict[SlotKey, SlotVal]]:
    """The entries of one frontend, and the slots to write for it (a new
    generation unless its table is already in place)."""
    members: dict[MemberKey, SlotVal] = {}
    entries: list[SlotVal] = []
    live = [b for b in svc.backends if b.weight > 0]
    for b in live:
        bid = backend_id((b.address._ip, b.port))
        # tuple.__new__: a Record without the Python-level __new__ (hot loop).
        val = _new(SlotVal, (bid, layout.SLOT_MASQ if b.masquerade else 0, sid, int(b.address)))
        members[_new(MemberKey, (sid, bid))] = val
        entries.append(val)
    table = [entries[i] for i in slot_table([b.weight for b in live])]
    if old is not None and old.id == sid:
        same = old.slot_count == len(table) and all(
            slots.get(_new(SlotKey, (sid, old.gen, i))) == v for i, v in enumerate(table))
        gen = old.gen if same else (old.gen + 1) & 0xFFFFFFFF
    else:
        same, gen = False, 0
    new_slots = {} if same else {_new(SlotKey, (sid, gen, i)): v for i, v in enumerate(table)}
    val = _new(ServiceVal, (sid, gen, len(table), _flags(svc, twin), svc.affinity_timeout, affinity_id, *key))
    ranges = frozenset(_new(RangeKey, (32 + net.prefixlen, sid, int(net.network_address)))
                       for net in svc.source_ranges)
    return _Part(svc, twin, affinity_id, val, members, {(b.address._ip, b.port): b.endpoint for b in live},
                 ranges), new_slots


def _by_endpoint(backends: Mapping[int, Endpoint]) -> dict[EpKey, int]:
    return {(ep[0]._ip, ep[1]): bid for bid, ep in backends.items()}


def _record(key: ServiceKey, part: _Part, old: ServiceVal | None, new_slots: Mapping[SlotKey, SlotVal],
            slots_put: dict, services_put: dict, flushes: list) -> None:
    """What a planned frontend adds to the plan: its new slots, its entry
    when it differs, and a conntrack flush. A UDP flow the kernel tracked
    before this frontend had a backend was never NATed, and its conntrack
    entry would keep it so for as long as the client sends: flushed, as
    kube-proxy does."""
    slots_put.update(new_slots)
    if old != part.val:
        services_put[key] = part.val
    if key.proto == UDP and part.val.slot_count and (old is None or old.slot_count == 0):
        flushes.append((_vip(key), key.port, None))


def _ordered(desired: Dataplane, known=None) -> list[tuple[Service, ServiceKey]]:
    """(service, key), scope "pod" entries first: the batch writes in order,
    and a twin's POD_VARIANT flag must never point at nothing. known: a
    service's key if already known, else None."""
    pods, anys = [], []
    for svc in desired.services:
        key = known(svc) if known is not None else None
        if key is None:
            key = service_key(svc)
        (pods if key.scope == layout.SCOPE_POD else anys).append((svc, key))
    return pods + anys


def _groups(ordered, sid_of) -> dict[str, int]:
    """An affinity group is kept under its lowest service id (ids are stable)."""
    groups: dict[str, int] = {}
    for svc, key in ordered:
        if svc.affinity_timeout and svc.affinity_group:
            sid = sid_of(key)
            groups[svc.affinity_group] = min(sid, groups.get(svc.affinity_group, sid))
    return groups


def _plain(svc: Service) -> bool:
    """Neither a scope "pod" entry nor in an affinity group: a change to it
    changes no other frontend's entry."""
    return svc.scope != "pod" and not (svc.affinity_timeout and svc.affinity_group)


def _affinity_id(svc: Service, groups: Mapping[str, int]) -> int:
    return groups.get(svc.affinity_group, 0) if svc.affinity_timeout else 0


def plan(desired: Dataplane, current: Current, marks: MarkConfig) -> Plan:
    """The whole comparison of `desired` with `current`."""
    return _plan_all(desired, current, marks)[0]


def _plan_all(desired: Dataplane, current: Current, marks: MarkConfig) -> tuple[Plan, dict[ServiceKey, _Part]]:
    cur_services = current.services
    svc_ids = _Ids({k: v.id for k, v in cur_services.items()}, 2**31, "service")
    # nft holds the backend ids that exist; reverse it to reuse them.
    backend_ids = _Ids(_by_endpoint(current.backends), marks.max_backend_id, "backend")

    services_put: dict[ServiceKey, ServiceVal] = {}
    slots_put: dict[SlotKey, SlotVal] = {}
    members_want: dict[MemberKey, SlotVal] = {}
    endpoints_want: dict[int, Endpoint] = {}
    names: dict[int, str] = {}
    flushes: list[Flush] = []
    ranges_want: set[RangeKey] = set()
    parts: dict[ServiceKey, _Part] = {}

    ordered = _ordered(desired)
    twins = {key[:3] for _, key in ordered if key.scope == layout.SCOPE_POD}
    groups = _groups(ordered, svc_ids.get)
    for svc, key in ordered:
        sid = svc_ids.get(key)
        names[sid] = svc.name or svc.key_text
        old = cur_services.get(key)
        part, new_slots = _part(svc, key, sid, key.scope == layout.SCOPE_ANY and key[:3] in twins,
                                _affinity_id(svc, groups), old, current.slots, backend_ids.get)
        parts[key] = part
        members_want.update(part.members)
        for k, ep in part.endpoints.items():
            endpoints_want[backend_ids.get(k)] = ep
        ranges_want |= part.ranges
        _record(key, part, old, new_slots, slots_put, services_put, flushes)

    live = {(p.val.id, p.val.gen): p.val.slot_count for p in parts.values()}
    services_delete = [k for k in cur_services if k not in parts]
    removed_ids = [cur_services[k].id for k in services_delete]
    # Slots of generations no entry names, and any beyond a live table's end.
    slots_delete = [k for k in current.slots if k.slot >= live.get(k[:2], 0)]  # k[:2]: (service_id, gen)

    members_put = {k: v for k, v in members_want.items() if current.members.get(k) != v}
    members_delete = [k for k in current.members if k not in members_want]

    nft_put = {bid: ep for bid, ep in endpoints_want.items() if current.backends.get(bid) != ep}
    nft_delete = [bid for bid in current.backends if bid not in endpoints_want]

    # Flows of removed UDP services and of backends removed from UDP services
    # would keep their old binding for as long as packets come.
    by_id = {val.id: key for key, val in cur_services.items()}
    for key in services_delete:
        if key.proto == UDP:
            flushes.append((_vip(key), key.port, None))
    deleted = set(services_delete)
    for m in members_delete:
        key = by_id.get(m.service_id)
        if key is None or key in deleted or key.proto != UDP or m.backend_id not in current.backends:
            continue
        flushes.append((_vip(key), key.port, current.backends[m.backend_id]))

    result = _finish(desired, current, parts, dict(
        nft_put=nft_put, slots_put=slots_put, members_put=members_put,
        ranges_put=ranges_want - current.source_ranges, fresh_ids=svc_ids.fresh,
        services_put=services_put, services_delete=services_delete, slots_delete=slots_delete,
        members_delete=members_delete, removed_ids=removed_ids,
        ranges_delete=current.source_ranges - ranges_want, nft_delete=nft_delete,
        service_ids={k: p.val.id for k, p in parts.items()}, names=names, udp_flushes=flushes))
    return result, parts


def _finish(desired: Dataplane, current: Current, parts: Mapping[ServiceKey, _Part], fields: dict) -> Plan:
    local_want = {int(a) for a in desired.local_addresses}
    cidrs_want = {_new(CidrKey, (c.prefixlen, int(c.network_address))) for c in desired.pod_cidrs}
    was = current.backends
    nft_was = {bid: was[bid] for bid in (*fields["nft_delete"], *fields["nft_put"]) if bid in was}
    result = Plan(local_put=local_want - current.local_addresses, local_delete=current.local_addresses - local_want,
                  cidrs_put=cidrs_want - current.pod_cidrs, cidrs_delete=current.pod_cidrs - cidrs_want,
                  changed={k: parts[k].svc for k in fields["services_put"]}, nft_was=nft_was, **fields)
    check_capacity(result, current)
    return result


class Tracker:
    """Plans like `plan`, but only for the frontends whose Service value
    changed since the last plan applied (kube-proxy's change tracking):
    each frontend's share of the maps is kept from the plan that wrote it,
    with a count of the frontends naming each backend. It trusts that the
    kernel holds what it was last told (`applied`); given any other
    `current` (a fresh read of the maps, a failed apply), it compares
    everything, as `plan` does. The plans are `plan`'s, field for field."""

    def __init__(self):
        self._state: Current | None = None  # what the last applied plan left
        self._marks: MarkConfig | None = None
        self._parts: dict[ServiceKey, _Part] = {}
        self._keys: dict[int, ServiceKey] = {}   # id(Service) -> key, checked against the part
        self._refs: dict[EpKey, int] = {}     # frontends naming each backend
        self._bids: dict[EpKey, int] = {}
        self._sids: _Ids | None = None
        self._backend_ids: _Ids | None = None
        self._service_ids: dict[ServiceKey, int] = {}
        self._names: dict[int, str] = {}
        self._pending: tuple | None = None

    def plan(self, desired: Dataplane, current: Current, marks: MarkConfig) -> Plan:
        trusted = current is self._state and marks == self._marks
        self._state = self._pending = None  # until `applied`
        if not trusted:
            p, parts = _plan_all(desired, current, marks)
            self._pending = (p, parts, marks, None)
            return p
        return self._plan_changes(desired, current, marks)

    def applied(self, p: Plan, state: Current) -> None:
        """`p`, the last plan made, is written; the kernel holds `state`."""
        if self._pending is None or self._pending[0] is not p:
            return
        _, parts, marks, delta = self._pending
        self._pending = None
        if delta is None:  # a full plan: index it all again
            self._parts = parts
            self._refs = {}
            for part in parts.values():
                for ep in part.endpoints:
                    self._refs[ep] = self._refs.get(ep, 0) + 1
            self._bids = _by_endpoint(state.backends)
            self._sids = _Ids({k: v.id for k, v in state.services.items()}, 2**31, "service")
            self._backend_ids = _Ids(self._bids, marks.max_backend_id, "backend")
            self._keys = {id(part.svc): key for key, part in parts.items()}
        else:
            for key, part in parts.items():
                was = self._parts.get(key)
                if was is not None and was.svc is not part.svc:
                    self._keys.pop(id(was.svc), None)
                self._parts[key] = part
                self._keys[id(part.svc)] = key
            for key in p.services_delete:
                self._keys.pop(id(self._parts.pop(key).svc), None)
            for ep, d in delta.items():
                n = self._refs.get(ep, 0) + d
                if n:
                    self._refs[ep] = n
                else:
                    self._refs.pop(ep, None)
            self._bids.update(self._backend_ids.new)
            for bid in p.nft_delete:
                ep = p.nft_was[bid]
                del self._bids[(ep[0]._ip, ep[1])]
                self._backend_ids.release(bid)
            self._sids.current.update(self._sids.new)
            for key in p.services_delete:
                del self._sids.current[key]
            for sid in p.removed_ids:
                self._sids.release(sid)
            for ids in (self._sids, self._backend_ids):
                ids.new, ids.fresh = {}, []
        self._service_ids, self._names = p.service_ids, p.names
        self._state, self._marks = state, marks

    def _new_and_gone(self, desired: Dataplane) -> tuple[list, list[ServiceKey]] | None:
        """(new Service objects with their keys, in `_ordered`'s order; keys
        of the objects gone), found by identity with set operations instead
        of a look at every frontend; None where only a look at every frontend
        is right (a scope "pod" entry or an affinity group among them)."""
        now = {id(s): s for s in desired.services}
        keys, parts = self._keys, self._parts
        new_ids = now.keys() - keys.keys()
        gone = []
        for i in keys.keys() - now.keys():
            key = keys[i]
            was = parts.get(key)
            if was is None or id(was.svc) != i or not _plain(was.svc):
                return None
            gone.append(key)
        new = [s for s in desired.services if id(s) in new_ids] if new_ids else []
        if not all(_plain(s) for s in new):
            return None
        return [(s, service_key(s)) for s in new], gone

    def _plan_changes(self, desired: Dataplane, current: Current, marks: MarkConfig) -> Plan:
        parts, sids, bids = self._parts, self._sids, self._backend_ids  # emptied of new ids by `applied`
        keys = self._keys

        def known(svc: Service) -> ServiceKey | None:
            # By id(): a hint only, good while that very Service is the part's.
            key = keys.get(id(svc))
            was = parts.get(key) if key is not None else None
            return key if was is not None and was.svc is svc else None

        fast = self._new_and_gone(desired)
        if fast is None:
            ordered = _ordered(desired, known)
            twins = {key[:3] for _, key in ordered if key.scope == layout.SCOPE_POD}
            groups = _groups(ordered, sids.get)
        else:
            # Only the new Service objects are looked at. None of them, and
            # none of the gone ones, is a scope "pod" entry or in an affinity
            # group (or this is not taken), so no other frontend's twin flag
            # or group id can change with them.
            ordered, gone_keys = fast
            twins = {key[:3] for _, key in ordered
                     if _new(ServiceKey, (*key[:3], layout.SCOPE_POD)) in parts}
            groups = {}

        changed: dict[ServiceKey, _Part] = {}
        services_put: dict[ServiceKey, ServiceVal] = {}
        slots_put: dict[SlotKey, SlotVal] = {}
        members_put: dict[MemberKey, SlotVal] = {}
        members_delete: list[MemberKey] = []
        slots_delete: list[SlotKey] = []
        ranges_put: set[RangeKey] = set()
        ranges_delete: set[RangeKey] = set()
        delta: dict[EpKey, int] = {}
        endpoint: dict[EpKey, Endpoint] = {}
        flushes: list[Flush] = []
        names: dict[int, str] | None = None
        wanted = set()
        for svc, key in ordered:
            wanted.add(key)
            sid = sids.get(key)
            twin = key.scope == layout.SCOPE_ANY and key[:3] in twins
            aff = _affinity_id(svc, groups)
            was = parts.get(key)
            if was is not None and was.twin == twin and was.affinity_id == aff and (was.svc is svc or was.svc == svc):
                if was.svc is not svc:
                    changed[key] = was._replace(svc=svc)
                continue
            old = current.services.get(key)
            part, new_slots = _part(svc, key, sid, twin, aff, old, current.slots, bids.get)
            changed[key] = part
            name = svc.name or svc.key_text
            if (names if names is not None else self._names).get(sid) != name:
                if names is None:
                    names = dict(self._names)  # copied on write: plans hand theirs out
                names[sid] = name
            _record(key, part, old, new_slots, slots_put, services_put, flushes)
            old_members = was.members if was is not None else {}
            for k, v in part.members.items():
                if old_members.get(k) != v:
                    members_put[k] = v
            gone = [k for k in old_members if k not in part.members]
            members_delete += gone
            if key.proto == UDP:
                flushes += [(_vip(key), key.port, current.backends[m.backend_id]) for m in gone]
            if was is not None:
                if part.val.gen != old.gen:
                    slots_delete += [_new(SlotKey, (sid, old.gen, i)) for i in range(old.slot_count)]
                ranges_delete |= was.ranges - part.ranges
                for ep in was.endpoints:
                    delta[ep] = delta.get(ep, 0) - 1
            ranges_put |= part.ranges - (was.ranges if was is not None else frozenset())
            endpoint.update(part.endpoints)
            for ep in part.endpoints:
                delta[ep] = delta.get(ep, 0) + 1

        if fast is not None:
            services_delete = [k for k in gone_keys if k not in wanted]
        elif len(wanted) != len(parts) or sids.fresh:
            services_delete = [k for k in parts if k not in wanted]
        else:
            services_delete = []
        removed_ids = []
        for key in services_delete:
            was = parts[key]
            old = current.services[key]
            removed_ids.append(old.id)
            slots_delete += [_new(SlotKey, (old.id, old.gen, i)) for i in range(old.slot_count)]
            members_delete += list(was.members)
            ranges_delete |= was.ranges
            for ep in was.endpoints:
                delta[ep] = delta.get(ep, 0) - 1
            if key.proto == UDP:
                flushes.append((_vip(key), key.port, None))
        if services_delete:
            names = dict(names if names is not None else self._names)
            for sid in removed_ids:
                names.pop(sid, None)

        nft_put: dict[int, Endpoint] = {}
        nft_delete: list[int] = []
        for ep, d in delta.items():
            if not d:
                continue
            before = self._refs.get(ep, 0)
            if before and not before + d:
                nft_delete.append(self._bids[ep])
            elif not before:
                nft_put[bids.get(ep)] = endpoint[ep]
        service_ids = self._service_ids
        if (services_delete or sids.fresh) and fast is not None:
            service_ids = {**service_ids, **{k: sids.get(k) for _, k in ordered}}
            for k in services_delete:
                del service_ids[k]
        elif services_delete or sids.fresh:
            service_ids = {k: sids.get(k) for _, k in ordered}
        result = _finish(desired, current, changed, dict(
            nft_put=nft_put, slots_put=slots_put, members_put=members_put,
            ranges_put=ranges_put, fresh_ids=list(sids.fresh),
            services_put=services_put, services_delete=services_delete, slots_delete=slots_delete,
            members_delete=members_delete, removed_ids=removed_ids, ranges_delete=ranges_delete,
            nft_delete=nft_delete, service_ids=service_ids,
            names=names if names is not None else self._names, udp_flushes=flushes))
        self._pending = (result, changed, marks, delta)
        return result

def _vip(key: ServiceKey) -> ipaddress.IPv4Address | None:
    return ipaddress.IPv4Address(key.addr) if key.addr else None


def check_capacity(p: Plan, current: Current) -> None:
    """Fail before any write if a map would overflow, at the end or in between."""
    def over(name: str, count: int, limit: int):
        if count > limit:
            raise CapacityError(f"map {name} would hold {count} entries; its limit is {limit}")

    services_after = len(current.services) - len(p.services_delete) + sum(
        1 for k in p.services_put if k not in current.services)
    cap = current.capacity
    over("blixt_services", services_after, cap.services)
    # Slots peak after the new generations are written and before old ones go.
    over("blixt_slots", len(current.slots) + len(p.slots_put), cap.slots)
    members_peak = len(current.members) + sum(1 for k in p.members_put if k not in current.members)
    over("blixt_members", members_peak, cap.members)
    over("blixt_local_addrs", len(current.local_addresses | p.local_put), layout.MAX_LOCAL_ADDRS)
    over("blixt_pod_cidrs", len(current.pod_cidrs | p.cidrs_put), layout.MAX_POD_CIDRS)
    over("blixt_source_ranges", len(current.source_ranges | p.ranges_put), layout.MAX_SOURCE_RANGES)


def describe(keys: Iterable[ServiceKey]) -> list[str]:
    return [f"{ipaddress.IPv4Address(k.addr) if k.addr else '*'}:{k.port}/"
            f"{layout.PROTOCOL_NAMES.get(k.proto, k.proto)}{' (from pods)' if k.scope else ''}" for k in keys]


# -- what the nftables table must know -----------------------------------------


@dataclasses.dataclass(frozen=True)
class NftView:
    """The nftables table's content, derived from the maps (see module doc).
    Addresses are ints, protocols numbers, ports host order. Every backend
    is also an endpoint whose INVALID packets are dropped: the table keeps
    that set beside the map, element for element."""

    backends: Mapping[int, Endpoint] = dataclasses.field(default_factory=dict)  # id -> endpoint
    frontends: frozenset[tuple[int, int, int]] = frozenset()       # addr, proto, port
    node_frontends: frozenset[tuple[int, int]] = frozenset()       # proto, port on node addresses
    node_addrs: frozenset[int] = frozenset()
    vips: frozenset[int] = frozenset()          # frontend addresses that are not the node's
    outputs: Mapping[int, "Output"] = dataclasses.field(default_factory=dict)  # service id -> Output
    # Bookkeeping for `after` and nft_changes, not content: frontends per
    # address (None: not counted), and which view this one was made from
    # by `after`, with the outputs that may differ from that view's.
    per_addr: Mapping[int, int] | None = dataclasses.field(default=None, compare=False, repr=False)
    made_from: int | None = dataclasses.field(default=None, compare=False, repr=False)
    changed_outputs: frozenset[int] = dataclasses.field(default=frozenset(), compare=False, repr=False)

    SETS = ("frontends", "node_frontends", "node_addrs", "vips")

    @classmethod
    def of(cls, cur: Current, outs: Mapping[int, "Output"] | None = None, backends=None) -> "NftView":
        exact = [k for k in cur.services if k.addr]
        frontends = frozenset((k.addr, k.proto, k.port) for k in exact)
        return cls(
            backends=dict(cur.backends) if backends is None else backends,
            frontends=frontends,
            node_frontends=frozenset((k.proto, k.port) for k in cur.services if not k.addr),
            node_addrs=frozenset(cur.local_addresses),
            vips=frozenset(k.addr for k in exact) - frozenset(cur.local_addresses),
            outputs=outputs(cur) if outs is None else outs,
            per_addr=collections.Counter(f[0] for f in frontends),
        )

    def after(self, target: Current, p: Plan) -> "NftView":
        """The view of `target` (= after(before, p)), with only the outputs
        of frontends `p` touches made again. `self` is the view of `before`.
        A frontend keeps its service id while it exists, so its new output
        replaces its old one; removed frontends' outputs go by id."""
        touched = set(p.services_put) | set(p.services_delete)
        ranged = {r.service_id for r in p.ranges_put | p.ranges_delete}
        if ranged:
            touched |= {k for k, sid in p.service_ids.items() if sid in ranged}
        # Outputs are kept under their scope "any" entry.
        mains = {_new(ServiceKey, (k.addr, k.port, k.proto, layout.SCOPE_ANY)) for k in touched}
        outs = dict(self.outputs)
        for sid in p.removed_ids:
            outs.pop(sid, None)
        made = outputs(target, only=mains)
        outs.update(made)
        changed = frozenset(made) | frozenset(p.removed_ids)
        # target.backends, shared: the manager's state, which only `advance` changes.
        if self.per_addr is None or p.local_put or p.local_delete:
            return dataclasses.replace(NftView.of(target, outs, target.backends), made_from=id(self),
                                       changed_outputs=changed)
        # Only the frontends the plan wrote or deleted can come or go: the
        # sets are the old ones with those put right (at 10,000 frontends,
        # making them all again was a tenth of a one-Service change).
        keys = {*p.services_put, *p.services_delete}
        exact = {(k.addr, k.proto, k.port) for k in keys if k.addr}
        wild = {(k.proto, k.port) for k in keys if not k.addr}
        have = target.services

        def present(addr: int, proto: int, port: int) -> bool:
            return any(_new(ServiceKey, (addr, port, proto, scope)) in have
                       for scope in (layout.SCOPE_ANY, layout.SCOPE_POD))

        came = {f for f in exact if present(*f)}
        went = exact - came
        per_addr = dict(self.per_addr)
        for addr, _, _ in came - self.frontends:
            per_addr[addr] = per_addr.get(addr, 0) + 1
        for addr, _, _ in went & self.frontends:
            per_addr[addr] -= 1
            if not per_addr[addr]:
                del per_addr[addr]
        vips = set(self.vips)
        for addr in {f[0] for f in exact}:
            if addr in per_addr and addr not in self.node_addrs:
                vips.add(addr)
            else:
                vips.discard(addr)
        node_came = {w for w in wild if present(0, *w)}
        return NftView(
            backends=target.backends,
            frontends=(self.frontends - went) | came,
            node_frontends=(self.node_frontends - (wild - node_came)) | node_came,
            node_addrs=self.node_addrs,
            vips=frozenset(vips),
            outputs=outs,
            per_addr=per_addr,
            made_from=id(self),
            changed_outputs=changed,
        )


@dataclasses.dataclass(frozen=True)
class Output:
    """How the node's own traffic (processes, hostNetwork pods) to one
    frontend is served: TC ingress never sees it, so an nft nat output chain
    picks among the same slots (numgen), with kube-proxy's per-endpoint
    affinity sets, masquerade and source ranges. Ints as in NftView."""

    key: tuple[int, int, int]             # addr (0: NodePort on node addresses), proto, port
    slots: tuple[Endpoint, ...]           # the slot table, in slot order; (): no endpoint
    backend_ids: tuple[int, ...]          # each slot's backend id (names the affinity sets)
    affinity: int = 0                     # seconds; 0: none
    masquerade: bool = False
    ranges: tuple[tuple[int, int], ...] = ()  # (network, prefix length); (): any source
    drop: bool = False                    # no endpoint: drop (else reject)


_OUT_MASQ = layout.SVC_MASQ_ALL | layout.SVC_MASQ_OFF_POD


def outputs(cur: Current, only: Iterable[ServiceKey] | None = None) -> dict[int, Output]:
    """One Output per frontend (or per frontend of `only` that exists), keyed
    by its scope "any" entry's id, served from the scope "pod" twin where
    there is one (kube-proxy sends the node's own traffic to a Local
    policy's external address to all endpoints, and masquerades it), else
    from that entry. The node's address is never a pod's, so "off-pod"
    masquerade applies."""
    ranges: dict[int, list[tuple[int, int]]] = {}
    for r in cur.source_ranges:
        ranges.setdefault(r.service_id, []).append((r.addr, r.prefixlen - 32))
    if only is None:
        keys = cur.services.items()
    else:
        keys = [(k, cur.services[k]) for k in only if k in cur.services]
    out = {}
    for key, val in keys:
        if key.scope != layout.SCOPE_ANY:
            continue
        twin = None
        if val.flags & layout.SVC_POD_VARIANT:
            twin = cur.services.get(_new(ServiceKey, (key.addr, key.port, key.proto, layout.SCOPE_POD)))
        entry = twin or val
        picked = [cur.slots.get(_new(SlotKey, (entry.id, entry.gen, i))) for i in range(entry.slot_count)]
        if None in picked or any(s.backend_id not in cur.backends for s in picked):
            picked = []  # a torn table (mid-apply): nothing rather than a wrong choice
        masq = twin is not None or bool(entry.flags & _OUT_MASQ) or any(s.flags & layout.SLOT_MASQ for s in picked)
        out[val.id] = Output(
            key=(key.addr, key.proto, key.port),
            slots=tuple(cur.backends[s.backend_id] for s in picked),
            backend_ids=tuple(s.backend_id for s in picked),
            affinity=entry.affinity_timeout if entry.flags & layout.SVC_AFFINITY else 0,
            masquerade=masq,
            ranges=tuple(sorted(ranges.get(val.id, ()))),
            drop=bool(entry.flags & layout.SVC_DROP_EMPTY),
        )
    return out


@dataclasses.dataclass(frozen=True)
class NftChange:
    """Elements to add and to delete, set by set. Backends are deleted before
    they are put, so a put may replace an id's endpoint."""

    put_backends: Mapping[int, Endpoint]
    delete_backends: Mapping[int, Endpoint]  # id -> the endpoint the table holds for it now
    add: Mapping[str, frozenset]
    delete: Mapping[str, frozenset]
    # The node's own traffic (Output by service id): what to write, and what
    # the table holds now for each written or removed one.
    put_outputs: Mapping[int, Output] = dataclasses.field(default_factory=dict)
    old_outputs: Mapping[int, Output] = dataclasses.field(default_factory=dict)
    delete_outputs: Mapping[int, Output] = dataclasses.field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.put_backends or self.delete_backends or self.put_outputs or self.delete_outputs
                    or any(self.add.values()) or any(self.delete.values()))


def nft_changes(old: NftView, new: NftView, p: Plan | None = None) -> tuple[NftChange, NftChange]:
    """Two steps from old to new: additions go before the maps change (a
    frontend's decision must find its backend and its frontend entry), and
    deletions after (nothing marks for them any more). p: the plan that
    leads from old to new, whose backend changes are then taken as they are
    instead of comparing every backend."""
    if p is None:
        put = {bid: ep for bid, ep in new.backends.items() if old.backends.get(bid) != ep}
        gone = {bid: ep for bid, ep in old.backends.items() if bid not in new.backends}
        replaced = {bid: old.backends[bid] for bid in put if bid in old.backends}
    else:  # old.backends may be advanced already: the plan says what it held
        put = dict(p.nft_put)
        gone = {bid: p.nft_was[bid] for bid in p.nft_delete}
        replaced = {bid: p.nft_was[bid] for bid in put if bid in p.nft_was}
    adds = {s: getattr(new, s) - getattr(old, s) for s in NftView.SETS}
    dels = {s: getattr(old, s) - getattr(new, s) for s in NftView.SETS}
    empty = {s: frozenset() for s in NftView.SETS}
    # The output path does not read the maps: all of it goes in the first step.
    if p is not None and new.made_from == id(old):  # only the outputs `after` made again can differ
        new_outs = ((sid, new.outputs[sid]) for sid in new.changed_outputs if sid in new.outputs)
        old_outs = ((sid, old.outputs[sid]) for sid in new.changed_outputs if sid in old.outputs)
    else:
        new_outs, old_outs = new.outputs.items(), old.outputs.items()
    out_put = {sid: o for sid, o in new_outs if (was := old.outputs.get(sid)) is not o and was != o}
    out_old = {sid: old.outputs[sid] for sid in out_put if sid in old.outputs}
    out_gone = {sid: o for sid, o in old_outs if sid not in new.outputs}
    return (NftChange(put, replaced, adds, empty, out_put, out_old, out_gone),
            NftChange({}, gone, empty, dels))
