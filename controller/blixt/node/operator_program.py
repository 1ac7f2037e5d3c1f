"""`blixt agent --maps-dir`: the program bpfman-operator loaded for this node,
as its ClusterBpfApplicationState says, and whether the maps the CSI driver
pinned for the agent are that program's.

bpfman-operator's agent keeps one ClusterBpfApplicationState per
ClusterBpfApplication and node (labels bpfman.io/ownedByProgram and
kubernetes.io/hostname) with each program's id, load and link status. The
blixt agent programs its maps only while that state says the program is
loaded and every link it should have is attached, and the pinned maps are
the ones that program uses.
"""

from __future__ import annotations

import logging
import threading
from typing import Iterable

from blixt.dataplane.marks import MarkConfig
from blixt.kube.resources import Resource

from . import bpf, pinned_maps

log = logging.getLogger(__name__)

CLUSTER_BPF_APPLICATION_STATES = Resource("cluster_bpf_application_states", "bpfman.io", "v1alpha1",
                                          "clusterbpfapplicationstates", "ClusterBpfApplicationState", False)
OWNER_LABEL = "bpfman.io/ownedByProgram"
HOST_LABEL = "kubernetes.io/hostname"


def loaded_program(states: Iterable[dict], app: str, node: str, program: str) -> tuple[int | None, str]:
    """(the program's id, "") when the state for this app and node says it is
    loaded with every link attached; else (None, why not). Pure."""
    mine = [s for s in states if ((s.get("metadata") or {}).get("labels") or {}).get(OWNER_LABEL) == app
            and ((s.get("metadata") or {}).get("labels") or {}).get(HOST_LABEL) == node]
    if not mine:
        return None, f"no ClusterBpfApplicationState for ClusterBpfApplication {app} on node {node} yet"
    if len(mine) > 1:
        return None, f"{len(mine)} ClusterBpfApplicationStates for {app} on node {node}"
    status = mine[0].get("status") or {}
    if status.get("appLoadStatus") != "LoadSuccess":
        return None, f"ClusterBpfApplication {app} on node {node}: appLoadStatus {status.get('appLoadStatus')!r}"
    prog = next((p for p in status.get("programs") or () if p.get("name") == program), None)
    if prog is None:
        return None, f"ClusterBpfApplication {app} on node {node} lists no program {program}"
    if prog.get("programLinkStatus") != "Success" or not isinstance(prog.get("programId"), int):
        return None, (f"program {program} of {app} on node {node}: programLinkStatus "
                      f"{prog.get('programLinkStatus')!r}, programId {prog.get('programId')!r}")
    links = [link for info in (prog.get("tcx"), prog.get("tc")) if isinstance(info, dict)
             for link in info.get("links") or ()]
    down = [f"{link.get('interfaceName')}: {link.get('linkStatus')}" for link in links
            if link.get("shouldAttach") and link.get("linkStatus") != "Attached"]
    if down:
        return None, f"program {program} ({prog['programId']}) not attached everywhere: {', '.join(down)}"
    if not any(link.get("shouldAttach") for link in links):
        return None, f"program {program} ({prog['programId']}) has no link to attach on node {node}"
    return prog["programId"], ""


class OperatorProgram:
    """Follows the state in `cache` (a Cache of CLUSTER_BPF_APPLICATION_STATES);
    usable() says whether the agent may program the pinned maps now, and
    logs each change of that answer once."""

    def __init__(self, cache, maps: dict[str, bpf.PinnedMap], maps_dir: str, app: str, node: str,
                 program: str, marks: MarkConfig):
        self.cache = cache
        self.maps = maps
        self.maps_dir = maps_dir
        self.app = app
        self.node = node
        self.program = program
        self.marks = marks
        self.program_id: int | None = None
        self._why: str | None = None
        self._marks_checked: int | None = None  # the program id whose blixt_cfg matched
        self._lock = threading.Lock()

    def check(self) -> tuple[int | None, str]:
        """(program id, "") when usable; else (None, why not). Raises
        PinnedMapsError when the agent must not run at all (its mark flags
        disagree with the loaded program's)."""
        states = (self.cache.snapshot().get(CLUSTER_BPF_APPLICATION_STATES.name) or {}).values()
        prog_id, why = loaded_program(states, self.app, self.node, self.program)
        if prog_id is None:
            return None, why
        try:
            gone = pinned_maps.stale(self.maps, prog_id)
        except bpf.BpfError as e:
            return None, f"program {prog_id} cannot be read: {e}"
        if gone:
            return None, (f"the maps pinned in {self.maps_dir} are not program {prog_id}'s ({', '.join(gone)}): "
                          f"the ClusterBpfApplication was loaded again since this pod started, and its CSI "
                          f"volume still holds the old maps; delete this pod so a new one mounts the new maps")
        if prog_id != self._marks_checked:  # a loaded program's globalData never changes
            problem = pinned_maps.marks_problem(pinned_maps.loaded_marks(prog_id), self.marks)
            if problem:
                raise pinned_maps.PinnedMapsError(problem)
            self._marks_checked = prog_id
        return prog_id, ""

    def usable(self) -> bool:
        prog_id, why = self.check()
        with self._lock:
            if why != self._why:
                if why:
                    log.warning("not ready: %s", why)
                else:
                    log.info("program %d of ClusterBpfApplication %s is loaded and attached, and the maps "
                             "in %s are its own", prog_id, self.app, self.maps_dir)
                self._why = why
            self.program_id = prog_id
        return prog_id is not None
