"""The agent's nftables table in one node network namespace: it turns the BPF
program's decision into conntrack DNAT, masquerade and kube-proxy style
rejects, for frontends blixt owns and for nothing else.

How a decision travels (see BUILD.md, "Dataplane choices"):

  TC ingress    the program writes backend id / masquerade / reject bits into
                skb->mark (the mark field, MarkConfig).
  -175 filter   `stash`: for a new connection to a frontend in @frontends (or
                a wildcard frontend on a node address), copy the field into the
                ct mark. A mark on any other packet is ignored: other tables
                and CNIs share the mark.
  -150 mangle   other tables may restore the mark from the ct mark (CONNMARK
                --restore-mark): the stash survives that.
  -100 nat      `balance`: the ct mark's id picks the backend from @backends.
  -90 filter    `guard`: drop INVALID packets of blixt's flows; drop the
                reject and masquerade bits together (source ranges, a Local
                policy with no endpoint here), reject the reject bit alone;
                refuse anything else sent to a VIP.
  100 nat       `finish`: masquerade the masquerade bit (the program sets it
                for remote backends and for hairpin flows, where the client is
                the chosen backend), and clear blixt's bits from the ct mark
                (`local` does so for packets delivered to the node itself).

The node's own traffic (processes, hostNetwork pods) never passes TC
ingress, so the table serves it in the output path, from the same slots
(plan.Output): `out` (nat output, -100) looks the frontend up in
@out_services / @out_node_ports and jumps to the chain shared by frontends
of its protocol, slot count and masquerade (`out_s_tcp_10_m`), which sets
the masquerade bit in the ct mark and DNATs to a slot chosen by `numgen
random` in the named slot maps (@out_slots_tcp, ...). A frontend with
loadBalancerSourceRanges or client-IP affinity has a chain `out_<id>` of its
own: sources outside the ranges dropped, affinity through per-endpoint sets
(`aff_<id>_<backend>`, as kube-proxy keeps them). `out_guard` (filter
output, -90) rejects or drops new connections to frontends without
endpoints (@out_empty, @out_empty_node).

Chains and rules are written as `nft -f -` scripts, the way knftables does
it: a sync re-declares its chains (`add chain; flush chain; add rule ...`),
so a tampered rule is put right, whenever anything else has committed to
the namespace's nf_tables since the table's last write (the kernel's
generation counter says so; otherwise the chains are as it wrote them); a
full rebuild replaces the whole table atomically in one script. A sync's
elements, nearly all of its work, follow as one netlink batch
(blixt.node.nftnl): one transaction as well, without `nft` parsing 100,000
elements as text (about 2 s at 10,000 frontends). A change that touches a
frontend's own chains or sets (source ranges, affinity) stays one script:
those chains and their elements change together.

Why the `nft` CLI (subprocess) for chains and not libnftables through ctypes:
libnftables parses the very same text, so ctypes would buy only the saved
fork (~5 ms a call); every script we send can be logged and replayed by
hand; and we do not bind to libnftables.so's C ABI. Elements are plain
bytes in a stable kernel ABI, so they skip the parser; rules are not.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import re
import socket
import subprocess
from ipaddress import IPv4Address
from typing import Iterable, Mapping

from blixt.dataplane.layout import PROTOCOL_NAMES
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.plan import Endpoint, NftChange, NftView, Output

from . import nftnl

FAMILY = "ip"
CHUNK = 1000  # elements per `add element` line; the script is still one transaction
TIMEOUT = 120.0
READ_AGAIN = 5  # listings of the backend map until two agree
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")

# Set name -> (nft type, element renderer).
_ADDR = "ipv4_addr"
SETS = {
    "frontends": (f"{_ADDR} . inet_proto . inet_service", lambda e: f"{_ip(e[0])} . {_proto(e[1])} . {e[2]}"),
    "node_frontends": ("inet_proto . inet_service", lambda e: f"{_proto(e[0])} . {e[1]}"),
    "node_addrs": (_ADDR, lambda e: _ip(e)),
    "vips": (_ADDR, lambda e: _ip(e)),
}
# The same elements as netlink keys (blixt.node.nftnl).
_SET_KEYS = {
    "frontends": lambda e: nftnl.addr(e[0]) + nftnl.proto(e[1]) + nftnl.port(e[2]),
    "node_frontends": lambda e: nftnl.proto(e[0]) + nftnl.port(e[1]),
    "node_addrs": nftnl.addr,
    "vips": nftnl.addr,
}
MAP = "backends"
MAP_TYPE = "type mark : ipv4_addr . inet_service"
# Every backend's endpoint, element for element with MAP: INVALID packets
# from one are dropped.
ENDPOINTS = "endpoints"
ENDPOINTS_TYPE = f"type {_ADDR} . inet_service"
# The output path's verdict maps: exact frontends and NodePorts on node
# addresses; and its slot maps, per protocol: (frontend, slot) -> endpoint,
# which one rule per slot count indexes with `numgen random mod N` (the `mod`
# in `typeof` only types the key: any N fits). Per protocol because nft
# 1.0.6 cannot add a rule naming a map it reads back from the kernel whose
# `typeof` has `meta l4proto . th dport` ("conflicting protocols").
OUT_MAPS = {
    "out_services": f"type {_ADDR} . inet_proto . inet_service : verdict",
    "out_node_ports": "type inet_proto . inet_service : verdict",
    "out_empty": f"type {_ADDR} . inet_proto . inet_service : verdict",
    "out_empty_node": "type inet_proto . inet_service : verdict",
    **{f"out_slots_{p}": f"typeof ip daddr . {p} dport . numgen random mod 2 : ip daddr . {p} dport"
       for p in ("tcp", "udp")},
    **{f"out_node_slots_{p}": f"typeof {p} dport . numgen random mod 2 : ip daddr . {p} dport"
       for p in ("tcp", "udp")},
}


@functools.lru_cache(maxsize=1 << 17)
def _ip(value: int) -> str:
    # Cached: a script of 10,000 frontends names the same few addresses
    # 100,000 times, and IPv4Address's str() is Python code.
    return str(IPv4Address(value))


def _ep(ep: Endpoint) -> str:
    return f"{_ip(ep[0]._ip)} . {ep[1]}"


def _proto(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


class NftError(RuntimeError):
    """An nft invocation failed; carries the command and nft's stderr."""

    def __init__(self, cmd: list[str], stderr: str, returncode: int | None = None):
        self.cmd = cmd
        self.stderr = stderr
        self.returncode = returncode
        # nft echoes the failing script line, which can hold 1000 elements.
        short = "\n".join(line if len(line) <= 300 else line[:300] + " ..." for line in stderr.splitlines()[:20])
        super().__init__(f"{' '.join(cmd)} failed ({returncode}): {short}")


