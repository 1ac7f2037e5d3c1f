"""tests/cluster_node runs a real one-node cluster (harness.node): etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
kube-proxy and CoreDNS in a "node" network namespace.

It needs `make deps-cluster` and `make images`, which are not part of
`make deps`, so, like tests/cluster_deps, these tests are deselected unless
BLIXT_CLUSTER=1 (`make test-cluster` sets it), and the run says so."""

from __future__ import annotations

import os
import pathlib

import pytest

from harness.optin import OptIn

from harness.paths import component

REASON = ("the one-node cluster needs `make deps-cluster images`, not part of `make deps`/`make test`; "
          "run `make test-cluster` (or set BLIXT_CLUSTER=1)")
_opt = OptIn(pathlib.Path(__file__).parent, "tests/cluster_node", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary


@pytest.fixture(scope="session")
def node_cluster(tmp_path_factory):
    """A running one-node cluster (harness.node.NodeCluster), torn down at the
    end of the session (a no-op if a test tore it down already)."""
    from harness.node import NodeCluster
    workdir = tmp_path_factory.mktemp("node")
    with component():
        cluster = NodeCluster(workdir, netns_prefix=f"bx{os.getpid() % 100000}")
    yield cluster
    cluster.stop()
