"""The agent's nftables table in one node network namespace: the backend map
and the NAT/reject chains that turn the BPF program's skb->mark into
conntrack DNAT, masquerade and kube-proxy style rejects.

Why the `nft` CLI (subprocess) and not libnftables through ctypes: libnftables
parses the very same text, so ctypes would buy only the saved fork (~5 ms a
call; 100,000 elements still go through in one batch of about a second). The
CLI runs in any netns through `ip netns exec`, where libnftables would need
setns() in our threaded process; every script we send can be logged and
replayed by hand; and we do not bind to libnftables.so's C ABI.
"""

from __future__ import annotations

import dataclasses
import json
import re
import socket
import subprocess
from ipaddress import IPv4Address
from typing import Iterable, Mapping

from .marks import MarkConfig

FAMILY = "ip"
MAP = "backends"
MAP_TYPE = "type mark : ipv4_addr . inet_service"
# Elements per `add element` line. The whole script is still one transaction;
# bounded lines only keep nft's error echo (it prints the failing line) short.
CHUNK = 1000
TIMEOUT = 120.0

Endpoint = tuple[IPv4Address, int]
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,63}")


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
class Diff:
    """What an apply changed, by backend id."""

    added: dict[int, Endpoint] = dataclasses.field(default_factory=dict)
    changed: dict[int, tuple[Endpoint, Endpoint]] = dataclasses.field(default_factory=dict)  # (old, new)
    removed: dict[int, Endpoint] = dataclasses.field(default_factory=dict)
    stray: tuple[int, ...] = ()  # raw map keys that named no valid backend id; removed

    @property
    def empty(self) -> bool:
        return not (self.added or self.changed or self.removed or self.stray)

    def __str__(self) -> str:
        return f"+{len(self.added)} ~{len(self.changed)} -{len(self.removed) + len(self.stray)}"


@dataclasses.dataclass(frozen=True)
class _Chain:
    name: str
    type: str
    hook: str
    priority: int  # numeric: nft 1.0.6 accepts `dstnat` only on the prerouting hook
    rules: tuple[str, ...]

    @property
    def header(self) -> str:
        return f"type {self.type} hook {self.hook} priority {self.priority}; policy accept;"


# Standard priority names of the ip family, for comparing what nft lists.
_PRIORITIES = {"raw": -300, "mangle": -150, "dstnat": -100, "filter": 0, "security": 50, "srcnat": 100}
_HEADER = re.compile(r"type (\S+) hook (\S+) priority (.+?); policy (\S+);")


def _normalize(line: str) -> str:
    """One listed or written line in the form we compare.

    Counters differ with traffic; `reject` alone is how nft lists the ip
    family's default, icmp port-unreachable; priorities compare as numbers."""
    line = " ".join(line.split())
    line = re.sub(r"counter packets \d+ bytes \d+", "counter", line)
    line = re.sub(r"reject with icmp (type )?port-unreachable", "reject", line)
    # A mask that is a prefix is listed as one: `& 0xffff0000 != 0` -> `!= 0x00000000/16`.
    line = re.sub(r"meta mark (!=|==) (0x[0-9a-f]{8})/(\d+)",
                  lambda m: f"meta mark & 0x{(0xFFFFFFFF << (32 - int(m[3]))) & 0xFFFFFFFF:08x} {m[1]} {m[2]}",
                  line)
    m = _HEADER.fullmatch(line)
    if m:
        line = f"type {m[1]} hook {m[2]} priority {_priority(m[3])}; policy {m[4]};"
    return line


def _priority(text: str) -> int | str:
    m = re.fullmatch(r"(\w+|-?\d+)(?:\s*([+-])\s*(\d+))?", text.strip())
    if not m:
        return text
    base = int(m[1]) if m[1].lstrip("-").isdigit() else _PRIORITIES.get(m[1])
    if base is None:
        return text
    offset = int(m[3] or 0)
    return base - offset if m[2] == "-" else base + offset


