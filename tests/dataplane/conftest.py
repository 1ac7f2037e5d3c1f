"""Dataplane fixtures: a node namespace whose dataplane the Manager programs
from the bytecode image bpfman pulled from the TLS registry, with echo
servers in the pod namespaces."""

from __future__ import annotations

import pytest

from blixt.bpfman import client as bc
from blixt.node.manager import Attachment, Manager, Settings
from harness.traffic import run_client, start_echo, stop_echo


class Node:
    """A topology with the dataplane loaded on the node and servers in the pods."""

    def __init__(self, topo, manager: Manager):
        self.topo = topo
        self.manager = manager
        self.servers = start_echo(topo.pods)

    def client(self, *args, timeout: float = 120) -> dict:
        return run_client(self.topo.client, *args, timeout=timeout)

    def conntrack(self) -> str:
        return self.topo.node.exec("conntrack", "-L", check=False).stdout

    def close(self) -> None:
        stop_echo(self.servers)


@pytest.fixture
def node(attach_mode, bpfman, bytecode_image, netns):
    topo = netns(pods=3)
    # VIPs are routed to the node, like a LoadBalancer address or a ClusterIP.
    topo.client.exec("ip", "route", "add", "198.18.100.0/24", "via", topo.node.address)
    settings = Settings(
        node="test-node",
        bytecode=bc.Image(bytecode_image),
        attachments=(Attachment("eth-client"),) + tuple(Attachment(f"eth-pod{i}") for i in range(3)),
        mode=attach_mode,
        netns=topo.node.netns,
    )
    manager = Manager(bpfman, settings)
    manager.ensure_loaded()
    n = Node(topo, manager)
    yield n
    n.close()
    manager.remove()
