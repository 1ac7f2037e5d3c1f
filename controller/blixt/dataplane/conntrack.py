"""Flushing UDP conntrack entries that point at backends that are gone.

A UDP "connection" has no end the kernel can see: its conntrack entry keeps
the old DNAT binding for as long as packets keep coming, so a client would
go on talking to a removed backend, or to a backend a deleted service once
had. Like kube-proxy, the agent deletes those entries when it removes a
backend from a UDP service or the service itself; TCP is left alone, since
its peers notice (RST, timeout) and conntrack follows."""

from __future__ import annotations

import ipaddress
import logging
import subprocess
from typing import Iterable

log = logging.getLogger(__name__)

# (service address or None for a wildcard service, service port, backend (address, port) or None for all)
Flush = tuple[ipaddress.IPv4Address | None, int, tuple[ipaddress.IPv4Address, int] | None]


def flush_udp(netns: str | None, flushes: Iterable[Flush]) -> int:
    """Delete matching UDP entries in the namespace; returns how many commands matched something."""
    prefix = ["ip", "netns", "exec", netns] if netns else []
    matched = 0
    for vip, port, backend in flushes:
        argv = prefix + ["conntrack", "-D", "-p", "udp", "--orig-port-dst", str(port)]
        if vip is not None:
            argv += ["--orig-dst", str(vip)]
        if backend is not None:
            argv += ["--reply-src", str(backend[0]), "--reply-port-src", str(backend[1])]
        res = subprocess.run(argv, capture_output=True, text=True)
        # conntrack exits 1 when nothing matched: that is fine.
        if res.returncode == 0:
            matched += 1
            log.info("flushed UDP conntrack entries for %s:%d%s", vip or "*", port,
                     f" -> {backend[0]}:{backend[1]}" if backend else "")
        elif "0 flow entries" not in res.stderr and res.returncode != 1:
            log.warning("conntrack flush for %s:%d failed: %s", vip or "*", port, res.stderr.strip())
    return matched


def stale_udp(state, plan) -> list[Flush]:
    """From the state before a plan and the plan: the UDP flows to flush."""
    by_id = {val[0]: key for key, val in state.services.items()}
    out: list[Flush] = []
    for key in plan.services_delete:
        addr, port, proto = key
        if proto == 17:
            out.append((ipaddress.IPv4Address(addr) if addr else None, port, None))
    deleted = set(plan.services_delete)
    for sid, bid in plan.members_delete:
        key = by_id.get(sid)
        if key is None or key in deleted or key[2] != 17 or bid not in state.backends:
            continue
        out.append((ipaddress.IPv4Address(key[0]) if key[0] else None, key[1], state.backends[bid]))
    return out
