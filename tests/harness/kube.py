"""A real control plane for tests: etcd and kube-apiserver with RBAC, service
account keys and a client-certificate admin kubeconfig, with the Gateway API
CRDs installed and Established."""

from __future__ import annotations

import json
import pathlib
import ssl
import subprocess
import urllib.request

from . import paths
from .pki import CA
from .proc import Process, free_port, run

SERVICE_CIDR = "10.96.0.0/16"
SERVICE_IP = "10.96.0.1"

KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: blixt-test
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: admin
  user:
    client-certificate: {cert}
    client-key: {key}
contexts:
- name: blixt-test
  context: {{cluster: blixt-test, user: admin}}
current-context: blixt-test
"""


def host_address() -> str:
    """A non-loopback IPv4 address of this host: kube-apiserver refuses to
    advertise loopback (it becomes the `kubernetes` Service's endpoint)."""
    out = run(["ip", "-4", "-o", "addr", "show", "scope", "global"]).stdout
    for line in out.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    raise RuntimeError("kube-apiserver needs a non-loopback IPv4 address on this host; none is configured")


class Cluster:
    def __init__(self, workdir: pathlib.Path, crd_channel: str = "standard"):
        etcd = paths.require_file(paths.ETCD, "etcd")
        apiserver = paths.require_file(paths.KUBE_APISERVER, "kube-apiserver")
        self.kubectl_bin = paths.require_file(paths.KUBECTL, "kubectl")
        crds = paths.require_file(paths.GATEWAY_API_CRDS / crd_channel, f"Gateway API CRDs ({crd_channel})")
        workdir.mkdir(parents=True, exist_ok=True)
        self.workdir = workdir
        self.procs: list[Process] = []
        try:
            self._start(etcd, apiserver, crds)
        except BaseException:
            self.stop()
            raise

    def _start(self, etcd: pathlib.Path, apiserver: pathlib.Path, crds: pathlib.Path) -> None:
        wd = self.workdir
        advertise = host_address()
        ca = CA(wd / "pki", "kube-ca")
        serving = ca.issue("apiserver", "kube-apiserver", sans=(
            "127.0.0.1", "localhost", advertise, SERVICE_IP, "kubernetes", "kubernetes.default",
            "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"))
        self.admin = ca.issue("admin", "blixt-admin", org="system:masters", client=True)
        sa_key = wd / "pki" / "sa.key"
        sa_pub = wd / "pki" / "sa.pub"
        run(["openssl", "genrsa", "-out", sa_key, "2048"])
        run(["openssl", "rsa", "-in", sa_key, "-pubout", "-out", sa_pub])
        self.ca_cert = ca.cert

        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer_url = f"http://127.0.0.1:{peer_port}"
        etcd_proc = Process("etcd", [
            etcd, "--name=blixt-test", f"--data-dir={wd / 'etcd'}",
            f"--listen-client-urls={self.etcd_url}", f"--advertise-client-urls={self.etcd_url}",
            f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
            f"--initial-cluster=blixt-test={peer_url}", "--log-level=warn",
            # Test data is thrown away: skip fsync, the slowest part of etcd here.
            "--unsafe-no-fsync",
        ], wd / "etcd.log")
        self.procs.append(etcd_proc)
        etcd_proc.wait_until(
            lambda: json.load(urllib.request.urlopen(self.etcd_url + "/health", timeout=2))["health"] == "true",
            timeout=60, what="etcd")

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        api_proc = Process("kube-apiserver", [
            apiserver,
            f"--etcd-servers={self.etcd_url}",
            "--bind-address=127.0.0.1", f"--secure-port={port}", f"--advertise-address={advertise}",
            f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
            f"--client-ca-file={ca.cert}",
            "--authorization-mode=RBAC",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            f"--cert-dir={wd / 'pki'}",
            "--allow-privileged=true", "--profiling=false",
        ], wd / "kube-apiserver.log")
        self.procs.append(api_proc)
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        ctx.load_cert_chain(str(self.admin.cert), str(self.admin.key))
        api_proc.wait_until(
            lambda: urllib.request.urlopen(self.server + "/readyz", context=ctx, timeout=5).status == 200,
            timeout=120, what="kube-apiserver /readyz")

        self.kubeconfig = wd / "kubeconfig"
        self.kubeconfig.write_text(KUBECONFIG.format(
            server=self.server, ca=ca.cert, cert=self.admin.cert, key=self.admin.key))
        self.install_crds(crds)

    def kubectl(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        argv = [str(self.kubectl_bin), f"--kubeconfig={self.kubeconfig}", *args]
        if check:
            return run(argv, input=input)
        return subprocess.run(argv, input=input, capture_output=True, text=True)

    def install_crds(self, directory: pathlib.Path) -> None:
        files = sorted(directory.glob("*.yaml"))
        for f in files:
            self.kubectl("apply", "--server-side", "-f", str(f))
        self.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")

    def api_client(self):
        """A `kubernetes` ApiClient authenticated as the admin."""
        from kubernetes import config
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
