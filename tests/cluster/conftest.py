"""tests/cluster: blixt deployed the way users deploy it, on the real one-node
cluster (harness.node): `kubectl apply -k deploy/kustomize/overlays/bpfman`
brings up bpfman, the agent and the controller from the local images; then
samples/ with real pods, the agent restarted mid-traffic, least-privilege
RBAC, and the upstream Gateway API suite.

bpfman's state (/run/bpfman) is per machine, so this tier cannot share a
pytest session with the tiers that start their own bpfman-rpc: `make test`
runs it in a second session with BLIXT_CLUSTER=1; the first deselects it and
says so."""

from __future__ import annotations

import os
import pathlib

import pytest

from harness import node, paths
from harness.optin import REASON, OptIn

HERE = pathlib.Path(__file__).parent
OVERLAY = paths.REPO / "deploy" / "kustomize" / "overlays" / "bpfman"
_opt = OptIn(HERE, "tests/cluster", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    with node.deployed(tmp_path_factory.mktemp("cluster"), OVERLAY, f"bc{os.getpid() % 100000}") as d:
        yield d
