"""blixt's controller and agent as real subprocesses against a real
kube-apiserver and bpfman-rpc, with a netns node whose "pods" run echo
servers. Used by the e2e and conformance tests and by `make demo`.

Pods are namespaces with addresses; nothing runs a kubelet or an endpoint
controller, so `write_endpoints` writes the EndpointSlice one would.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import pathlib
import subprocess
import sys
import time
import urllib.parse
import urllib.request

from .kube import Cluster
from .netns import Topology
from .proc import Process, free_port, tail
from .traffic import run_client, start_echo, stop_echo

_serial = itertools.count(1)
GATEWAY_POOL = "198.18.200.0/24"  # routed to the node by the client
ECHO_PORT = 8080


class Node:
    """A node namespace with blixt's agent, and pods running echo servers."""

    def __init__(self, workdir: pathlib.Path, cluster: Cluster, bpfman_socket: pathlib.Path,
                 bytecode_image: str, pods: int = 3, mode: str = "tcx", name: str | None = None,
                 pod_net: str = "198.18", kubeconfig: pathlib.Path | None = None):
        """kubeconfig: what blixt's processes use (default: the cluster's);
        the test's own kubectl always uses the cluster's."""
        self.workdir = workdir
        self.cluster = cluster
        self.kubeconfig = kubeconfig or cluster.kubeconfig
        self.name = name or f"node-{next(_serial)}"  # bpfman metadata tells nodes apart
        self.topo = Topology(pods=pods, name="e2e", pod_net=pod_net)
        self.procs: list[Process] = []
        self.servers: list[subprocess.Popen] = []
        self.controller: Process | None = None
        self.agent: Process | None = None
        self.bpfman_socket = bpfman_socket
        self.bytecode_image = bytecode_image
        self.variant_images: dict[str, str] = {}  # other builds' images ("large": make bytecode-large)
        self.mode = mode
        try:
            self.topo.client.exec("ip", "route", "add", GATEWAY_POOL, "via", self.topo.node.address)
            self.servers = start_echo(self.topo.pods, ECHO_PORT)
        except BaseException:
            self.close()
            raise

    # -- blixt processes ----------------------------------------------------

    def _blixt(self, role: str, *args: str) -> tuple[Process, int]:
        port = free_port()
        log = self.workdir / f"{role}-{len(self.procs)}.log"
        proc = Process(f"blixt {role}", [sys.executable, "-m", "blixt", role,
                                         f"--kubeconfig={self.kubeconfig}",
                                         f"--metrics-bind=127.0.0.1:{port}", "--resync=30", *args], log)
        self.procs.append(proc)
        return proc, port

    def start_controller(self, identity: str = "e2e", *extra: str) -> Process:
        """A controller replica (the Lease default/blixt-controller elects
        one, unless extra names another); self.controller is the last one
        started."""
        self.controller, port = self._blixt("controller", "--lease-namespace=default", f"--identity={identity}",
                                            *extra)
        self.controller_port = port
        self.controller.wait_until(lambda: _http_ok(port, "/readyz"), timeout=60, what="blixt controller ready")
        return self.controller

    def start_agent(self, *extra: str) -> Process:
        """extra: more agent flags (more --interface, --proxy-services ...)."""
        return self.start_agent_with(f"--bpfman-socket={self.bpfman_socket}",
                                     f"--bytecode-image={self.bytecode_image}", "--interface=eth-client",
                                     f"--attach-mode={self.mode}", *extra)

    def start_agent_with(self, *flags: str, wait: bool = True) -> Process:
        """An agent for this node's namespace with exactly these other flags
        (e.g. --maps-dir instead of bpfman's); wait: until it is ready."""
        self.agent, port = self._blixt("agent", f"--node={self.name}", f"--netns={self.topo.node.netns}", *flags)
        self.agent_port = port
        if wait:
            self.agent.wait_until(lambda: _http_ok(port, "/readyz"), timeout=90, what="blixt agent ready")
        return self.agent

    def agent_ready(self) -> bool:
        try:
            return _http_ok(self.agent_port, "/readyz")
        except OSError:
            return False

    def stop_agent(self, kill: bool = False) -> None:
        if self.agent is None:
            return
        if kill:
            import os
            import signal
            os.killpg(self.agent.popen.pid, signal.SIGKILL)
            self.agent.popen.wait()
        self.agent.stop()
        self.agent = None

    def metrics(self, port: int, *names: str) -> str:
        """/metrics, or only the metrics `names` (cheap to poll)."""
        query = "?" + urllib.parse.urlencode([("name[]", n) for n in names]) if names else ""
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics{query}", timeout=5).read().decode()

    # -- cluster objects ----------------------------------------------------

    def apply(self, manifest: str | pathlib.Path) -> None:
        if isinstance(manifest, pathlib.Path):
            self.cluster.kubectl("apply", "-f", str(manifest))
        else:
            self.cluster.kubectl("apply", "-f", "-", input=manifest)

    def write_endpoints(self, *args, **kw) -> None:
        """endpoint_slice(...) written with kubectl apply."""
        self.cluster.kubectl("apply", "-f", "-", input=json.dumps(self.endpoint_slice(*args, **kw)))

    def endpoint_slice(self, namespace: str, service: str, pods: list[int],
                       ports: list[tuple[str, str, int]] | None = None, slice_name: str | None = None,
                       nodes: dict[int, str] | None = None, zones: dict[int, str] | None = None) -> dict:
        """The EndpointSlice an endpoint controller would write for `service`
        backed by these pods; ports are (name, protocol, port) as the Service's
        ports resolve to on the pods. nodes: pod -> nodeName where it is not
        this node. zones: pod -> the zone its topology hint names."""
        nodes, zones = nodes or {}, zones or {}
        ports = ports or [("tcp", "TCP", ECHO_PORT), ("udp", "UDP", ECHO_PORT)]
        body = {
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": slice_name or f"{service}-blixt", "namespace": namespace,
                         "labels": {"kubernetes.io/service-name": service,
                                    "endpointslice.kubernetes.io/managed-by": "blixt-tests"}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [self.topo.pods[i].address], "conditions": {"ready": True},
                           **({"hints": {"forZones": [{"name": zones[i]}]}} if i in zones else {}),
                           "nodeName": nodes.get(i, self.name), "targetRef": {"kind": "Pod", "name": f"pod{i}",
                                                                "namespace": namespace}}
                          for i in pods],
            "ports": [{"name": n, "protocol": p, "port": port} for n, p, port in ports],
        }
        return body

    def get(self, kind: str, namespace: str | None, name: str) -> dict:
        args = ["get", kind, name, "-o", "json"] + (["-n", namespace] if namespace else [])
        return json.loads(self.cluster.kubectl(*args).stdout)

    def wait_for(self, what: str, predicate, timeout: float = 30.0, interval: float = 0.2):
        """Poll predicate() until it returns a truthy value; fail with the last value."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                last = predicate()
                if last:
                    return last
            except Exception as e:  # not there yet
                last = e
            time.sleep(interval)
        logs = "\n".join(f"--- {p.name} ({p.log})\n{tail(p.log, 40)}" for p in self.procs)
        raise TimeoutError(f"{what}: not true after {timeout:.0f}s (last: {last})\n{logs}")

    def gateway_address(self, namespace: str, name: str, timeout: float = 30.0) -> str:
        def programmed():
            gw = self.get("gateway", namespace, name)
            conds = {c["type"]: c for c in gw.get("status", {}).get("conditions", [])}
            ok = conds.get("Programmed", {}).get("status") == "True"
            addrs = gw.get("status", {}).get("addresses") or []
            return addrs[0]["value"] if ok and addrs else None
        return self.wait_for(f"Gateway {namespace}/{name} Programmed with an address", programmed, timeout)

    # -- traffic ------------------------------------------------------------

    def client(self, *args, timeout: float = 120) -> dict:
        return run_client(self.topo.client, *args, timeout=timeout)

    def close(self) -> None:
        stop_echo(self.servers)
        for p in reversed(self.procs):
            p.stop()
        self.topo.close()


@contextlib.contextmanager
def running(cluster: Cluster, bpfman_socket: pathlib.Path, bytecode_image: str, workdir: pathlib.Path,
            **node_kw):
    """A Node with blixt's controller and agent started; afterwards everything
    stops and the objects tests make are deleted, so tests stay independent."""
    node = Node(workdir, cluster, bpfman_socket, bytecode_image, **node_kw)
    node.workdir.mkdir(parents=True, exist_ok=True)
    try:
        node.start_controller()
        node.start_agent()
        yield node
    finally:
        node.close()
        for kind in ("tcproutes", "udproutes", "gateways", "referencegrants", "endpointslices", "services"):
            cluster.kubectl("delete", kind, "--all", "--all-namespaces", "--wait=false", check=False)
        cluster.kubectl("delete", "gatewayclasses", "--all", "--wait=false", check=False)


def _http_ok(port: int, path: str) -> bool:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2).status == 200

