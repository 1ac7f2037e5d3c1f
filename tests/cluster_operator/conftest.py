"""tests/cluster_operator: blixt under bpfman-operator v0.6.0 on the real
one-node cluster (harness.node): the operator installed from the local
images as deploy/kustomize/README.md says (harness.bpfman_operator), then
`kubectl apply -k deploy/kustomize/overlays/bpfman-operator`.

One change to the overlay, for this machine only (TEST_PATCH): the node is a
network namespace, not PID 1's, and a ClusterBpfApplication link without
networkNamespaces attaches in PID 1's. The link instead names the network
namespace of the agent's pods, which are hostNetwork: the node's.

The operator's bpfman shares the machine's bpfman state (/run/bpfman) with
the other cluster tiers' and the first session's bpfman-rpc, so this tier
runs in a pytest session of its own (BLIXT_CLUSTER=1, `make test`)."""

from __future__ import annotations

import os
import pathlib

import pytest
import yaml

from harness import bpfman_operator, node, paths
from harness.optin import REASON, OptIn

HERE = pathlib.Path(__file__).parent
OVERLAY = paths.REPO / "deploy" / "kustomize" / "overlays" / "bpfman-operator"
WORKLOADS = (("blixt-system", "daemonset/blixt-agent"), ("blixt-system", "deployment/blixt-controller"))
_opt = OptIn(HERE, "tests/cluster_operator", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary

TEST_PATCH = [{"op": "add", "path": "/spec/programs/0/tcx/links/0/networkNamespaces", "value": {
    "namespace": "blixt-system", "pods": {"matchLabels": {"app.kubernetes.io/name": "blixt-agent"}}}}]


def overlay_for_this_machine(workdir: pathlib.Path) -> pathlib.Path:
    d = workdir / "overlay"
    d.mkdir()
    (d / "kustomization.yaml").write_text(yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(OVERLAY, d)],
        "patches": [{"target": {"kind": "ClusterBpfApplication", "name": "blixt"},
                     "patch": yaml.safe_dump(TEST_PATCH)}]}))
    return d


@pytest.fixture(scope="session")
def operator_deployed(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("operator")
    with paths.component():
        cluster = node.NodeCluster(workdir / "cluster", netns_prefix=f"bo{os.getpid() % 100000}")
    try:
        operator = bpfman_operator.Operator(cluster)
        deployed = node.Deployed(cluster, overlay_for_this_machine(workdir), WORKLOADS)
        deployed.operator = operator
        yield deployed
    finally:
        cluster.stop()
