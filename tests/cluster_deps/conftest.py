"""tests/cluster_deps checks the binaries `make deps-cluster` builds.

They run in `make test`'s second pytest session, with the cluster tiers
(harness.optin), and alone in `make test-cluster-deps`. A missing binary is a
skip, or a failure under CI=true, like every other component (harness.paths)."""

from __future__ import annotations

import pathlib

from harness.optin import REASON, OptIn

_opt = OptIn(pathlib.Path(__file__).parent, "tests/cluster_deps", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary
