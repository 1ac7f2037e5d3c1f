"""Keeps one node network namespace's dataplane in step with a desired value:
blixt's programs loaded through bpfman and attached to the configured
interfaces, the pinned maps, and the nftables NAT table.

Programs are found again through bpfman's List with our metadata, so an agent
restart adopts what is loaded instead of loading twice; the ids in the maps
and the nft map are read back, so a restart rewrites nothing that is right.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
from typing import Sequence

from blixt.bpfman import client as bpfman

from . import bpf, conntrack, layout, tables
from .marks import MarkConfig
from .model import Dataplane
from .nft import NatTable

log = logging.getLogger(__name__)

PROGRAMS = {"tc": ("blixt_tc", bpfman.TC), "tcx": ("blixt_tcx", bpfman.TCX)}
OWNER_KEY = "blixt.io/owner"
NODE_KEY = "blixt.io/node"
NETNS_KEY = "blixt.io/netns"
CONFIG_KEY = "blixt.io/config"
DEFAULT_PRIORITY = 50


@dataclasses.dataclass(frozen=True)
class Attachment:
    iface: str
    direction: str = "ingress"

    def __post_init__(self):
        if self.direction not in ("ingress", "egress"):
            raise ValueError(f"direction must be ingress or egress, got {self.direction!r}")


@dataclasses.dataclass(frozen=True)
class Settings:
    node: str
    bytecode: bpfman.Bytecode
    attachments: tuple[Attachment, ...]
    mode: str = "tcx"                # "tc" (bpfman dispatcher) or "tcx"
    netns: str | None = None         # `ip netns` name; None: bpfman's own netns
    marks: MarkConfig = MarkConfig()
    priority: int = DEFAULT_PRIORITY
    nft_table: str = "blixt"

    def __post_init__(self):
        if self.mode not in PROGRAMS:
            raise ValueError(f"mode must be tc or tcx, got {self.mode!r}")
        if not self.attachments:
            raise ValueError("at least one interface to attach to is needed")
        if not 1 <= self.priority <= 1000:
            raise ValueError(f"priority must be 1..1000, got {self.priority}")

    @property
    def netns_path(self) -> str | None:
        return f"/var/run/netns/{self.netns}" if self.netns else None

    def fingerprint(self) -> str:
        """What, if changed, needs a reload: config bytes, mode and attachments."""
        text = "|".join([
            bytes(layout.Config.of(self.marks)).hex(), self.mode, str(self.priority),
            ",".join(f"{a.iface}/{a.direction}" for a in self.attachments),
        ])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def metadata(self) -> dict[str, str]:
        return {OWNER_KEY: "blixt-agent", NODE_KEY: self.node, NETNS_KEY: self.netns or "",
                CONFIG_KEY: self.fingerprint()}


class Manager:
    def __init__(self, client: bpfman.BpfmanClient, settings: Settings):
        self.client = client
        self.settings = settings
        self.nft = NatTable(settings.netns, settings.marks, name=settings.nft_table)
        self.programs: list[bpfman.Program] = []
        self.maps: dict[str, bpf.PinnedMap] = {}
        self.adopted = False
        # What the kernel holds, read once and then kept in step with each
        # apply; refresh() reads it again (the agent does on resync).
        self._state: tables.Current | None = None

    # -- programs -----------------------------------------------------------

    def _ours(self) -> list[bpfman.Program]:
        s = self.settings
        match = {OWNER_KEY: "blixt-agent", NODE_KEY: s.node, NETNS_KEY: s.netns or ""}
        return self.client.list(match_metadata=match)

    def ensure_loaded(self) -> None:
        """Adopt our loaded programs if their configuration matches; otherwise
        unload them and load afresh from the bytecode. Idempotent."""
        s = self.settings
        found = self._ours()
        current = [p for p in found if p.metadata.get(CONFIG_KEY) == s.fingerprint()]
        stale = [p for p in found if p not in current]
        if stale or (current and [p.name for p in current] != [PROGRAMS[s.mode][0]]):
            for p in found:
                log.info("unloading stale blixt program %s (id %d)", p.name, p.id)
                self._unload(p)
            current = []
        if current:
            self.programs = current
            self.adopted = True
            log.info("adopted loaded programs %s", ", ".join(f"{p.name}={p.id}" for p in current))
        else:
            # Only the mode's program: a kernel may refuse the other type (legacy
            # TC loads as freplace), and one failing program fails the whole Load.
            self.programs = self.client.load(
                s.bytecode, [PROGRAMS[s.mode]], metadata=s.metadata(),
                global_data={"blixt_cfg": bytes(layout.Config.of(s.marks))})
            self.adopted = False
            log.info("loaded programs %s from %s", ", ".join(f"{p.name}={p.id}" for p in self.programs),
                     s.bytecode)
            self._attach()
        self._open_maps()
        self.nft.ensure()

    def _attach(self) -> None:
        s = self.settings
        name, _ = PROGRAMS[s.mode]
        prog = self.programs[0]
        for a in s.attachments:
            if s.mode == "tc":
                link = self.client.attach_tc(prog.id, a.iface, a.direction, priority=s.priority,
                                             netns=s.netns_path, proceed_on=(), metadata=s.metadata())
            else:
                link = self.client.attach_tcx(prog.id, a.iface, a.direction, priority=s.priority,
                                              netns=s.netns_path, metadata=s.metadata())
            log.info("attached %s to %s %s in netns %s (link %d)", name, a.iface, a.direction,
                     s.netns or "(bpfman's)", link)

    def _unload(self, prog: bpfman.Program) -> None:
        for link in self.client.get(prog.id).links:
            self.client.detach(link)
        self.client.unload(prog.id)

    def _open_maps(self) -> None:
        self._state = None
        for m in self.maps.values():
            m.close()
        pin_dir = self.programs[0].map_pin_path
        self.maps = {name: bpf.PinnedMap.open(os.path.join(pin_dir, name)) for name in layout.MAPS}

    def remove(self) -> None:
        """Detach, unload and delete the nft table: the node is as before blixt."""
        for m in self.maps.values():
            m.close()
        self.maps = {}
        for p in self._ours():
            self._unload(p)
        self.programs = []
        self.nft.delete()

    # -- state --------------------------------------------------------------

    def current(self) -> tables.Current:
        """Read back what the kernel holds."""
        L = layout
        cur = tables.Current()
        for k, v in self.maps["blixt_services"].items():
            key = L.ServiceKey.from_buffer_copy(k)
            val = L.Service.from_buffer_copy(v)
            cur.services[key.as_tuple()] = (val.id, val.gen, val.slot_count, val.flags, val.affinity_timeout)
        for k, v in self.maps["blixt_slots"].items():
            key = L.SlotKey.from_buffer_copy(k)
            val = L.Slot.from_buffer_copy(v)
            cur.slots[(key.service_id, key.gen, key.slot)] = (val.backend_id, val.flags)
        for k, v in self.maps["blixt_members"].items():
            key = L.MemberKey.from_buffer_copy(k)
            val = L.Slot.from_buffer_copy(v)
            cur.members[(key.service_id, key.backend_id)] = (val.backend_id, val.flags)
        for k in self.maps["blixt_local_addrs"].keys():
            cur.local_addresses.add(int.from_bytes(k, "big"))
        cur.backends = dict(self.nft.backends())
        return cur

    def refresh(self) -> tables.Current:
        self._state = self.current()
        return self._state

    def apply(self, desired: Dataplane) -> tables.Plan:
        """Make the kernel hold `desired`. On a CapacityError nothing is written."""
        state = self._state if self._state is not None else self.refresh()
        plan = tables.plan(desired, state, self.settings.marks)
        if plan.empty:
            return plan
        self._state = None  # unknown until every write below has gone through
        L = layout
        m = self.maps
        if plan.nft_put:
            self.nft.apply_changes(put=plan.nft_put, delete=(), known=state.backends)
        _put(m["blixt_slots"], [(L.SlotKey(*k), L.Slot(*v)) for k, v in plan.slots_put.items()])
        _put(m["blixt_members"], [(L.MemberKey(*k), L.Slot(*v)) for k, v in plan.members_put.items()])
        _put(m["blixt_local_addrs"], [(a.to_bytes(4, "big"), L.c_u32(1)) for a in plan.local_put])
        _put(m["blixt_services"], [(L.ServiceKey.from_tuple(k), L.Service(*v))
                                   for k, v in plan.services_put.items()])
        _delete(m["blixt_services"], [L.ServiceKey.from_tuple(k) for k in plan.services_delete])
        _delete(m["blixt_slots"], [L.SlotKey(*k) for k in plan.slots_delete])
        _delete(m["blixt_members"], [L.MemberKey(*k) for k in plan.members_delete])
        _delete(m["blixt_stats"], [L.c_u32(i) for i in plan.stats_delete])
        _delete(m["blixt_local_addrs"], [a.to_bytes(4, "big") for a in plan.local_delete])
        if plan.nft_delete:
            known = {**state.backends, **plan.nft_put}
            self.nft.apply_changes(put={}, delete=plan.nft_delete, known=known)
        self._state = tables.after(state, plan)
        conntrack.flush_udp(self.settings.netns, conntrack.stale_udp(state, plan))
        log.info("dataplane applied: %s", plan.summary())
        return plan

    def stats(self) -> dict[int, layout.Stats]:
        """Per-service counters summed over CPUs, by service id."""
        out = {}
        smap = self.maps["blixt_stats"]
        for k in smap.keys():
            total = layout.Stats()
            for raw in smap.lookup_percpu(k) or ():
                s = layout.Stats.from_buffer_copy(raw)
                total.packets += s.packets
                total.bytes += s.bytes
                total.new_flows += s.new_flows
            out[int.from_bytes(k, "little")] = total
        return out


def _put(m: bpf.PinnedMap, entries: Sequence) -> None:
    if entries:
        m.update_batch([bytes(k) for k, _ in entries], [bytes(v) for _, v in entries])


def _delete(m: bpf.PinnedMap, keys: Sequence) -> None:
    if keys:
        m.delete_batch([bytes(k) for k in keys])