@dataclasses.dataclass(frozen=True)
class Chain:
    name: str
    rules: tuple[str, ...]
    type: str = ""      # base chains: type, hook and numeric priority
    hook: str = ""
    priority: int = 0

    @property
    def spec(self) -> str:
        if not self.type:
            return ""
        return f"{{ type {self.type} hook {self.hook} priority {self.priority}; policy accept; }}"


class NatTable:
    """One nftables table (family ip) that blixt owns in one network namespace.

    netns: an `ip netns` name, or None for the namespace this process is in."""

    def __init__(self, netns: str | None, marks: MarkConfig, name: str = "blixt",
                 nft: str = "nft", timeout: float = TIMEOUT):
        if not _NAME.fullmatch(name):
            raise ValueError(f"table name {name!r} must match {_NAME.pattern}")
        self.netns = netns
        self.marks = marks
        self.name = name
        self.timeout = timeout
        self._argv = (["ip", "netns", "exec", netns] if netns else []) + [nft]
        self._t = f"{FAMILY} {name}"
        self._netlink = nftnl.Link(netns)  # opened at the first batch
        # The namespace's nf_tables generation our last write left, while
        # nothing else has written since (then our chains are as we wrote
        # them); and the shared output chains written since the last rebuild.
        self._ours: int | None = None
        self._shared: set[str] = set()
        self._commits = 0

    def close(self) -> None:
        """Close the netlink socket kept between updates (the next opens one)."""
        self._netlink.close()

    # -- the ruleset ----------------------------------------------------------

    def chains(self) -> tuple[Chain, ...]:
        m = self.marks
        field, ids, masq, reject, drop = (f"0x{v:08x}" for v in (
            m.field, m.id_mask, m.masq_mark, m.reject_mark, m.masq_mark | m.reject_mark))
        keep = f"0x{~m.field & 0xFFFFFFFF:08x}"
        frontend = "ip daddr . meta l4proto . th dport"
        clear = f"ct mark set ct mark & {keep}"
        return (
            # Before mangle (-150), where mark restores run; after conntrack (-200).
            Chain("stash", (
                f"ct state new meta mark & {field} != 0 {frontend} @frontends ct mark set meta mark & {field}",
                f"ct state new meta mark & {field} != 0 ip daddr @node_addrs meta l4proto . th dport "
                f"@node_frontends ct mark set meta mark & {field}",
            ), "filter", "prerouting", -175),
            # A mark naming an id missing from the map fails the lookup: no DNAT.
            Chain("balance", (
                f"ct mark & {ids} != 0 meta l4proto {{ tcp, udp }} counter dnat ip to ct mark & {ids} map @{MAP}",
            ), "nat", "prerouting", -100),
            # After dstnat, so a balanced flow's packets already carry their
            # backend; in prerouting, so an unrouted VIP still gets an answer.
            Chain("guard", (
                f"ct state invalid {frontend} @frontends counter drop",
                f"ct state invalid ip saddr . th sport @{ENDPOINTS} counter drop",
                f"ct mark & {drop} == {drop} counter drop",
                f"ct mark & {reject} != 0 meta l4proto tcp counter reject with tcp reset",
                f"ct mark & {reject} != 0 meta l4proto udp counter reject with icmp type port-unreachable",
                f"ip daddr @vips {frontend} != @frontends goto refuse",
            ), "filter", "prerouting", -90),
            Chain("refuse", (
                "meta l4proto tcp counter reject with tcp reset",
                "meta l4proto udp counter reject with icmp type port-unreachable",
                "counter drop",
            )),
            Chain("finish", (
                f"ct mark & {masq} != 0 {clear} counter masquerade",
                f"ct mark & {field} != 0 {clear}",
            ), "nat", "postrouting", 100),
            Chain("local", (f"ct mark & {field} != 0 {clear}",), "nat", "input", 100),
            Chain("out", (
                "ip daddr . meta l4proto . th dport vmap @out_services",
                "ip daddr @node_addrs meta l4proto . th dport vmap @out_node_ports",
            ), "nat", "output", -100),
            Chain("out_guard", (
                "ct state new ip daddr . meta l4proto . th dport vmap @out_empty",
                "ct state new ip daddr @node_addrs meta l4proto . th dport vmap @out_empty_node",
            ), "filter", "output", -90),
        )

    def _chain_lines(self) -> list[str]:
        """Declare and empty every chain, then fill them (rules may jump to a
        chain declared after theirs)."""
        chains = self.chains()
        lines = []
        for c in chains:
            lines.append(f"add chain {self._t} {c.name} {c.spec}".rstrip())
            lines.append(f"flush chain {self._t} {c.name}")
        for c in chains:
            lines += [f"add rule {self._t} {c.name} {rule}" for rule in c.rules]
        return lines

    # -- nft ------------------------------------------------------------------

    def _nft(self, *args: str, script: str | None = None) -> str:
        argv = [*self._argv, *args]
        try:
            res = subprocess.run(argv, input=script, capture_output=True, text=True, timeout=self.timeout)
        except FileNotFoundError as e:
            raise NftError(argv, f"{e.filename}: not found") from None
        except subprocess.TimeoutExpired:
            raise NftError(argv, f"no answer after {self.timeout:.0f}s") from None
        if res.returncode != 0:
            raise NftError(argv, res.stderr, res.returncode)
        return res.stdout

    def _run(self, lines: list[str]) -> None:
        """All lines in one `nft -f -`: one netlink batch, all or nothing."""
        self._nft("-f", "-", script="\n".join(lines) + "\n")
        self._commits += 1

    def _generation(self) -> int | None:
        try:
            return self._netlink.generation()
        except OSError:
            return None  # not known: the chains are declared again

    def _written(self, start: int | None, commits: int, chains_known: bool) -> None:
        """After a write: trust our chains as written while the generation
        moved on by our own commits only."""
        end = self._generation()
        ok = chains_known and start is not None and end == start + (self._commits - commits)
        self._ours = end if ok else None

    # -- writing --------------------------------------------------------------

    def rebuild(self, view: NftView) -> None:
        """Replace the whole table with one holding `view`, atomically: packets
        see the old table or the new one, never none."""
        for bid, ep in view.backends.items():
            self.validate(bid, ep)
        t = self._t
        lines = [f"add table {t}", f"delete table {t}", f"add table {t}",
                 f"add map {t} {MAP} {{ {MAP_TYPE}; }}", f"add set {t} {ENDPOINTS} {{ {ENDPOINTS_TYPE}; }}"]
        lines += [f"add set {t} {name} {{ type {typ}; }}" for name, (typ, _) in SETS.items()]
        lines += [f"add map {t} {name} {{ {typ}; }}" for name, typ in OUT_MAPS.items()]
        lines += self._chain_lines()
        lines += self._backend_elements("add", view.backends)
        for name, (_, render) in SETS.items():
            lines += self._elements("add", name, map(render, getattr(view, name)))
        lines += self._output_lines({}, view.outputs, {})
        self._ours, start, commits = None, self._generation(), self._commits
        self._run(lines)
        self._shared = {_shared_chain(o) for o in view.outputs.values() if o.slots and not o.affinity}
        self._written(start, commits, True)

    def update(self, change: NftChange, chains: bool = True) -> None:
        """Apply element changes, re-declaring the chains first (so a
        tampered rule is put right) unless nothing but this table has written
        to the namespace's nf_tables since its last write (the generation
        says so: then they are as it wrote them) or chains=False (a second
        update right after one that declared them). Declaring them costs an
        `nft` process reading back the 100,000-element maps its rules name,
        most of an update at 10,000 frontends. Fails if the table or a set
        is gone: the caller rebuilds."""
        if change.empty:
            return
        for bid, ep in change.put_backends.items():
            self.validate(bid, ep)
        start, commits, trusted = self._generation(), self._commits, self._ours
        self._ours = None  # until this update has gone through
        known = start is not None and start == trusted
        if known:
            chains = False
        else:  # another writer: shared chains it may have changed are declared when next used
            self._shared = set()
        self._update(change, chains, known)
        self._written(start, commits, known or chains)

    def _update(self, change: NftChange, chains: bool, known: bool) -> None:
        # Declaring what exists changes nothing; a table from an older blixt gets the output maps.
        lines = [f"add table {self._t}"]
        if chains:
            lines += [*(f"add map {self._t} {n} {{ {typ}; }}" for n, typ in OUT_MAPS.items()), *self._chain_lines()]
        if _plain(change):
            self._update_over_netlink(change, lines, known)
            return
        # A map element's value cannot be overwritten: replace = delete + add.
        lines += self._backend_elements("delete", change.delete_backends)
        for name, (_, render) in SETS.items():
            lines += self._elements("delete", name, map(render, change.delete.get(name, ())))
        lines += self._backend_elements("add", change.put_backends)
        for name, (_, render) in SETS.items():
            lines += self._elements("add", name, map(render, change.add.get(name, ())))
        lines += self._output_lines(change.old_outputs, change.put_outputs, change.delete_outputs)
        self._run(lines)

    def _update_over_netlink(self, change: NftChange, lines: list[str], known: bool) -> None:
        """A change without chains or sets of a frontend's own (see
        _output_lines), which is nearly every change: the chains it declares
        through `nft` first (none but the base chains, unless a slot count is
        new), then every element deletion and addition in one netlink batch,
        one transaction, as `nft -f` would send them (`nft` parsing the
        elements as text was most of a first sync). Old elements stay valid
        until the batch replaces them. Fails like an `nft` script when the
        table or a set is gone: the caller rebuilds. known: the table's
        chains are as this table wrote them (shared chains written before are
        not declared again)."""
        lines += self._shared_chain_lines(change.put_outputs, self._shared if known else set())
        if len(lines) > 1:
            self._run(lines)
        batch = nftnl.Elements(self.name)
        mark = self.marks.backend_mark
        batch.delete(MAP, (nftnl.host32(mark(b)) for b in change.delete_backends))
        batch.delete(ENDPOINTS, map(_ep_bytes, change.delete_backends.values()))
        batch.add(MAP, ((nftnl.host32(mark(b)), _ep_bytes(ep)) for b, ep in change.put_backends.items()))
        batch.add(ENDPOINTS, ((_ep_bytes(ep), None) for ep in change.put_backends.values()))
        for name, render in _SET_KEYS.items():
            batch.delete(name, map(render, change.delete.get(name, ())))
            batch.add(name, ((render(e), None) for e in change.add.get(name, ())))
        for o in (*change.old_outputs.values(), *change.delete_outputs.values()):
            slot_map, slots = _slot_keys(o)
            batch.delete(slot_map, (k for k, _ in slots))
            batch.delete(_out_element(o)[0], [_verdict_key(o)])
        for sid, o in change.put_outputs.items():
            slot_map, slots = _slot_keys(o)
            batch.add(slot_map, slots)
            batch.add(_out_element(o)[0], [(_verdict_key(o), nftnl.Verdict.parse(_out_verdict(sid, o)))])
        try:
            self._netlink.send(batch)
        except OSError as e:
            raise NftError(["netlink", "elements", self._t], str(e), e.errno) from None
        self._commits += bool(len(batch))

    # -- the node's own traffic -----------------------------------------------

    def _output_lines(self, old: dict[int, Output], new: dict[int, Output], gone: dict[int, Output]) -> list[str]:
        """Replace `old` by `new` and remove `gone` (both as the table holds
        them now): elements out first, chains flushed before anything they
        name is deleted, then the new chains, sets and elements.

        A frontend's slots are elements of @out_slots_<proto>
        (@out_node_slots_<proto>), and its verdict sends it to the chain
        shared by every frontend of its protocol with as many slots (and the
        same masquerade), whose one rule picks a slot with numgen: no chain
        and no anonymous map per frontend. The kernel
        names each anonymous map in a table by scanning the table's sets, so
        a map per frontend made a table of 10,000 frontends take minutes to
        write. Only frontends with source ranges or client-IP affinity get
        chains of their own."""
        t = self._t
        lines: list[str] = []
        before = {**old, **gone}
        for sid, o in before.items():
            name, key = _out_element(o)
            lines += self._elements("delete", name, [key])
            slot_map, slots = _slot_elements(o)
            lines += self._elements("delete", slot_map, (k for k, _ in slots))
        kept_sets: set[str] = set()
        for sid, o in new.items():
            kept_sets |= set(_affinity_sets(sid, o))
        for sid, o in before.items():
            lines += [f"flush chain {t} {c}" for c in _out_chains(sid, o)]
        for sid, o in before.items():
            wanted = set(_out_chains(sid, new[sid])) if sid in new else set()
            lines += [f"delete chain {t} {c}" for c in _out_chains(sid, o) if c not in wanted]
            lines += [f"delete set {t} {s}" for s in _affinity_sets(sid, o) if s not in kept_sets
                      or (sid in new and new[sid].affinity != o.affinity)]
        lines += self._shared_chain_lines(new)
        for sid, o in new.items():
            keep = set(_affinity_sets(sid, before[sid])) if sid in before and before[sid].affinity == o.affinity \
                else set()
            lines += [f"add set {t} {s} {{ type {_ADDR}; flags dynamic,timeout; timeout {o.affinity}s; }}"
                      for s in _affinity_sets(sid, o) if s not in keep]
            chains = self._out_rules(sid, o)
            for chain in chains:  # every chain first: rules jump to ones declared after theirs
                lines += [f"add chain {t} {chain}", f"flush chain {t} {chain}"]
            for chain, rules in chains.items():
                lines += [f"add rule {t} {chain} {r}" for r in rules]
        slot_adds: dict[str, list[str]] = {}
        verdicts: dict[str, list[str]] = {}
        for sid, o in new.items():
            slot_map, slots = _slot_elements(o)
            slot_adds.setdefault(slot_map, []).extend(f"{k} : {v}" for k, v in slots)
            name, key = _out_element(o)
            verdicts.setdefault(name, []).append(f"{key} : {_out_verdict(sid, o)}")
        for name, items in (*slot_adds.items(), *verdicts.items()):
            lines += self._elements("add", name, items)
        return lines

    def _shared_chain_lines(self, outputs: Mapping[int, Output], skip: set[str] = frozenset()) -> list[str]:
        """The shared chains these frontends use but `skip`, declared (again:
        idempotent); remembered as written."""
        shared = {_shared_chain(o): o for o in outputs.values() if o.slots and not o.affinity}
        lines = []
        for chain, o in sorted(shared.items()):
            if chain in skip:
                continue
            self._shared.add(chain)
            lines += [f"add chain {self._t} {chain}", f"flush chain {self._t} {chain}"]
            lines += [f"add rule {self._t} {chain} {r}" for r in self._shared_rules(o)]
        return lines

    def _shared_rules(self, o: Output) -> list[str]:
        """The rules of the chain `o` shares (_shared_chain) with every
        frontend of its kind, protocol, slot count and masquerade."""
        proto = _proto(o.key[1])
        key = f"ip daddr . {proto} dport" if o.key[0] else f"{proto} dport"
        slot_map, _ = _slot_elements(o)
        head = [f"ct mark set ct mark | 0x{self.marks.masq_mark:08x}"] if o.masquerade else []
        return head + [f"meta l4proto {proto} counter dnat ip to {key} . numgen random mod {len(o.slots)} "
                       f"map @{slot_map}"]

    def _out_rules(self, sid: int, o: Output) -> dict[str, list[str]]:
        """Chains of a frontend's own: with source ranges (then on to its
        shared chain) or client-IP affinity."""
        if not o.slots or not (o.ranges or o.affinity):
            return {}
        proto = _proto(o.key[1])
        head = []
        if o.ranges:
            nets = ", ".join(f"{_ip(a)}/{n}" for a, n in o.ranges)
            head.append(f"ip saddr != {{ {nets} }} counter drop")
        chain = f"out_{sid}"
        if not o.affinity:
            return {chain: head + [f"goto {_shared_chain(o)}"]}
        if o.masquerade:
            head.append(f"ct mark set ct mark | 0x{self.marks.masq_mark:08x}")
        # Affinity: a client seen within the timeout goes back to its endpoint.
        out = {}
        rules = list(head)
        for bid in dict.fromkeys(o.backend_ids):
            rules.append(f"ip saddr @aff_{sid}_{bid} goto out_{sid}_{bid}")
        vmap = ", ".join(f"{i} : goto out_{sid}_{bid}" for i, bid in enumerate(o.backend_ids))
        rules.append(f"numgen random mod {len(o.slots)} vmap {{ {vmap} }}")
        out[chain] = rules
        for bid, (a, port) in dict(zip(o.backend_ids, o.slots)).items():
            out[f"out_{sid}_{bid}"] = [f"update @aff_{sid}_{bid} {{ ip saddr }}",
                                       f"meta l4proto {proto} counter dnat ip to {a}:{port}"]
        return out

    def _backend_elements(self, verb: str, backends) -> list[str]:
        """Map elements (id -> endpoint) and their twins in the endpoints set."""
        mark = self.marks.backend_mark
        if verb == "add":
            keys = [f"0x{mark(b):08x} : {_ep(ep)}" for b, ep in backends.items()]
        else:
            keys = [f"0x{mark(b):08x}" for b in backends]
        return (self._elements(verb, MAP, keys)
                + self._elements(verb, ENDPOINTS, map(_ep, backends.values())))

    def _elements(self, verb: str, name: str, items: Iterable[str]) -> list[str]:
        items = list(items)
        return [f"{verb} element {self._t} {name} {{ {', '.join(items[i:i + CHUNK])} }}"
                for i in range(0, len(items), CHUNK)]

    def delete(self) -> None:
        """Remove the table and everything in it; nothing if it is absent."""
        self._run([f"add table {self._t}", f"delete table {self._t}"])  # nft 1.0.6 has no `destroy`

    # -- reading --------------------------------------------------------------

    def dump(self, elements: bool = True) -> str:
        """`nft list table`, for debugging (`elements=False`: terse)."""
        return self._nft(*([] if elements else ["-t"]), "list", "table", FAMILY, self.name)

    def exists(self) -> bool:
        try:
            self._nft("-t", "list", "table", FAMILY, self.name)
            return True
        except NftError as e:
            if "No such file or directory" in e.stderr:
                return False
            raise

    def backends(self) -> dict[int, Endpoint]:
        """Backend id -> (address, port) as the kernel holds the map; {} without
        a table. Keys that name no backend id under this mark layout are left
        out (a rebuild drops them).

        Read until two listings agree: a listing taken while the kernel
        grows the map's hash table (after many additions) can miss elements
        (in CI here, 289 of 100,000 right after they were written)."""
        read = self._backends_once()
        for _ in range(READ_AGAIN):
            again = self._backends_once()
            if again == read:
                return read
            read = again
        raise NftError([*self._argv, "-j", "list", "map"], f"{READ_AGAIN + 1} listings of the backend map differed")

    def _backends_once(self) -> dict[int, Endpoint]:
        try:
            text = self._nft("-j", "list", "map", FAMILY, self.name, MAP)
        except NftError as e:
            if "No such file or directory" in e.stderr:
                return {}
            raise
        out: dict[int, Endpoint] = {}
        m = self.marks
        for obj in json.loads(text).get("nftables", []):
            for elem in obj.get("map", {}).get("elem", []):
                try:
                    key, value = elem
                    if isinstance(key, dict):  # an element with timeout or comment
                        key = key["elem"]["val"]
                    addr, port = value["concat"]
                    ip = _ipv4(addr)
                    if ip is None:
                        raise ValueError(f"{addr!r} is not an IPv4 address")
                except (KeyError, TypeError, ValueError) as e:
                    raise NftError([*self._argv, "-j", "list", "map"], f"unexpected element {elem!r}: {e}") from None
                key = int(key)
                if key and not key & ~m.id_mask:
                    out[key >> m.id_shift] = (ip, int(port))
        return out

    # -- validation -----------------------------------------------------------

    def validate(self, backend_id, value) -> Endpoint:
        entry = f"backend {backend_id!r} -> {value!r}"
        if type(backend_id) is not int:
            raise ValueError(f"{entry}: backend id must be an int")
        try:
            self.marks.backend_mark(backend_id)
        except ValueError as e:
            raise ValueError(f"{entry}: {e}") from None
        if not isinstance(value, tuple) or len(value) != 2:
            raise ValueError(f"{entry}: want an (address, port) tuple")
        addr, port = value
        if isinstance(addr, IPv4Address):
            ip = addr
        elif isinstance(addr, str):
            ip = _ipv4(addr)
            if ip is None:
                kind = "an IPv6 address" if _is_ipv6(addr) else "not an IPv4 address"
                raise ValueError(f"{entry}: {addr!r} is {kind}; only IPv4 backends are supported")
        else:
            raise ValueError(f"{entry}: address must be a str or IPv4Address")
        n = int(ip)
        if n == 0 or n >> 28 == 0xE or n == 0xFFFFFFFF:  # unspecified, multicast, broadcast
            raise ValueError(f"{entry}: {ip} cannot be a backend")
        if type(port) is not int or not 1 <= port <= 65535:
            raise ValueError(f"{entry}: port must be an int in 1..65535")
        return (ip, port)


def _out_chains(sid: int, o: Output) -> list[str]:
    """The chains of a frontend's own (see NatTable._output_lines)."""
    if not o.slots or not (o.ranges or o.affinity):
        return []
    return [f"out_{sid}"] + ([f"out_{sid}_{bid}" for bid in dict.fromkeys(o.backend_ids)] if o.affinity else [])


def _shared_chain(o: Output) -> str:
    """out_s_<proto>_<slots> (exact frontends) or out_p_<proto>_<slots>
    (NodePorts), `_m` when masqueraded."""
    return f"out_{'s' if o.key[0] else 'p'}_{_proto(o.key[1])}_{len(o.slots)}{'_m' if o.masquerade else ''}"


def _plain(change: NftChange) -> bool:
    """No frontend of the change has chains or sets of its own (source
    ranges, affinity): its elements can go in a batch after its chains."""
    return not any(o.slots and (o.ranges or o.affinity) for outs in (
        change.put_outputs, change.old_outputs, change.delete_outputs) for o in outs.values())


def _slot_keys(o: Output) -> tuple[str, list[tuple[bytes, bytes]]]:
    """_slot_elements as netlink keys and values."""
    name, addr, port = _slot_head(o)
    if o.affinity or not o.slots:
        return name, []
    head = (nftnl.addr(addr) if addr else b"") + nftnl.port(port)
    return name, [(head + nftnl.host32(i), _ep_bytes(ep)) for i, ep in enumerate(o.slots)]


