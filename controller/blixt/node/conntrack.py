"""Flushing UDP conntrack entries whose binding is wrong now (the plan says
which: blixt.dataplane.plan.Plan.udp_flushes).

A UDP "connection" has no end the kernel can see: its conntrack entry keeps
the old DNAT binding for as long as packets keep coming, so a client would
go on talking to a removed backend, or to a backend a deleted service once
had. Like kube-proxy, the agent deletes those entries when it removes a
backend from a UDP service or the service itself; TCP is left alone, since
its peers notice (RST, timeout) and conntrack follows. A UDP flow that began
before its frontend had a backend was never NATed at all; its entry is
flushed when the frontend gets its first backend, for the same reason."""

from __future__ import annotations

import dataclasses
import logging
import subprocess
import tempfile
from typing import Iterable

from blixt.dataplane.plan import Flush

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class UdpEntry:
    """One UDP conntrack entry: the original direction's tuple, and who answers."""

    src: str
    dst: str
    sport: int
    dport: int
    reply_src: str
    reply_sport: int


def parse(listing: str) -> list[UdpEntry]:
    """`conntrack -L -p udp` output: the first src/dst/sport/dport are the
    original direction, the second the reply's."""
    out = []
    for line in listing.splitlines():
        if not line.startswith("udp"):
            continue
        fields: dict[str, list[str]] = {}
        for token in line.split():
            key, eq, value = token.partition("=")
            if eq:
                fields.setdefault(key, []).append(value)
        try:
            out.append(UdpEntry(fields["src"][0], fields["dst"][0], int(fields["sport"][0]),
                                int(fields["dport"][0]), fields["src"][1], int(fields["sport"][1])))
        except (KeyError, IndexError, ValueError):
            continue  # not a line with both directions
    return out


def matching(entries: Iterable[UdpEntry], flushes: Iterable[Flush]) -> list[UdpEntry]:
    """The entries a flush names: to its port (and address, unless it is a
    wildcard frontend), answered by its backend (any, if None)."""
    by_port: dict[int, list[tuple[str | None, tuple[str, int] | None]]] = {}
    for vip, port, backend in flushes:
        by_port.setdefault(port, []).append(
            (str(vip) if vip is not None else None,
             (str(backend[0]), backend[1]) if backend is not None else None))
    out = []
    for e in entries:
        for vip, backend in by_port.get(e.dport, ()):
            if (vip is None or vip == e.dst) and (backend is None or backend == (e.reply_src, e.reply_sport)):
                out.append(e)
                break
    return out


def flush_udp(netns: str | None, flushes: Iterable[Flush]) -> int:
    """Delete matching UDP entries in the namespace; returns how many went.

    One listing of the UDP table, matched here, then one `conntrack -R`
    batch of exact deletions for the entries that exist. conntrack runs a
    filtered -D as a dump of the whole table (~13 ms each here), so hundreds
    of filters under endpoint churn held every apply for seconds; most of
    them match nothing."""
    flushes = list(flushes)
    if not flushes:
        return 0
    prefix = ["ip", "netns", "exec", netns] if netns else []
    listed = subprocess.run(prefix + ["conntrack", "-L", "-p", "udp"], capture_output=True, text=True)
    if listed.returncode != 0:
        log.warning("conntrack listing failed (exit %d): %s; %d UDP flushes not done", listed.returncode,
                    listed.stderr.strip(), len(flushes))
        return 0
    stale = matching(parse(listed.stdout), flushes)
    if not stale:
        return 0
    with tempfile.NamedTemporaryFile("w", prefix="blixt-conntrack-", suffix=".txt") as batch:
        batch.write("".join(f"-D -p udp --orig-src {e.src} --orig-dst {e.dst} --orig-port-src {e.sport} "
                            f"--orig-port-dst {e.dport}\n" for e in stale))
        batch.flush()
        res = subprocess.run(prefix + ["conntrack", "-R", batch.name], capture_output=True, text=True)
    # It prints each entry it deleted; an entry gone meanwhile is no error.
    gone = sum(1 for line in res.stdout.splitlines() if line.startswith("udp"))
    if res.returncode != 0:
        log.warning("conntrack flush of %d entries failed (exit %d): %s", len(stale), res.returncode,
                    res.stderr.strip())
    log.info("flushed %d UDP conntrack entries bound to removed backends or frontends, or older than "
             "their frontend's first backend (%d flushes asked)", gone, len(flushes))
    return gone
