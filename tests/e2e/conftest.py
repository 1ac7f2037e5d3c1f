"""e2e fixtures: blixt's controller and agent running as processes against
the real kube-apiserver and bpfman-rpc, with netns pods."""

from __future__ import annotations

import pytest

from harness.blixt import Node


@pytest.fixture
def blixt(kube, bpfman, bpfman_server, bytecode_image, workdir, request):
    """A node with the agent and the controller running; objects the test
    creates are deleted afterwards so tests stay independent."""
    node = Node(workdir / f"e2e-{request.node.name}", kube, bpfman_server.socket, bytecode_image)
    node.workdir.mkdir(parents=True, exist_ok=True)
    try:
        node.start_controller()
        node.start_agent()
        yield node
    finally:
        node.close()
        for kind in ("tcproutes", "udproutes", "gateways", "referencegrants", "endpointslices", "services"):
            kube.kubectl("delete", kind, "--all", "--all-namespaces", "--wait=false", check=False)
        kube.kubectl("delete", "gatewayclasses", "--all", "--wait=false", check=False)