def _verdict_key(o: Output) -> bytes:
    """_out_element's key for netlink."""
    addr, proto, port = o.key
    return (nftnl.addr(addr) if addr else b"") + nftnl.proto(proto) + nftnl.port(port)


def _ep_bytes(ep: Endpoint) -> bytes:
    return nftnl.addr(ep[0]._ip) + nftnl.port(ep[1])


def _slot_head(o: Output) -> tuple[str, int, int]:
    """The slot map an Output's slots live in, its address (0: a NodePort) and port."""
    addr, proto, port = o.key
    return (f"out_slots_{_proto(proto)}" if addr else f"out_node_slots_{_proto(proto)}"), addr, port


def _slot_elements(o: Output) -> tuple[str, list[tuple[str, str]]]:
    """The slot map an Output's slots live in, and its (key, value)
    elements; none with affinity (its chains name the endpoints)."""
    name, addr, port = _slot_head(o)
    if o.affinity or not o.slots:
        return name, []
    head = f"{_ip(addr)} . {port}" if addr else f"{port}"
    return name, [(f"{head} . {i}", _ep(ep)) for i, ep in enumerate(o.slots)]


def _affinity_sets(sid: int, o: Output) -> list[str]:
    return [f"aff_{sid}_{bid}" for bid in dict.fromkeys(o.backend_ids)] if o.affinity and o.slots else []


def _out_element(o: Output) -> tuple[str, str]:
    """The verdict map an Output's element lives in, and its key."""
    addr, proto, port = o.key
    name = ("out_services" if o.slots else "out_empty") if addr else \
        ("out_node_ports" if o.slots else "out_empty_node")
    key = f"{_ip(addr)} . {_proto(proto)} . {port}" if addr else f"{_proto(proto)} . {port}"
    return name, key


def _out_verdict(sid: int, o: Output) -> str:
    if o.slots:
        return f"goto out_{sid}" if o.ranges or o.affinity else f"goto {_shared_chain(o)}"
    return "drop" if o.drop else "goto refuse"


def _ipv4(text: str) -> IPv4Address | None:
    """Strict dotted quad; inet_pton is ~10x faster than IPv4Address(str),
    which counts at 100,000 backends."""
    try:
        return IPv4Address(socket.inet_pton(socket.AF_INET, text))
    except (OSError, TypeError):
        return None


def _is_ipv6(text: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6, text)
        return True
    except (OSError, TypeError):
        return False

