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
import tempfile
from typing import Iterable

from blixt.dataplane.plan import Flush

log = logging.getLogger(__name__)


def flush_udp(netns: str | None, flushes: Iterable[Flush]) -> int:
    """Delete matching UDP entries in the namespace; returns how many entries went.

    One `conntrack -R` reads every deletion from a file: a process per
    deletion took seconds for the hundreds an apply can bring under endpoint
    churn, and the next apply waited for them."""
    filters = []
    for vip, port, backend in flushes:
        f = ["-D", "-p", "udp", "--orig-port-dst", str(port)]
        if vip is not None:
            f += ["--orig-dst", str(vip)]
        if backend is not None:
            f += ["--reply-src", str(backend[0]), "--reply-port-src", str(backend[1])]
        filters.append(f)
    if not filters:
        return 0
    prefix = ["ip", "netns", "exec", netns] if netns else []
    with tempfile.NamedTemporaryFile("w", prefix="blixt-conntrack-", suffix=".txt") as batch:
        batch.write("".join(" ".join(f) + "\n" for f in filters))
        batch.flush()
        res = subprocess.run(prefix + ["conntrack", "-R", batch.name], capture_output=True, text=True)
    # It prints each entry it deleted; a filter that matched nothing is no error.
    gone = sum(1 for line in res.stdout.splitlines() if line.startswith("udp"))
    if res.returncode != 0:
        log.warning("conntrack flush of %d filters failed (exit %d): %s", len(filters), res.returncode,
                    res.stderr.strip())
    for f in filters:
        log.debug("UDP conntrack flush: %s", " ".join(f[1:]))
    if gone:
        log.info("flushed %d UDP conntrack entries (%d filters: removed backends or frontends, "
                 "frontends that got their first backend)", gone, len(filters))
    return gone
