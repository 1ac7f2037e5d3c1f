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

import dataclasses
import ipaddress
from typing import Iterable, Mapping

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
    out = Current(dict(current.services), dict(current.slots), dict(current.members),
                  dict(current.backends), set(current.local_addresses),
                  (current.pod_cidrs | p.cidrs_put) - p.cidrs_delete,
                  (current.source_ranges | p.ranges_put) - p.ranges_delete)
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
    within one apply, hand out the lowest free otherwise."""

    def __init__(self, current: Mapping, limit: int, what: str):
        self.current = dict(current)  # thing -> id
        self.taken = set(self.current.values())
        self.limit = limit
        self.what = what
        self.next = 1
        self.fresh: list[int] = []

    def get(self, thing) -> int:
        found = self.current.get(thing)
        if found is not None:
            return found
        while self.next in self.taken:
            self.next += 1
        if self.next > self.limit:
            raise CapacityError(f"more than {self.limit} {self.what} ids needed")
        self.taken.add(self.next)
        self.current[thing] = self.next
        self.fresh.append(self.next)
        return self.next


def plan(desired: Dataplane, current: Current, marks: MarkConfig) -> Plan:
    cur_services = current.services
    svc_ids = _Ids({k: v.id for k, v in cur_services.items()}, 2**31, "service")
    # nft holds the backend ids that exist; reverse it to reuse them.
    backend_ids = _Ids({ep: bid for bid, ep in current.backends.items()}, marks.max_backend_id, "backend")

    cur_slots_by_service: dict[tuple[int, int], dict[int, SlotVal]] = {}
    for k, val in current.slots.items():
        cur_slots_by_service.setdefault((k.service_id, k.gen), {})[k.slot] = val

    services_put: dict[ServiceKey, ServiceVal] = {}
    slots_put: dict[SlotKey, SlotVal] = {}
    members_want: dict[MemberKey, SlotVal] = {}
    endpoints_want: dict[int, Endpoint] = {}
    service_ids: dict[ServiceKey, int] = {}
    names: dict[int, str] = {}
    flushes: list[Flush] = []
    ranges_want: set[RangeKey] = set()
    twins = {(s.address, s.port, s.protocol) for s in desired.services if s.scope == "pod"}

    # A scope "pod" entry goes first: the batch writes in order, and its
    # twin's POD_VARIANT flag must never point at nothing.
    ordered = sorted(desired.services, key=lambda s: s.scope != "pod")
    # An affinity group is kept under its lowest service id (ids are stable).
    groups: dict[str, int] = {}
    for svc in ordered:
        sid = svc_ids.get(service_key(svc))
        if svc.affinity_timeout and svc.affinity_group:
            groups[svc.affinity_group] = min(sid, groups.get(svc.affinity_group, sid))
    for svc in ordered:
        key = service_key(svc)
        sid = svc_ids.get(key)
        service_ids[key] = sid
        names[sid] = svc.name or svc.key_text
        live = [b for b in svc.backends if b.weight > 0]
        entries: list[SlotVal] = []
        for b in live:
            ep = b.endpoint
            bid = backend_ids.get(ep)
            endpoints_want[bid] = ep
            # tuple.__new__: a Record without the Python-level __new__ (hot loop).
            val = _new(SlotVal, (bid, layout.SLOT_MASQ if b.masquerade else 0, sid, int(b.address)))
            members_want[_new(MemberKey, (sid, bid))] = val
            entries.append(val)
        table = [entries[i] for i in slot_table([b.weight for b in live])]
        flags = _flags(svc, svc.scope == "any" and (svc.address, svc.port, svc.protocol) in twins)
        for net in svc.source_ranges:
            ranges_want.add(_new(RangeKey, (32 + net.prefixlen, sid, int(net.network_address))))

        old = cur_services.get(key)
        if old is not None and old.id == sid:
            old_table = cur_slots_by_service.get((sid, old.gen), {})
            same_slots = len(old_table) == len(table) == old.slot_count and all(
                old_table.get(i) == v for i, v in enumerate(table))
            gen = old.gen if same_slots else (old.gen + 1) & 0xFFFFFFFF
        else:
            same_slots, gen = False, 0
        if not same_slots:
            for i, v in enumerate(table):
                slots_put[_new(SlotKey, (sid, gen, i))] = v
        affinity_id = groups.get(svc.affinity_group, 0) if svc.affinity_timeout else 0
        val = _new(ServiceVal, (sid, gen, len(table), flags, svc.affinity_timeout, affinity_id, *key))
        if old != val:
            services_put[key] = val
        # A UDP flow the kernel tracked before this frontend had a backend
        # was never NATed, and its conntrack entry would keep it so for as
        # long as the client sends: flush it, as kube-proxy does.
        if key.proto == UDP and table and (old is None or old.slot_count == 0):
            flushes.append((_vip(key), key.port, None))

    wanted_keys = set(service_ids)
    final = {k: services_put.get(k) or cur_services[k] for k in wanted_keys}
    live_gens = {(v.id, v.gen) for v in final.values()}
    services_delete = [k for k in cur_services if k not in wanted_keys]
    removed_ids = [cur_services[k].id for k in services_delete]
    slots_delete = [k for k in current.slots if k[:2] not in live_gens]  # (service_id, gen)

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

    local_want = {int(a) for a in desired.local_addresses}
    cidrs_want = {_new(CidrKey, (c.prefixlen, int(c.network_address))) for c in desired.pod_cidrs}
    result = Plan(
        nft_put=nft_put, slots_put=slots_put, members_put=members_put,
        local_put=local_want - current.local_addresses,
        cidrs_put=cidrs_want - current.pod_cidrs, ranges_put=ranges_want - current.source_ranges,
        fresh_ids=svc_ids.fresh,
        services_put=services_put, services_delete=services_delete, slots_delete=slots_delete,
        members_delete=members_delete, removed_ids=removed_ids,
        local_delete=current.local_addresses - local_want,
        cidrs_delete=current.pod_cidrs - cidrs_want, ranges_delete=current.source_ranges - ranges_want,
        nft_delete=nft_delete,
        service_ids=service_ids, names=names, udp_flushes=flushes,
    )
    check_capacity(result, current)
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
    over("blixt_services", services_after, layout.MAX_SERVICES)
    # Slots peak after the new generations are written and before old ones go.
    over("blixt_slots", len(current.slots) + len(p.slots_put), layout.MAX_SLOTS)
    members_peak = len(current.members) + sum(1 for k in p.members_put if k not in current.members)
    over("blixt_members", members_peak, layout.MAX_MEMBERS)
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

    SETS = ("frontends", "node_frontends", "node_addrs", "vips")

    @classmethod
    def of(cls, cur: Current) -> "NftView":
        exact = [k for k in cur.services if k.addr]
        return cls(
            backends=dict(cur.backends),
            frontends=frozenset((k.addr, k.proto, k.port) for k in exact),
            node_frontends=frozenset((k.proto, k.port) for k in cur.services if not k.addr),
            node_addrs=frozenset(cur.local_addresses),
            vips=frozenset(k.addr for k in exact) - frozenset(cur.local_addresses),
            outputs=outputs(cur),
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


def outputs(cur: Current) -> dict[int, Output]:
    """One Output per frontend, keyed by its scope "any" entry's id, served
    from the scope "pod" twin where there is one (kube-proxy sends the node's
    own traffic to a Local policy's external address to all endpoints, and
    masquerades it), else from that entry. The node's address is never a
    pod's, so "off-pod" masquerade applies."""
    slots: dict[tuple[int, int], dict[int, SlotVal]] = {}
    for k, v in cur.slots.items():
        slots.setdefault((k.service_id, k.gen), {})[k.slot] = v
    ranges: dict[int, list[tuple[int, int]]] = {}
    for r in cur.source_ranges:
        ranges.setdefault(r.service_id, []).append((r.addr, r.prefixlen - 32))
    out = {}
    for key, val in cur.services.items():
        if key.scope != layout.SCOPE_ANY:
            continue
        twin = None
        if val.flags & layout.SVC_POD_VARIANT:
            twin = cur.services.get(_new(ServiceKey, (key.addr, key.port, key.proto, layout.SCOPE_POD)))
        entry = twin or val
        table = slots.get((entry.id, entry.gen), {})
        picked = [table.get(i) for i in range(entry.slot_count)]
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


def nft_changes(old: NftView, new: NftView) -> tuple[NftChange, NftChange]:
    """Two steps from old to new: additions go before the maps change (a
    frontend's decision must find its backend and its frontend entry), and
    deletions after (nothing marks for them any more)."""
    put = {bid: ep for bid, ep in new.backends.items() if old.backends.get(bid) != ep}
    replaced = {bid: old.backends[bid] for bid in put if bid in old.backends}
    gone = {bid: ep for bid, ep in old.backends.items() if bid not in new.backends}
    adds = {s: getattr(new, s) - getattr(old, s) for s in NftView.SETS}
    dels = {s: getattr(old, s) - getattr(new, s) for s in NftView.SETS}
    empty = {s: frozenset() for s in NftView.SETS}
    # The output path does not read the maps: all of it goes in the first step.
    out_put = {sid: o for sid, o in new.outputs.items() if old.outputs.get(sid) != o}
    out_old = {sid: old.outputs[sid] for sid in out_put if sid in old.outputs}
    out_gone = {sid: o for sid, o in old.outputs.items() if sid not in new.outputs}
    return (NftChange(put, replaced, adds, empty, out_put, out_old, out_gone),
            NftChange({}, gone, empty, dels))
