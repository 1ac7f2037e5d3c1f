"""What a node's dataplane holds right now, read back for people: blixt's
programs as bpfman lists them, each frontend with its backends, weights and
counters, and how full each map is. Nothing is loaded, attached or written.

`report()` turns anything Manager-like (`maps`, `current()`, `stats()`) into
a plain dict, the JSON `blixt dataplane show --json` prints; `format_text()`
renders that dict for a terminal; `read()` does both ends for a node whose
agent has loaded its program.
"""

from __future__ import annotations

import collections
import ipaddress
import os
from typing import Iterable, Mapping, Sequence

from blixt.bpfman import client as bpfman
from blixt.dataplane import layout
from blixt.dataplane.plan import Current, describe

from . import bpf, links
from .manager import NETNS_KEY, NODE_KEY, PROGRAMS, Attachment, Manager, Settings, marks_of, programs_of

TCX_PROGRAM = PROGRAMS["tcx"][0]


class CannotShow(Exception):
    """No blixt program for this node and namespace, or one whose metadata
    lacks what reading its maps needs."""


# -- pure: from what the kernel holds to a plain dict ---------------------------


def frontends(cur: Current, stats: Mapping[int, layout.Stats]) -> list[dict]:
    """Each frontend with its backends and counters, in key order."""
    weights: dict[int, collections.Counter] = collections.defaultdict(collections.Counter)
    gen_of = {v.id: v.gen for v in cur.services.values()}
    slot_flags: dict[tuple[int, int], int] = {}
    for k, slot in cur.slots.items():
        # Only the generation the service entry points at is live; an older
        # one is a table being replaced.
        if gen_of.get(k.service_id) == k.gen:
            weights[k.service_id][slot.backend_id] += 1
            slot_flags[(k.service_id, slot.backend_id)] = slot.flags
    # Members by service, once: a scan of every member per frontend made
    # `dataplane show` quadratic (minutes at 100,000 frontends).
    member_flags: dict[int, dict[int, int]] = collections.defaultdict(dict)
    for m, v in cur.members.items():
        member_flags[m.service_id][m.backend_id] = v.flags
    ranges: dict[int, list[str]] = collections.defaultdict(list)
    for r in sorted(cur.source_ranges):
        ranges[r.service_id].append(f"{ipaddress.IPv4Address(r.addr)}/{r.prefixlen - 32}")
    out = []
    for key in sorted(cur.services):
        svc = cur.services[key]
        members = member_flags.get(svc.id, {})
        backends = []
        for bid in sorted(members.keys() | weights[svc.id].keys()):
            endpoint = cur.backends.get(bid)
            flags = members.get(bid, slot_flags.get((svc.id, bid), 0))
            backends.append({
                "id": bid,
                # None: the nft map has no endpoint for this id (the table
                # was deleted or is out of step), so its flows are not NATed.
                "address": str(endpoint[0]) if endpoint else None,
                "port": endpoint[1] if endpoint else None,
                "weight": weights[svc.id][bid],
                "masquerade": bool(flags & layout.SLOT_MASQ),
            })
        counters = stats.get(svc.id)
        out.append({
            "frontend": describe([key])[0],
            "service_id": svc.id,
            "generation": svc.gen,
            "slot_count": svc.slot_count,
            "affinity_timeout": svc.affinity_timeout if svc.flags & layout.SVC_AFFINITY else 0,
            "packets": counters.packets if counters else 0,
            "bytes": counters.bytes if counters else 0,
            "new_flows": counters.new_flows if counters else 0,
            "policy": policy(svc.flags),
            "source_ranges": ranges.get(svc.id, []),
            "backends": backends,
        })
    return out


_POLICY = ((layout.SVC_MASQ_ALL, "masquerade every flow"),
           (layout.SVC_MASQ_OFF_POD, "masquerade sources outside the pod CIDRs"),
           (layout.SVC_DROP_EMPTY, "drop when no backend"),
           (layout.SVC_SOURCE_RANGES, "source ranges only"),
           (layout.SVC_POD_VARIANT, "pods use the (from pods) entry"))


def policy(flags: int) -> list[str]:
    return [text for bit, text in _POLICY if flags & bit]


def map_fill(maps: Mapping[str, bpf.PinnedMap]) -> list[dict]:
    """Entries against capacity, and the bytes the kernel charges, per map."""
    return [{"name": name, "entries": sum(1 for _ in m.keys()), "max_entries": m.max_entries,
             "memlock": m.memlock()} for name, m in sorted(maps.items())]


def program_entry(p: bpfman.Program, attached: Sequence[str] | None = None) -> dict:
    """attached: the interfaces whose TCX ingress runs it, as the kernel says
    (None: not known, e.g. legacy TC behind bpfman's dispatcher)."""
    entry = {"id": p.id, "name": p.name, "links": list(p.links), "map_pin_path": p.map_pin_path}
    if attached is not None:
        entry["attached"] = list(attached)
    return entry


