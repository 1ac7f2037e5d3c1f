"""Keeps one node network namespace's dataplane in step with a desired value:
blixt's programs loaded through bpfman and attached to the configured
interfaces, the pinned maps, and the nftables NAT table.

Programs are found again through bpfman's List with our metadata, so an agent
restart adopts what is loaded instead of loading twice; the ids in the maps
and the nft map are read back, so a restart rewrites nothing that is right.

A settings change (mark layout, mode, priority, interfaces) never leaves a
gap: the new program is loaded and its maps filled from the old ones before
it is attached, the nft table is replaced in one transaction, and only then
is the old program detached and unloaded.
"""

from __future__ import annotations

import ctypes
import dataclasses
import hashlib
import logging
import os
from typing import Iterable

from blixt import gc_pause
from blixt.bpfman import client as bpfman
from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Dataplane
from blixt.dataplane.plan import Current, NftView, Plan, Tracker, advance, nft_changes

from . import bpf, conntrack, links
from .nft import NatTable, NftError

log = logging.getLogger(__name__)

PROGRAMS = {"tc": ("blixt_tc", bpfman.TC), "tcx": ("blixt_tcx", bpfman.TCX)}
OWNER_KEY = "blixt.io/owner"
NODE_KEY = "blixt.io/node"
NETNS_KEY = "blixt.io/netns"
CONFIG_KEY = "blixt.io/config"
MARKS_KEY = "blixt.io/marks"   # the mark layout, so a successor can read the old nft map
DEFAULT_PRIORITY = 50
# Maps a reload copies to the new program; stats too, so counters carry on.
CARRIED_MAPS = ("blixt_services", "blixt_slots", "blixt_members", "blixt_local_addrs",
                "blixt_pod_cidrs", "blixt_source_ranges", "blixt_affinity", "blixt_stats")


@dataclasses.dataclass(frozen=True)
class Attachment:
    """An interface whose ingress the program classifies. Only ingress: TC
    egress runs after netfilter's output and postrouting hooks, so a mark set
    there could never steer NAT."""

    iface: str


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
        if not self.attachments and self.bytecode is not None:
            raise ValueError("at least one interface to attach to is needed")
        if not 1 <= self.priority <= 1000:
            raise ValueError(f"priority must be 1..1000, got {self.priority}")

    @property
    def netns_path(self) -> str | None:
        return f"/var/run/netns/{self.netns}" if self.netns else None

    def fingerprint(self) -> str:
        """What, if changed, needs a reload: config bytes, mode, attachments,
        and the map layouts this blixt writes (a program from a blixt with
        other layouts is replaced, not adopted)."""
        layouts = ",".join(f"{n}:{ctypes.sizeof(m.key)}:{ctypes.sizeof(m.value)}:"
                           f"{'' if n in layout.RESIZABLE else m.max_entries}:{m.flags}"
                           for n, m in layout.MAPS.items())
        # The bytecode too: another image or file (another build, its own
        # map capacities) is loaded, not the old program adopted.
        code = getattr(self.bytecode, "url", None) or getattr(self.bytecode, "path", "")
        text = "|".join([
            bytes(self.marks.config()).hex(), self.mode, str(self.priority),
            ",".join(a.iface for a in self.attachments), layouts, code,
        ])
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def metadata(self) -> dict[str, str]:
        return {OWNER_KEY: "blixt-agent", NODE_KEY: self.node, NETNS_KEY: self.netns or "",
                CONFIG_KEY: self.fingerprint(), MARKS_KEY: bytes(self.marks.config()).hex()}


def marks_of(program: bpfman.Program) -> MarkConfig | None:
    """The mark layout a loaded program was configured with, from its metadata."""
    try:
        c = layout.Config.from_buffer_copy(bytes.fromhex(program.metadata[MARKS_KEY]))
        return MarkConfig(c.id_shift, c.id_mask, c.masq_mark, c.reject_mark)
    except (KeyError, ValueError):
        return None


def programs_of(client: bpfman.BpfmanClient, node: str, netns: str | None) -> list[bpfman.Program]:
    """The programs an agent for this node and namespace loaded."""
    return client.list(match_metadata={OWNER_KEY: "blixt-agent", NODE_KEY: node, NETNS_KEY: netns or ""})


def _unload(client: bpfman.BpfmanClient, prog: bpfman.Program) -> None:
    for link in client.get(prog.id).links:
        client.detach(link)
    client.unload(prog.id)


