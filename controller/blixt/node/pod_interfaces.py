"""Pods' interfaces come and go: the agent attaches its program to the TCX
ingress of every interface whose name starts with one of the given prefixes
(the host side of each pod's veth: `veth` for the bridge CNI, `cali` for
Calico, `lxc` for Cilium), as it appears, so traffic from pods to Services
is classified before netfilter (TC on a bridge is too late under
br_netfilter; BUILD.md).

`ip monitor link` wakes the sync at once when links change; a periodic sync
catches anything missed. An interface that goes away takes its kernel link
with it; its bpfman link record is detached too (for links this process
attached: bpfman 0.6.0's API does not say which interface a link id is on).
"""

from __future__ import annotations

import logging
import subprocess
import threading
from typing import Iterable

from . import links
from .manager import Manager

log = logging.getLogger(__name__)


class PodInterfaces:
    def __init__(self, manager: Manager, prefixes: Iterable[str], interval: float = 10.0):
        self.manager = manager
        self.prefixes = tuple(prefixes)
        if not self.prefixes or not all(self.prefixes):
            raise ValueError("pod interface prefixes must be non-empty")
        self.interval = interval
        self.netns = manager.settings.netns
        self._static = {a.iface for a in manager.settings.attachments}
        self._links: dict[str, int] = {}   # interface -> bpfman link id, for this program
        self._program: int | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._monitor: subprocess.Popen | None = None
        self.synced = threading.Event()

    def matching(self) -> set[str]:
        return {n for n in links.interfaces(self.netns).values()
                if n.startswith(self.prefixes) and n not in self._static}

    def sync(self) -> None:
        """Attach to every matching interface the program does not run on;
        detach the records of interfaces that are gone."""
        prog = self.manager.programs[0].id
        if prog != self._program:  # a reload: the old program's links went with it
            self._links, self._program = {}, prog
        wanted = self.matching()
        live = set(links.tcx_ingress(prog, self.netns))
        for name in sorted(wanted - live):
            try:
                self._links[name] = self.manager.attach(name)
            except Exception as e:  # the veth may be gone already; the next sync tells
                log.warning("cannot attach to pod interface %s: %s", name, e)
        for name in sorted(set(self._links) - wanted):
            link = self._links.pop(name)
            try:
                self.manager.client.detach(link)
                log.info("pod interface %s is gone; detached its link %d", name, link)
            except Exception as e:
                log.warning("pod interface %s is gone; detaching link %d failed: %s", name, link, e)
        self.synced.set()

    def run(self) -> None:
        """Sync on every link change and every `interval` seconds, until stop()."""
        argv = ["ip"] + (["-n", self.netns] if self.netns else []) + ["-o", "monitor", "link"]
        try:
            self._monitor = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
            threading.Thread(target=self._read_monitor, name="ip-monitor", daemon=True).start()
        except OSError as e:
            log.warning("cannot watch link changes (%s); syncing pod interfaces every %.0f s", e, self.interval)
        while not self._stop.is_set():
            try:
                self.sync()
            except Exception:
                log.exception("pod interface sync failed; retrying")
            self._wake.wait(self.interval)
            self._wake.clear()

    def _read_monitor(self) -> None:
        for _ in self._monitor.stdout:
            self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._monitor is not None:
            self._monitor.kill()
            self._monitor.wait()
