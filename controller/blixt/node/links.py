"""Where the kernel has a program attached: its TCX ingress links, by
interface, in the namespace the agent manages. bpfman 0.6.0 keeps listing a
link whose interface is gone; the kernel's link then has no device."""

from __future__ import annotations

import json
import socket
import subprocess

from . import bpf

GONE = "(interface gone)"


def interfaces(netns: str | None) -> dict[int, str]:
    """ifindex -> name in the namespace (None: this process's)."""
    if netns is None:
        return {i: name for i, name in socket.if_nameindex()}
    res = subprocess.run(["ip", "-n", netns, "-j", "link", "show"], capture_output=True, text=True)
    if res.returncode != 0:
        return {}
    return {link["ifindex"]: link["ifname"] for link in json.loads(res.stdout or "[]")}


def tcx_ingress(prog_id: int, netns: str | None) -> list[str]:
    """The interfaces whose TCX ingress runs the program, sorted; GONE for
    each link whose device was deleted. An index not in the namespace is
    another namespace's interface and is left out."""
    names = interfaces(netns)
    out = []
    for i in bpf.tcx_ingress_ifindexes(prog_id):
        if i == 0:
            out.append(GONE)
        elif i in names:
            out.append(names[i])
    return sorted(out)