def remove(client: bpfman.BpfmanClient, node: str, netns: str | None, nft_table: str = "blixt") -> int:
    """Undo what an agent for this node and namespace set up: detach and unload
    its programs and delete its nft table (connections already translated
    keep their conntrack entries). Returns how many programs were unloaded."""
    progs = programs_of(client, node, netns)
    for p in progs:
        log.info("unloading blixt program %s (id %d)", p.name, p.id)
        _unload(client, p)
    NatTable(netns, MarkConfig(), name=nft_table).delete()
    return len(progs)


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
        self._state: Current | None = None
        self._view: NftView | None = None  # NftView.of(self._state), kept with it
        self._tracker = Tracker()  # plans only the frontends that changed

    @classmethod
    def over_pinned_maps(cls, maps: dict[str, bpf.PinnedMap], settings: Settings) -> "Manager":
        """A manager of maps someone else's load pinned (agent --maps-dir:
        bpfman-operator loads and attaches); it never calls bpfman."""
        m = cls(None, settings)
        m.maps = maps
        m.adopted = True
        return m

    # -- programs -----------------------------------------------------------

    def _ours(self) -> list[bpfman.Program]:
        return programs_of(self.client, self.settings.node, self.settings.netns)

    def ensure_loaded(self) -> None:
        """Adopt our loaded program if its configuration matches; otherwise
        load afresh and take over from what was loaded before, with no gap.
        Either way the nft table is rebuilt from the maps. Idempotent."""
        s = self.settings
        name = PROGRAMS[s.mode][0]
        found = self._ours()
        current = [p for p in found if p.metadata.get(CONFIG_KEY) == s.fingerprint() and p.name == name]
        keep = current[0] if current else None
        old = [p for p in found if p is not keep]
        # The newest program we replace: its maps and its nft layout carry over.
        predecessor = max((p for p in old if p.map_pin_path), key=lambda p: p.id, default=None)
        if keep:
            self.programs = [keep]
            self.adopted = True
            self._open_maps()
            log.info("adopted loaded programs %s=%d", keep.name, keep.id)
            gone = self._unattached(keep)
            if gone:
                # bpfman still lists the links, but the kernel's are defunct.
                log.warning("program %d is no longer attached to %s here (recreated since bpfman attached "
                            "it?); attaching it again", keep.id, ", ".join(gone))
                for link in self.client.get(keep.id).links:
                    self.client.detach(link)
                self._attach()
        else:
            self._load()
            if predecessor is not None:
                self._carry_over(predecessor)
            self._attach()
        old_marks = marks_of(predecessor) if predecessor is not None and not keep else None
        self.refresh(backends_marks=old_marks)
        for p in old:
            log.info("unloading superseded blixt program %s (id %d)", p.name, p.id)
            _unload(self.client, p)

    def _unattached(self, prog: bpfman.Program) -> list[str]:
        """The interfaces where the kernel has no live TCX link running prog:
        the interface, or its namespace, was made again since the attach.
        (Legacy TC links belong to bpfman's dispatcher: not checked.)"""
        s = self.settings
        if s.mode != "tcx":
            return []
        attached = set(links.tcx_ingress(prog.id, s.netns))
        return [a.iface for a in s.attachments if a.iface not in attached]

    def _load(self) -> None:
        s = self.settings
        # Only the mode's program: a kernel may refuse the other type (legacy
        # TC loads as freplace), and one failing program fails the whole Load.
        self.programs = self.client.load(
            s.bytecode, [PROGRAMS[s.mode]], metadata=s.metadata(),
            global_data={"blixt_cfg": bytes(s.marks.config())})
        self.adopted = False
        log.info("loaded programs %s from %s", ", ".join(f"{p.name}={p.id}" for p in self.programs), s.bytecode)
        self._open_maps()

    def _carry_over(self, predecessor: bpfman.Program) -> None:
        """Fill the new program's maps from the one it replaces, before the new
        one sees a packet: services, backends, affinity and counters carry on.
        Into a build with smaller maps the frontends are not carried (they
        might not fit, and half of them would be worse than none): the first
        pass writes them."""
        srcs = {}
        for name in CARRIED_MAPS:
            try:
                srcs[name] = bpf.PinnedMap.open(os.path.join(predecessor.map_pin_path, name))
            except bpf.BpfError as e:
                log.warning("cannot read %s of program %d to carry it over: %s", name, predecessor.id, e)
        try:
            shrunk = any(srcs[n].max_entries > self.maps[n].max_entries for n in layout.RESIZABLE if n in srcs)
            for name, src in srcs.items():
                self._carry(name, src, predecessor.id, shrunk)
        finally:
            for m in srcs.values():
                m.close()

    def _carry(self, name: str, src: bpf.PinnedMap, predecessor: int, shrunk: bool) -> None:
        """One map of program `predecessor` into ours (see _carry_over)."""
        dst = self.maps[name]
        if (src.key_size, src.value_size) != (dst.key_size, dst.value_size):
            log.warning("%s changed layout; not carried over", name)
            return
        if shrunk and name in layout.RESIZABLE:
            log.warning("%s: this build's maps are smaller than program %d's; not carried over", name, predecessor)
            return
        items = list(src.items())
        if not items:
            return
        keys = [k for k, _ in items]
        if dst.percpu:  # each CPU's value padded to 8 bytes, as the kernel wants it
            step = (dst.value_size + 7) & ~7
            values = [b"".join(part.ljust(step, b"\0") for part in v) for _, v in items]
        else:
            values = [v for _, v in items]
        dst.update_batch(keys, values)
        log.info("carried %d %s entries over from program %d", len(items), name, predecessor)

    def _attach(self) -> None:
        for a in self.settings.attachments:
            self.attach(a.iface)

    def attach(self, iface: str) -> int:
        """Attach the loaded program to iface's ingress; the bpfman link id."""
        s = self.settings
        prog = self.programs[0]
        if s.mode == "tc":
            link = self.client.attach_tc(prog.id, iface, "ingress", priority=s.priority,
                                         netns=s.netns_path, proceed_on=(), metadata=s.metadata())
        else:
            link = self.client.attach_tcx(prog.id, iface, "ingress", priority=s.priority,
                                          netns=s.netns_path, metadata=s.metadata())
        log.info("attached %s to %s ingress in netns %s (link %d)", PROGRAMS[s.mode][0], iface,
                 s.netns or "(bpfman's)", link)
        return link

    def _open_maps(self) -> None:
        self._state = self._view = None
        for m in self.maps.values():
            m.close()
        pin_dir = self.programs[0].map_pin_path
        self.maps = {name: bpf.PinnedMap.open(os.path.join(pin_dir, name)) for name in layout.MAPS}
        log.info("map capacities: %d frontends, %d slots, %d members (half of each usable)", *self.capacity)

    def remove(self) -> None:
        """Detach, unload and delete the nft table: the node is as before blixt."""
        for m in self.maps.values():
            m.close()
        self.maps = {}
        self.programs = []
        self._state = self._view = None
        self.nft.close()
        remove(self.client, self.settings.node, self.settings.netns, self.settings.nft_table)

    # -- state --------------------------------------------------------------

    def current(self, backends_marks: MarkConfig | None = None) -> Current:
        """Read back what the kernel holds. backends_marks: the layout the nft
        map was written with, when it is not this manager's (a reload)."""
        L = layout
        cur = Current(capacity=self.capacity)
        cur.services = {L.ServiceKey.unpack(k): L.Service.unpack(v) for k, v in self.maps["blixt_services"].items()}
        cur.slots = {L.SlotKey.unpack(k): L.Slot.unpack(v) for k, v in self.maps["blixt_slots"].items()}
        cur.members = {L.MemberKey.unpack(k): L.Slot.unpack(v) for k, v in self.maps["blixt_members"].items()}
        cur.local_addresses = {L.LocalAddr.unpack(k) for k in self.maps["blixt_local_addrs"].keys()}
        cur.pod_cidrs = {L.CidrKey.unpack(k) for k in self.maps["blixt_pod_cidrs"].keys()}
        cur.source_ranges = {L.SourceRangeKey.unpack(k) for k in self.maps["blixt_source_ranges"].keys()}
        reader = self.nft if backends_marks is None else NatTable(self.settings.netns, backends_marks,
                                                                  name=self.settings.nft_table)
        cur.backends = reader.backends()
        return cur

    @property
    def capacity(self) -> layout.Capacity:
        """The capacities of the maps this manager writes (the build's)."""
        if not self.maps:
            return layout.Capacity()
        return layout.capacity_of({name: m.max_entries for name, m in self.maps.items()})

    @property
    def backend_count(self) -> int:
        """Distinct backends (address, port) in the maps and the nft table."""
        return len(self._state.backends) if self._state is not None else 0

    def refresh(self, backends_marks: MarkConfig | None = None) -> Current:
        """Read the maps again and rewrite the nft table from them in one
        transaction (a tampered or deleted table is put right)."""
        state = self.current(backends_marks)
        if state != self._state:
            # Only a different state is taken: the same one, kept, keeps
            # the planner's changes-only comparison (plan.Tracker).
            self._state = state
            self._view = NftView.of(state)
        self.nft.rebuild(self._view)
        return self._state

    def apply(self, desired: Dataplane) -> Plan:
        """Make the kernel hold `desired`. On a CapacityError nothing is written."""
        state = self._state if self._state is not None else self.refresh()
        old_view = self._view if self._view is not None else NftView.of(state)
        with gc_pause.paused():
            p = self._tracker.plan(desired, state, self.settings.marks)
            if p.empty:
                self._tracker.applied(p, state)
                return p
            # The state is advanced in place (a copy per pass cost more than
            # the rest at 10,000 frontends): until every write below has gone
            # through, the manager holds none, and a failure reads the maps again.
            self._state = self._view = None
            target = advance(state, p)
            view = old_view.after(target, p)
            additions, deletions = nft_changes(old_view, view, p)
        L = layout
        m = self.maps
        self._nft_update(additions, view)
        _put(m["blixt_slots"], L.SlotKey, L.Slot, p.slots_put)
        _put(m["blixt_members"], L.MemberKey, L.Slot, p.members_put)
        m["blixt_local_addrs"].update_batch([L.LocalAddr.pack(a) for a in p.local_put], [L.ONE] * len(p.local_put))
        m["blixt_pod_cidrs"].update_batch([L.CidrKey.pack(c) for c in p.cidrs_put], [L.ONE] * len(p.cidrs_put))
        m["blixt_source_ranges"].update_batch([L.SourceRangeKey.pack(r) for r in p.ranges_put],
                                              [L.ONE] * len(p.ranges_put))
        self._sweep(p.fresh_ids)
        _put(m["blixt_services"], L.ServiceKey, L.Service, p.services_put)
        _delete(m["blixt_services"], map(L.ServiceKey.pack, p.services_delete))
        _delete(m["blixt_slots"], map(L.SlotKey.pack, p.slots_delete))
        _delete(m["blixt_members"], map(L.MemberKey.pack, p.members_delete))
        self._sweep(p.removed_ids)
        _delete(m["blixt_local_addrs"], map(L.LocalAddr.pack, p.local_delete))
        _delete(m["blixt_pod_cidrs"], map(L.CidrKey.pack, p.cidrs_delete))
        _delete(m["blixt_source_ranges"], map(L.SourceRangeKey.pack, p.ranges_delete))
        self._nft_update(deletions, view, chains=False)  # the additions' update declared them
        self._state, self._view = target, view
        self._tracker.applied(p, target)
        conntrack.flush_udp(self.settings.netns, p.udp_flushes)
        log.info("dataplane applied: %s", p.summary())
        return p

    def _nft_update(self, change, view: NftView, chains: bool = True) -> None:
        try:
            self.nft.update(change, chains)
        except NftError as e:
            # The table was changed behind our back (deleted, flushed): put
            # the whole of it right instead.
            log.warning("nft table out of step (%s); rebuilding it", e)
            self.nft.rebuild(view)

    def _sweep(self, service_ids: Iterable[int]) -> None:
        """Forget affinity and counters of these service ids: a removed service
        leaves none behind, and an id handed out again starts clean."""
        ids = set(service_ids)
        if not ids:
            return
        aff = self.maps["blixt_affinity"]
        stale = [k for k in aff.keys() if layout.AffinityKey.unpack(k).service_id in ids]
        _delete(aff, stale)
        _delete(self.maps["blixt_stats"], [bytes(layout.c_u32(i)) for i in ids])

    def stats(self) -> dict[int, layout.Stats]:
        """Per-service counters summed over CPUs, by service id."""
        out = {}
        for k, per_cpu in self.maps["blixt_stats"].items():
            total = layout.Stats()
            for raw in per_cpu:
                s = layout.Stats.from_buffer_copy(raw)
                total.packets += s.packets
                total.bytes += s.bytes
                total.new_flows += s.new_flows
            out[int.from_bytes(k, "little")] = total
        return out


def _put(m: bpf.PinnedMap, key_type, value_type, entries: dict) -> None:
    if entries:
        m.update_batch([key_type.pack(k) for k in entries], [value_type.pack(v) for v in entries.values()])


def _delete(m: bpf.PinnedMap, keys: Iterable[bytes]) -> None:
    keys = list(keys)
    if keys:
        m.delete_batch(keys)
