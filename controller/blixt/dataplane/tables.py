"""From a desired Dataplane and what the kernel holds now, the exact map and
nftables changes to make, in a safe order. Pure: no I/O.

Ids are stable: a service or backend that exists keeps its id (read back
from the maps, so an agent restart changes nothing), and an id freed in this
apply is not handed out again in the same apply, so a packet marked a moment
before the change never reaches a different backend.

A service's slot table changes atomically: new slots are written under a new
generation, then the service entry is flipped to it, then the old slots go.
"""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Iterable, Mapping

from . import layout as limits
from .marks import MarkConfig
from .model import PROTOCOLS, Dataplane, Service
from .slots import slot_table

SVC_AFFINITY = limits.SVC_AFFINITY
SLOT_MASQ = limits.SLOT_MASQ

# Plain-tuple forms of the map entries (see bytecode/blixt.h):
#   service key  (addr: int, port: int, proto: int)          addr 0 = wildcard
#   service      (id, gen, slot_count, flags, affinity_timeout)
#   slot key     (service_id, gen, slot)
#   slot/member  (backend_id, flags)
#   member key   (service_id, backend_id)
ServiceKey = tuple[int, int, int]
ServiceVal = tuple[int, int, int, int, int]
SlotKey = tuple[int, int, int]
SlotVal = tuple[int, int]
MemberKey = tuple[int, int]
Endpoint = tuple[ipaddress.IPv4Address, int]


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


@dataclasses.dataclass
class Plan:
    """Changes in the order the manager applies them."""

    nft_put: dict[int, Endpoint]            # 1. backends new slots will name
    slots_put: dict[SlotKey, SlotVal]       # 2. new generations
    members_put: dict[MemberKey, SlotVal]   # 3. before affinity can point at them
    local_put: set[int]                     # 4. before wildcard services need them
    services_put: dict[ServiceKey, ServiceVal]  # 5. the flip
    services_delete: list[ServiceKey]       # 6. then what is gone
    slots_delete: list[SlotKey]
    members_delete: list[MemberKey]
    stats_delete: list[int]
    local_delete: set[int]
    nft_delete: list[int]                   # 7. last: no slot names them now
    service_ids: dict[ServiceKey, int]      # for logs and metrics
    names: dict[int, str]                   # service id -> Service.name

    @property
    def empty(self) -> bool:
        return not any((self.nft_put, self.slots_put, self.members_put, self.local_put,
                        self.services_put, self.services_delete, self.slots_delete,
                        self.members_delete, self.stats_delete, self.local_delete, self.nft_delete))

    def summary(self) -> str:
        return (f"services +{len(self.services_put)} -{len(self.services_delete)}, "
                f"slots +{len(self.slots_put)} -{len(self.slots_delete)}, "
                f"members +{len(self.members_put)} -{len(self.members_delete)}, "
                f"backends +{len(self.nft_put)} -{len(self.nft_delete)}, "
                f"local addresses +{len(self.local_put)} -{len(self.local_delete)}")


def after(current: Current, p: Plan) -> Current:
    """What the kernel holds once `p` is applied to `current` (pure), so the
    manager need not read every map back after each apply."""
    out = Current(dict(current.services), dict(current.slots), dict(current.members),
                  dict(current.backends), set(current.local_addresses))
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


def service_key(svc: Service) -> ServiceKey:
    addr = int(svc.address) if svc.address is not None else 0
    return (addr, svc.port, PROTOCOLS[svc.protocol])


class _Ids:
    """Stable small-integer ids: keep the ones in use, never reuse a freed one
    within one apply, hand out the lowest free otherwise."""

    def __init__(self, current: Mapping, limit: int, what: str):
        self.current = dict(current)  # thing -> id
        self.taken = set(self.current.values())
        self.limit = limit
        self.what = what
        self.next = 1

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
        return self.next


