"""tests/cluster_deps checks the binaries `make deps-cluster` builds.

deps-cluster is not part of `make deps`, so `make test` (whose pytest run
collects all of tests/) must not count these tests as failures under CI=true
nor as ordinary skips. Unless BLIXT_CLUSTER=1 is set they are deselected here,
and the run says so in its summary; `make test-cluster-deps` builds the
binaries and sets BLIXT_CLUSTER=1. With it set, a missing binary is a skip,
or a failure under CI=true, like every other component (harness.paths)."""

from __future__ import annotations

import os
import pathlib

import pytest

HERE = pathlib.Path(__file__).resolve().parent
REASON = ("`make deps-cluster` is not part of `make deps`/`make test`; "
          "run `make test-cluster-deps` (or set BLIXT_CLUSTER=1)")
_deselected = pytest.StashKey[int]()


def enabled() -> bool:
    return os.environ.get("BLIXT_CLUSTER") == "1"


def pytest_collection_modifyitems(config, items):
    if enabled():
        return
    mine = [i for i in items if HERE in pathlib.Path(i.path).resolve().parents]
    if not mine:
        return
    drop = set(map(id, mine))
    items[:] = [i for i in items if id(i) not in drop]
    config.hook.pytest_deselected(items=mine)
    config.stash[_deselected] = len(mine)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    n = config.stash.get(_deselected, 0)
    if n:
        terminalreporter.write_line(f"tests/cluster_deps: {n} tests deselected: {REASON}")