def _parse_listing(text: str) -> tuple[list[str], dict[tuple[str, str], list[str]]]:
    """`nft -t list table` -> (table-level lines, {(kind, name): body lines})."""
    table_lines: list[str] = []
    blocks: dict[tuple[str, str], list[str]] = {}
    current: list[str] | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("table "):
            continue
        if current is not None:
            if line == "}":
                current = None
            else:
                current.append(_normalize(line))
        elif line.endswith("{"):
            kind, _, name = line[:-1].strip().rpartition(" ")
            current = blocks[(kind, name)] = []
        elif line != "}":
            table_lines.append(line)
    return table_lines, blocks


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

    # -- the ruleset ----------------------------------------------------------

    def chains(self) -> tuple[_Chain, ...]:
        m = self.marks
        ids, masq, reject = (f"0x{v:08x}" for v in (m.id_mask, m.masq_mark, m.reject_mark))
        # A mark naming an id missing from the map fails the lookup: no DNAT.
        dnat = (f"meta mark & {ids} != 0x00000000 meta l4proto {{ tcp, udp }} counter "
                f"dnat ip to meta mark & {ids} map @{MAP}",)
        # ct state new: only the first packet decides; the reject bit is the
        # service-without-backends answer, as kube-proxy gives it.
        rejects = (
            f"ct state new meta mark & {reject} != 0x00000000 meta l4proto tcp counter reject with tcp reset",
            f"ct state new meta mark & {reject} != 0x00000000 meta l4proto udp counter "
            f"reject with icmp type port-unreachable",
        )
        return (
            _Chain("prerouting", "nat", "prerouting", -100, dnat),
            # Locally generated packets, should a TC egress program mark them.
            _Chain("output", "nat", "output", -100, dnat),
            _Chain("postrouting", "nat", "postrouting", 100,
                   (f"meta mark & {masq} != 0x00000000 counter masquerade",)),
            # In prerouting, before routing: a VIP the node has no route for
            # still gets the reset or port-unreachable, not "no route".
            # After dstnat (-100), so conntrack has classified the packet.
            _Chain("rejects", "filter", "prerouting", -90, rejects),
        )

    def _wanted(self) -> dict[tuple[str, str], list[str]]:
        want = {("map", MAP): [_normalize(MAP_TYPE)]}
        for c in self.chains():
            want[("chain", c.name)] = [_normalize(c.header), *map(_normalize, c.rules)]
        return want

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

    def _list(self, *args: str) -> str | None:
        """A listing, or None when the table (or map) does not exist."""
        try:
            return self._nft(*args)
        except NftError as e:
            if "Error: No such file or directory" in e.stderr:
                return None
            raise

    # -- table ----------------------------------------------------------------

    def ensure(self) -> bool:
        """Create the table, or bring its map declaration and chains to what
        they should be, in one transaction (a dormant table is woken in a
        second); map elements are kept unless the map's declaration was wrong.
        Chains and sets we do not know are removed: the table is ours.
        Returns whether anything changed."""
        listing = self._list("-t", "list", "table", FAMILY, self.name)
        table_lines, have = _parse_listing(listing or "")
        want = self._wanted()
        t = f"{FAMILY} {self.name}"
        stale = {k for k in have if k not in want or have[k] != want[k]}
        if ("map", MAP) in stale:  # rules referencing the map must go first
            stale |= {k for k in have if k[0] == "chain"}
        missing = [k for k in want if k not in have or k in stale]
        # A dormant table has its hooks off: blixt would silently do nothing.
        dormant = any(line.startswith("flags") for line in table_lines)
        if listing is not None and not (stale or missing or dormant):
            return False
        lines = [f"add table {t}"] if listing is None else []
        drop_chains = sorted(k for k in stale if k[0] == "chain")
        lines += [f"flush chain {t} {name}" for _, name in drop_chains]
        lines += [f"delete chain {t} {name}" for _, name in drop_chains]
        lines += [f"delete {kind} {t} {name}" for kind, name in sorted(stale) if kind != "chain"]
        if ("map", MAP) in missing:
            lines.append(f"add map {t} {MAP} {{ {MAP_TYPE}; }}")
        for c in self.chains():
            if ("chain", c.name) in missing:
                lines.append(f"add chain {t} {c.name} {{ {c.header} }}")
                lines += [f"add rule {t} {c.name} {rule}" for rule in c.rules]
        if lines:
            self._run(lines)
        if dormant:
            # `add table` without flags wakes it. The kernel takes a table flag
            # change only in a transaction of its own (EINVAL beside chain
            # changes), so it comes second: the chains are right before the
            # hooks go live.
            self._run([f"add table {t}"])
        return True

    def delete(self) -> None:
        """Remove the table and everything in it; nothing if it is absent."""
        t = f"{FAMILY} {self.name}"
        self._run([f"add table {t}", f"delete table {t}"])  # nft 1.0.6 has no `destroy`

    def dump(self, elements: bool = True) -> str:
        """`nft list table`, for debugging (`elements=False`: terse)."""
        return self._nft(*([] if elements else ["-t"]), "list", "table", FAMILY, self.name)

    # -- backends -------------------------------------------------------------

    def _elements(self) -> dict[int, Endpoint]:
        """The map as the kernel holds it: raw mark key -> endpoint."""
        text = self._list("-j", "list", "map", FAMILY, self.name, MAP)
        if text is None:
            return {}
        out: dict[int, Endpoint] = {}
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
                    out[int(key)] = (ip, int(port))
                except (KeyError, TypeError, ValueError) as e:
                    raise NftError([*self._argv, "-j", "list", "map"], f"unexpected element {elem!r}: {e}") from None
        return out

    def _backend_id(self, key: int) -> int | None:
        m = self.marks
        if key == 0 or key & ~m.id_mask:
            return None
        return key >> m.id_shift

    def backends(self) -> dict[int, Endpoint]:
        """Backend id -> (address, port), read back from the kernel; {} without a table."""
        out = {}
        for key, ep in self._elements().items():
            bid = self._backend_id(key)
            if bid is not None:
                out[bid] = ep
        return out

    def _validate(self, backend_id, value) -> Endpoint:
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

    def apply(self, backends: Mapping[int, tuple[str | IPv4Address, int]]) -> Diff:
        """Make the map hold exactly `backends`, in one transaction."""
        want = {bid: self._validate(bid, v) for bid, v in backends.items()}
        have = self._elements()
        stray = tuple(sorted(k for k in have if self._backend_id(k) is None))
        current = {self._backend_id(k): ep for k, ep in have.items() if k not in stray}
        removed = {bid: ep for bid, ep in current.items() if bid not in want}
        return self._commit(current, want, removed, stray)

    def apply_changes(self, put: Mapping[int, tuple[str | IPv4Address, int]], delete: Iterable[int],
                      known: Mapping[int, Endpoint] | None = None) -> Diff:
        """Add or replace `put`, delete the ids in `delete` (absent ones are
        ignored); everything else stays. One transaction. `known` is the map's
        content when the caller already knows it: reading 100,000 elements
        back from the kernel takes nft about two seconds."""
        want = {bid: self._validate(bid, v) for bid, v in put.items()}
        gone = list(delete)
        for bid in gone:
            if type(bid) is not int or not 1 <= bid <= self.marks.max_backend_id:
                raise ValueError(f"delete {bid!r}: not a backend id in 1..{self.marks.max_backend_id}")
            if bid in want:
                raise ValueError(f"backend {bid}: both put and deleted")
        current = dict(known) if known is not None else self.backends()
        removed = {bid: current[bid] for bid in gone if bid in current}
        return self._commit(current, want, removed, ())

    def _commit(self, current: dict[int, Endpoint], want: dict[int, Endpoint],
                removed: dict[int, Endpoint], stray: tuple[int, ...]) -> Diff:
        added = {bid: ep for bid, ep in want.items() if bid not in current}
        changed = {bid: (current[bid], ep) for bid, ep in want.items() if bid in current and current[bid] != ep}
        diff = Diff(added, changed, removed, stray)
        if diff.empty:
            return diff
        mark = self.marks.backend_mark
        # A map element's value cannot be overwritten (EEXIST): a changed
        # backend is deleted and added again within the same transaction.
        dels = [f"0x{mark(b):08x}" for b in (*removed, *changed)] + [f"0x{k:08x}" for k in stray]
        adds = [f"0x{mark(b):08x} : {ep[0]} . {ep[1]}" for b, ep in want.items() if b in added or b in changed]
        t = f"{FAMILY} {self.name}"
        lines = [f"delete element {t} {MAP} {{ {', '.join(dels[i:i + CHUNK])} }}" for i in range(0, len(dels), CHUNK)]
        lines += [f"add element {t} {MAP} {{ {', '.join(adds[i:i + CHUNK])} }}" for i in range(0, len(adds), CHUNK)]
        self._run(lines)
        return diff