def plan(desired: Dataplane, current: Current, marks: MarkConfig) -> Plan:
    cur_services = current.services
    svc_ids = _Ids({k: v[0] for k, v in cur_services.items()}, 2**31, "service")
    # nft holds the backend ids that exist; reverse it to reuse them.
    backend_ids = _Ids({ep: bid for bid, ep in current.backends.items()}, marks.max_backend_id, "backend")

    cur_slots_by_service: dict[tuple[int, int], dict[int, SlotVal]] = {}
    for (sid, gen, slot), val in current.slots.items():
        cur_slots_by_service.setdefault((sid, gen), {})[slot] = val

    services_put: dict[ServiceKey, ServiceVal] = {}
    slots_put: dict[SlotKey, SlotVal] = {}
    members_want: dict[MemberKey, SlotVal] = {}
    endpoints_want: dict[int, Endpoint] = {}
    service_ids: dict[ServiceKey, int] = {}
    names: dict[int, str] = {}

    for svc in desired.services:
        key = service_key(svc)
        sid = svc_ids.get(key)
        service_ids[key] = sid
        names[sid] = svc.name or svc.key_text
        live = [b for b in svc.backends if b.weight > 0]
        entries: list[SlotVal] = []
        for b in live:
            bid = backend_ids.get(b.endpoint)
            endpoints_want[bid] = b.endpoint
            val = (bid, SLOT_MASQ if b.masquerade else 0)
            members_want[(sid, bid)] = val
            entries.append(val)
        table = [entries[i] for i in slot_table([b.weight for b in live])]
        flags = SVC_AFFINITY if svc.affinity_timeout else 0

        old = cur_services.get(key)
        if old is not None and old[0] == sid:
            old_table = cur_slots_by_service.get((sid, old[1]), {})
            same_slots = len(old_table) == len(table) == old[2] and all(
                old_table.get(i) == v for i, v in enumerate(table))
            gen = old[1] if same_slots else (old[1] + 1) & 0xFFFFFFFF
        else:
            same_slots, gen = False, 0
        if not same_slots:
            for i, v in enumerate(table):
                slots_put[(sid, gen, i)] = v
        val = (sid, gen, len(table), flags, svc.affinity_timeout)
        if old != val:
            services_put[key] = val

    wanted_keys = set(service_ids)
    final = {k: services_put.get(k) or cur_services[k] for k in wanted_keys}
    live_gens = {(v[0], v[1]) for v in final.values()}
    services_delete = [k for k in cur_services if k not in wanted_keys]
    removed_ids = [cur_services[k][0] for k in services_delete]
    slots_delete = [k for k in current.slots if (k[0], k[1]) not in live_gens]

    members_put = {k: v for k, v in members_want.items() if current.members.get(k) != v}
    members_delete = [k for k in current.members if k not in members_want]

    nft_put = {bid: ep for bid, ep in endpoints_want.items() if current.backends.get(bid) != ep}
    nft_delete = [bid for bid in current.backends if bid not in endpoints_want]

    local_want = {int(a) for a in desired.local_addresses}
    result = Plan(
        nft_put=nft_put, slots_put=slots_put, members_put=members_put,
        local_put=local_want - current.local_addresses, services_put=services_put,
        services_delete=services_delete, slots_delete=slots_delete,
        members_delete=members_delete, stats_delete=removed_ids,
        local_delete=current.local_addresses - local_want, nft_delete=nft_delete,
        service_ids=service_ids, names=names,
    )
    check_capacity(result, current)
    return result


def check_capacity(p: Plan, current: Current) -> None:
    """Fail before any write if a map would overflow, at the end or in between."""
    def over(name: str, count: int, limit: int):
        if count > limit:
            raise CapacityError(f"map {name} would hold {count} entries; its limit is {limit}")

    services_after = len(current.services) - len(p.services_delete) + sum(
        1 for k in p.services_put if k not in current.services)
    over("blixt_services", services_after, limits.MAX_SERVICES)
    # Slots peak after the new generations are written and before old ones go.
    over("blixt_slots", len(current.slots) + len(p.slots_put), limits.MAX_SLOTS)
    members_peak = len(current.members) + sum(1 for k in p.members_put if k not in current.members)
    over("blixt_members", members_peak, limits.MAX_MEMBERS)
    over("blixt_local_addrs", len(current.local_addresses | p.local_put), limits.MAX_LOCAL_ADDRS)


def describe(keys: Iterable[ServiceKey]) -> list[str]:
    names = {v: k for k, v in PROTOCOLS.items()}
    return [f"{ipaddress.IPv4Address(a) if a else '*'}:{port}/{names.get(proto, proto)}"
            for a, port, proto in keys]
