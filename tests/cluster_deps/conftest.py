"""tests/cluster_deps checks the binaries `make deps-cluster` builds.

deps-cluster is not part of `make deps`, so `make test` (whose pytest run
collects all of tests/) must not count these tests as failures under CI=true
nor as ordinary skips. Unless BLIXT_CLUSTER=1 is set they are deselected here,
and the run says so in its summary; `make test-cluster-deps` builds the
binaries and sets BLIXT_CLUSTER=1. With it set, a missing binary is a skip,
or a failure under CI=true, like every other component (harness.paths)."""

from __future__ import annotations

import pathlib

from harness.optin import OptIn

REASON = ("`make deps-cluster` is not part of `make deps`/`make test`; "
          "run `make test-cluster-deps` (or set BLIXT_CLUSTER=1)")
_opt = OptIn(pathlib.Path(__file__).parent, "tests/cluster_deps", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary
