"""Real kube-proxy (v1.35.4, from `make deps-cluster`) serving the Services
of the test apiserver inside a topology's node namespace: the reference that
blixt's Service proxy is compared with, flow by flow."""

from __future__ import annotations

import json
import pathlib
import urllib.parse

from . import paths
from .forward import CuttableProxy
from .kube import KUBECONFIG, Cluster
from .proc import Process


class KubeProxy:
    def __init__(self, workdir: pathlib.Path, cluster: Cluster, netns: str, node_name: str, node_ip: str,
                 cluster_cidr: str, nodeport_addresses: str, mode: str = "nftables", zone: str = "",
                 table_timeout: float = 60):
        """table_timeout: how long its first table may take (minutes for
        10,000 Services in nftables mode: tests/bench/README.md)."""
        binary = paths.require_file(paths.KUBE_PROXY, "kube-proxy (make deps-cluster)")
        workdir.mkdir(parents=True, exist_ok=True)
        self.cluster = cluster
        self.node_name = node_name
        self.netns = netns
        # kube-proxy takes its node IPs from its Node object's InternalIPs.
        # ... and its zone from the Node's topology label.
        labels = {"topology.kubernetes.io/zone": zone} if zone else {}
        cluster.kubectl("apply", "-f", "-", input=json.dumps({
            "apiVersion": "v1", "kind": "Node", "metadata": {"name": node_name, "labels": labels}}))
        cluster.kubectl("patch", "node", node_name, "--subresource=status", "--type=merge", "-p", json.dumps(
            {"status": {"addresses": [{"type": "InternalIP", "address": node_ip}]}}))
        api = urllib.parse.urlsplit(cluster.server)
        self.forward = CuttableProxy((api.hostname, api.port), listen_netns=netns)
        admin = cluster.admin
        kubeconfig = workdir / "kube-proxy.kubeconfig"
        kubeconfig.write_text(KUBECONFIG.format(server=f"https://127.0.0.1:{self.forward.port}",
                                                ca=cluster.ca_cert, cert=admin.cert, key=admin.key))
        self.proc = Process("kube-proxy", [
            "ip", "netns", "exec", netns, binary, f"--kubeconfig={kubeconfig}", f"--proxy-mode={mode}",
            f"--hostname-override={node_name}", f"--cluster-cidr={cluster_cidr}",
            "--detect-local-mode=ClusterCIDR", f"--nodeport-addresses={nodeport_addresses}",
            "--conntrack-max-per-core=0", "--metrics-bind-address=127.0.0.1:10249",
            "--healthz-bind-address=127.0.0.1:10256", "--v=2"], workdir / "kube-proxy.log")
        table = "kube-proxy" if mode == "nftables" else "nat"
        self.proc.wait_until(lambda: _run_ok(["ip", "netns", "exec", netns, "nft", "list", "table", "ip", table]),
                             timeout=table_timeout, what="kube-proxy's table")

    def close(self) -> None:
        self.proc.stop()
        self.forward.close()
        self.cluster.kubectl("delete", "node", self.node_name, "--wait=false", check=False)


def _run_ok(argv) -> bool:
    import subprocess
    return subprocess.run(argv, capture_output=True).returncode == 0
