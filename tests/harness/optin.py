"""Test directories that `make test` must not run yet, deselected in the open.

Their components are built by targets outside `make deps` (deps-cluster,
images), so under CI=true they would fail for want of them, and an ordinary
skip would hide them. Unless BLIXT_CLUSTER=1 is set, their tests are
deselected and the run's summary says so and why; with it set, they run, and
a missing component is a skip, or a failure under CI=true, like any other
(harness.paths)."""

from __future__ import annotations

import os
import pathlib

import pytest


def enabled() -> bool:
    return os.environ.get("BLIXT_CLUSTER") == "1"


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
