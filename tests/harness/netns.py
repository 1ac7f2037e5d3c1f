"""Network namespace topologies: a client, a node and N pods joined by veth
pairs through the node, which forwards. Every namespace and link made here is
removed on close(), whatever happened in between.

    client 198.18.0.2 ──veth── 198.18.0.1 node 198.18.{i+1}.1 ──veth── 198.18.{i+1}.2 pod-i

Addresses are from 198.18.0.0/15 (RFC 2544, for benchmarking test networks)
and live only inside the namespaces made here.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess

from . import paths
from .proc import run

_serial = itertools.count()


@dataclasses.dataclass(frozen=True)
class Host:
    netns: str
    address: str
    iface: str  # this host's end of its link

    def exec(self, *argv: str, check: bool = True, timeout: float | None = 30, **kw) -> subprocess.CompletedProcess:
        full = ["ip", "netns", "exec", self.netns, *argv]
        if check:
            return run(full, timeout=timeout, **kw)
        return subprocess.run(full, capture_output=True, text=True, timeout=timeout, **kw)

    def popen(self, *argv: str, **kw) -> subprocess.Popen:
        return subprocess.Popen(["ip", "netns", "exec", self.netns, *argv], **kw)


class Topology:
    """pod_net: the first two octets of the pods' networks (pod i is
    {pod_net}.{i+1}.2/24, the node's side .1)."""

    def __init__(self, pods: int = 2, name: str = "t", pod_net: str = "198.18"):
        paths.require_root("network namespaces")
        paths.require_tool("ip", "iproute2")
        if pods > 250:
            raise ValueError("at most 250 pods per topology")
        self.prefix = f"bx{os.getpid() % 100000}{name}{next(_serial)}"
        self.namespaces: list[str] = []
        try:
            self._build(pods, pod_net)
        except BaseException:
            self.close()
            raise

    def _ns(self, role: str) -> str:
        ns = f"{self.prefix}-{role}"
        run(["ip", "netns", "add", ns])
        self.namespaces.append(ns)
        run(["ip", "-n", ns, "link", "set", "lo", "up"])
        return ns

    def _link(self, a_ns: str, a_if: str, a_addr: str, b_ns: str, b_if: str, b_addr: str) -> None:
        run(["ip", "-n", a_ns, "link", "add", a_if, "type", "veth", "peer", "name", b_if, "netns", b_ns])
        run(["ip", "-n", a_ns, "addr", "add", f"{a_addr}/24", "dev", a_if])
        run(["ip", "-n", b_ns, "addr", "add", f"{b_addr}/24", "dev", b_if])
        run(["ip", "-n", a_ns, "link", "set", a_if, "up"])
        run(["ip", "-n", b_ns, "link", "set", b_if, "up"])

    def _build(self, pods: int, pod_net: str) -> None:
        node_ns = self._ns("node")
        run(["ip", "netns", "exec", node_ns, "sysctl", "-qw", "net.ipv4.ip_forward=1"])
        client_ns = self._ns("client")
        self._link(node_ns, "eth-client", "198.18.0.1", client_ns, "eth0", "198.18.0.2")
        run(["ip", "-n", client_ns, "route", "add", "default", "via", "198.18.0.1"])
        self.node = Host(node_ns, "198.18.0.1", "eth-client")
        self.client = Host(client_ns, "198.18.0.2", "eth0")
        self.pods: list[Host] = []
        self.pod_net = pod_net
        for _ in range(pods):
            self.add_pod()

    def add_pod(self) -> Host:
        """One more pod: pod i is {pod_net}.{i+1}.2 behind the node's eth-pod{i}."""
        i = len(self.pods)
        pod_ns = self._ns(f"pod{i}")
        net = f"{self.pod_net}.{i + 1}"
        self._link(self.node.netns, f"eth-pod{i}", f"{net}.1", pod_ns, "eth0", f"{net}.2")
        run(["ip", "-n", pod_ns, "route", "add", "default", "via", f"{net}.1"])
        self.pods.append(Host(pod_ns, f"{net}.2", "eth0"))
        return self.pods[-1]

    def remove_pod(self, pod: Host) -> None:
        """Delete a pod's namespace (and with it both ends of its veth)."""
        run(["ip", "netns", "del", pod.netns])
        self.namespaces.remove(pod.netns)

    def close(self) -> None:
        errors = []
        for ns in reversed(self.namespaces):
            # Deleting a namespace destroys its veth ends, and with them the peers.
            res = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
            if res.returncode != 0:
                errors.append(f"{ns}: {res.stderr.strip()}")
        self.namespaces.clear()
        if errors:
            raise RuntimeError("netns cleanup failed: " + "; ".join(errors))

    def __enter__(self) -> "Topology":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