def report(source, programs: Iterable[bpfman.Program] = (),
           attached: Mapping[int, Sequence[str]] | None = None) -> dict:
    """source: a Manager, or anything with `maps`, `current()` and `stats()`;
    attached: program id -> interfaces (program_entry)."""
    attached = attached or {}
    return {
        "programs": [program_entry(p, attached.get(p.id)) for p in programs],
        "frontends": frontends(source.current(), source.stats()),
        "maps": map_fill(source.maps),
    }


def format_text(rep: dict) -> str:
    lines = ["programs:"]
    for p in rep["programs"]:
        link_ids = ", ".join(map(str, p["links"])) or "none"
        on = f"  attached to {', '.join(p['attached']) or 'nothing'} (tcx ingress)" if "attached" in p else ""
        lines.append(f"  {p['id']} {p['name']}  links {link_ids}{on}  maps {p['map_pin_path']}")
    lines.append("frontends:" if rep["frontends"] else "frontends: none")
    for f in rep["frontends"]:
        affinity = f"{f['affinity_timeout']}s" if f["affinity_timeout"] else "none"
        lines.append(f"  {f['frontend']}  service {f['service_id']}  slots {f['slot_count']}  "
                     f"affinity {affinity}")
        lines.append(f"    packets {f['packets']}  bytes {f['bytes']}  new flows {f['new_flows']}")
        if f.get("policy"):
            lines.append(f"    {', '.join(f['policy'])}")
        if f.get("source_ranges"):
            lines.append(f"    source ranges {', '.join(f['source_ranges'])}")
        if not f["backends"]:
            dropped = "drop when no backend" in f.get("policy", ())
            lines.append(f"    no backends: new connections are {'dropped' if dropped else 'rejected'}")
        for b in f["backends"]:
            where = f"{b['address']}:{b['port']}" if b["address"] else "? (not in the nft map)"
            masq = "  masquerade" if b["masquerade"] else ""
            lines.append(f"    backend {b['id']}  {where}  weight {b['weight']}{masq}")
    lines.append(f"maps (of program {rep['maps_of_program']}):" if "maps_of_program" in rep else "maps:")
    width = max((len(m["name"]) for m in rep["maps"]), default=0)
    for m in rep["maps"]:
        lines.append(f"  {m['name']:<{width}}  {m['entries']} / {m['max_entries']}  memlock {m['memlock']} B")
    return "\n".join(lines)


# -- I/O: find the agent's program and open what it pinned ------------------------


def find_programs(client: bpfman.BpfmanClient, node: str, netns: str | None) -> list[bpfman.Program]:
    """The programs the agent loaded for (node, netns), with their links."""
    # Links as Get reports them, which is where the manager reads them too.
    return [client.get(p.id) for p in programs_of(client, node, netns)]


def _reader_settings(node: str, netns: str | None, **kw) -> Settings:
    return Settings(node=node, bytecode=bpfman.File(os.devnull), attachments=(Attachment("none"),),
                    netns=netns, **kw)


def open_maps(program: bpfman.Program) -> dict[str, bpf.PinnedMap]:
    opened: dict[str, bpf.PinnedMap] = {}
    try:
        for name in layout.MAPS:
            opened[name] = bpf.PinnedMap.open(os.path.join(program.map_pin_path, name))
    except BaseException:
        for m in opened.values():
            m.close()
        raise
    return opened


def reader(client: bpfman.BpfmanClient, programs: Sequence[bpfman.Program], nft_table: str) -> Manager:
    """A Manager over the newest program's pinned maps and the nft table, for
    its read methods only (current(), stats()): built without ensure_loaded(),
    so nothing is loaded or attached. The caller closes its maps."""
    newest = max(programs, key=lambda p: p.id)
    marks = marks_of(newest)
    if marks is None:
        # Without the mark layout the nft map's keys cannot be read as ids.
        raise CannotShow(f"program {newest.id} has no mark layout in its bpfman metadata; "
                        "it was not loaded by this blixt agent version")
    settings = _reader_settings(newest.metadata[NODE_KEY], newest.metadata[NETNS_KEY] or None,
                                marks=marks, nft_table=nft_table)
    manager = Manager(client, settings)
    manager.programs = [newest]
    manager.maps = open_maps(newest)
    return manager


def read(client: bpfman.BpfmanClient, node: str, netns: str | None, nft_table: str = "blixt") -> dict:
    programs = find_programs(client, node, netns)
    if not programs:
        where = f"netns {netns!r}" if netns else "bpfman's own netns"
        raise CannotShow(f"bpfman lists no blixt program for node {node!r} in {where}")
    manager = reader(client, programs, nft_table)
    try:
        attached = {p.id: links.tcx_ingress(p.id, netns) for p in programs if p.name == TCX_PROGRAM}
        rep = report(manager, programs, attached)
        rep["maps_of_program"] = manager.programs[0].id
        return rep
    finally:
        for m in manager.maps.values():
            m.close()
