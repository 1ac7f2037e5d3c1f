"""The cluster test directories, deselected in the open from a plain pytest run.

tests/cluster_deps, tests/cluster_node and tests/cluster run a real cluster
whose bpfman shares the machine's bpfman state (/run/bpfman) with the
bpfman-rpc the other tiers start for their whole session, so they cannot run
in that session. `make test` runs them in later pytest sessions with
BLIXT_CLUSTER=1. Without it their tests are deselected and the run's summary
says so and why; with it they run, and a missing component is a skip, or a
failure under CI=true, like any other (harness.paths)."""

from __future__ import annotations

import os
import pathlib

import pytest


def enabled() -> bool:
    return os.environ.get("BLIXT_CLUSTER") == "1"


REASON = ("they run in `make test`'s later pytest sessions (BLIXT_CLUSTER=1): the cluster's bpfman "
          "must not meet this session's bpfman-rpc")


class OptIn:
    """The two pytest hooks for one directory; a conftest binds them:
    `pytest_collection_modifyitems = opt.collection_modifyitems` and
    `pytest_terminal_summary = opt.terminal_summary`."""

    def __init__(self, directory: pathlib.Path, label: str, reason: str):
        self.directory = directory.resolve()
        self.label = label
        self.reason = reason
        self._count = pytest.StashKey[int]()

    def collection_modifyitems(self, config, items):
        if enabled():
            return
        mine = [i for i in items if self.directory in pathlib.Path(i.path).resolve().parents]
        if not mine:
            return
        drop = set(map(id, mine))
        items[:] = [i for i in items if id(i) not in drop]
        config.hook.pytest_deselected(items=mine)
        config.stash[self._count] = len(mine)

    def terminal_summary(self, terminalreporter, exitstatus, config):
        n = config.stash.get(self._count, 0)
        if n:
            terminalreporter.write_line(f"{self.label}: {n} tests deselected: {self.reason}")
