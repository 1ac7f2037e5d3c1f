"""tests/cluster_node runs a real one-node cluster (harness.node): etcd,
kube-apiserver, kube-controller-manager, kube-scheduler, containerd, kubelet,
kube-proxy and CoreDNS in a "node" network namespace.

They run in `make test`'s second pytest session, with tests/cluster
(harness.optin), and alone in `make test-cluster`."""

from __future__ import annotations

import os
import pathlib

import pytest

from harness.optin import REASON, OptIn

from harness.paths import component

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
