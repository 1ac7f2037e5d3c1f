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

from harness import paths
from harness.node import not_rolled_out
from harness.optin import REASON, OptIn
from harness.paths import component

HERE = pathlib.Path(__file__).parent
OVERLAY = paths.REPO / "deploy" / "kustomize" / "overlays" / "bpfman"
_opt = OptIn(HERE, "tests/cluster", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary


class Deployed:
    """The cluster with blixt applied from the bpfman overlay, all rolled out."""

    def __init__(self, cluster):
        self.cluster = cluster
        cluster.kubectl("apply", "-k", OVERLAY)
        self.rollout()

    def rollout(self, timeout: str = "180s") -> None:
        problem = not_rolled_out(self.cluster.kubectl, timeout)
        if problem:
            raise AssertionError(f"{problem}\n{self.describe()}")

    def describe(self) -> str:
        pods = self.cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        logs = ""
        for ns, ds in (("bpfman", "ds/bpfman"), ("blixt-system", "ds/blixt-agent")):
            logs += f"--- {ns}/{ds}\n" + self.cluster.kubectl("-n", ns, "logs", ds, "--all-containers",
                                                           "--tail=30", check=False).stdout
        return pods + logs


@pytest.fixture(scope="session")
def deployed(tmp_path_factory):
    from harness.node import NodeCluster
    workdir = tmp_path_factory.mktemp("cluster")
    with component():
        cluster = NodeCluster(workdir, netns_prefix=f"bc{os.getpid() % 100000}")
    try:
        yield Deployed(cluster)
    finally:
        cluster.stop()
