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

import logging
import subprocess
from typing import Iterable

from blixt.dataplane.plan import Flush

log = logging.getLogger(__name__)


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
