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

from harness.paths import component

HERE = pathlib.Path(__file__).resolve().parent
REASON = ("the one-node cluster needs `make deps-cluster images`, not part of `make deps`/`make test`; "
          "run `make test-cluster` (or set BLIXT_CLUSTER=1)")
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
        terminalreporter.write_line(f"tests/cluster_node: {n} tests deselected: {REASON}")


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
