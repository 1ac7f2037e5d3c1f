"""blixt's own L4 conformance scenarios, one per upstream Gateway API v1.6.1
test (TCPRoute*, UDPRoute*, and the core Gateway tests named below), run
against the real controller and agent processes. One node and one pair of
processes serve the whole session; every test works in namespaces of its
own, so tests stay independent."""

from __future__ import annotations

import itertools

import pytest

from harness.blixt import Node

from harness.scenario import Scenario

_serial = itertools.count()


@pytest.fixture(scope="session")
def node(kube, bpfman_server, bytecode_image, workdir):
    n = Node(workdir / "conformance", kube, bpfman_server.socket, bytecode_image)
    n.workdir.mkdir(parents=True, exist_ok=True)
    try:
        n.apply(Scenario.CLASS_MANIFEST)
        n.start_controller()
        n.start_agent()
        yield n
    finally:
        n.close()
        with bpfman_server.client() as c:  # the agent leaves its programs loaded by design
            for p in c.list(match_metadata={"blixt.io/node": n.name}):
                c.unload(p.id)


@pytest.fixture
def sc(node, request):
    s = Scenario(node, f"c{next(_serial)}")
    yield s
    s.cleanup()
