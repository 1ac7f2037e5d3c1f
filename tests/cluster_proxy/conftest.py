"""tests/cluster_proxy: blixt as the cluster's only Service proxy. The
one-node cluster without kube-proxy (harness.node, proxy="blixt"), and
`kubectl apply -k deploy/kustomize/overlays/service-proxy`: the agent serves
every Service, CoreDNS included, for pods, the node and the outside.

A cluster of its own, so `make test` runs this tier in a third pytest
session (BLIXT_CLUSTER=1), after the other cluster's is torn down."""

from __future__ import annotations

import os
import pathlib

import pytest

from harness import node, paths
from harness.optin import REASON, OptIn

HERE = pathlib.Path(__file__).parent
OVERLAY = paths.REPO / "deploy" / "kustomize" / "overlays" / "service-proxy"
_opt = OptIn(HERE, "tests/cluster_proxy", REASON)
pytest_collection_modifyitems = _opt.collection_modifyitems
pytest_terminal_summary = _opt.terminal_summary


@pytest.fixture(scope="session")
def proxied(tmp_path_factory):
    with node.deployed(tmp_path_factory.mktemp("cluster-proxy"), OVERLAY, f"bp{os.getpid() % 100000}",
                       proxy="blixt") as d:
        yield d
