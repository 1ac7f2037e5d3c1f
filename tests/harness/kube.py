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


APISERVER_SANS = (SERVICE_IP, "kubernetes", "kubernetes.default", "kubernetes.default.svc",
                  "kubernetes.default.svc.cluster.local")


def service_account_keys(pki: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """The key pair kube-apiserver signs and checks ServiceAccount tokens with."""
    key, pub = pki / "sa.key", pki / "sa.pub"
    run(["openssl", "genrsa", "-out", key, "2048"])
    run(["openssl", "rsa", "-in", key, "-pubout", "-out", pub])
    return key, pub


def etcd_argv(etcd: pathlib.Path, name: str, data_dir: pathlib.Path, client_url: str, peer_url: str) -> list:
    return [
        etcd, f"--name={name}", f"--data-dir={data_dir}",
        f"--listen-client-urls={client_url}", f"--advertise-client-urls={client_url}",
        f"--listen-peer-urls={peer_url}", f"--initial-advertise-peer-urls={peer_url}",
        f"--initial-cluster={name}={peer_url}", "--log-level=warn",
        # Test data is thrown away: skip fsync, the slowest part of etcd here.
        "--unsafe-no-fsync",
    ]


def apiserver_argv(apiserver: pathlib.Path, etcd_url: str, bind: str, port: int, advertise: str,
                   serving, ca: CA, sa_key: pathlib.Path, sa_pub: pathlib.Path, cert_dir: pathlib.Path,
                   *extra: str) -> list:
    """kube-apiserver with client certificates, RBAC (extra flags may add
    more), ServiceAccount tokens and the Service CIDR the tests use."""
    return [
        apiserver, f"--etcd-servers={etcd_url}",
        f"--bind-address={bind}", f"--secure-port={port}", f"--advertise-address={advertise}",
        f"--tls-cert-file={serving.cert}", f"--tls-private-key-file={serving.key}",
        f"--client-ca-file={ca.cert}",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={sa_pub}", f"--service-account-signing-key-file={sa_key}",
        f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cert-dir={cert_dir}",
        "--allow-privileged=true", "--profiling=false", *extra,
    ]


def install_crds(kubectl, directory: pathlib.Path) -> None:
    """Apply every CRD file in directory and wait until all are Established.
    kubectl: a callable taking kubectl's arguments."""
    for f in sorted(directory.glob("*.yaml")):
        kubectl("apply", "--server-side", "-f", str(f))
    kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")


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
        serving = ca.issue("apiserver", "kube-apiserver", sans=("127.0.0.1", "localhost", advertise, *APISERVER_SANS))
        self.admin = ca.issue("admin", "blixt-admin", org="system:masters", client=True)
        sa_key, sa_pub = service_account_keys(wd / "pki")
        self.ca_cert = ca.cert

        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        etcd_proc = Process("etcd", etcd_argv(etcd, "blixt-test", wd / "etcd", self.etcd_url,
                                              f"http://127.0.0.1:{peer_port}"), wd / "etcd.log")
        self.procs.append(etcd_proc)
        etcd_proc.wait_until(
            lambda: json.load(urllib.request.urlopen(self.etcd_url + "/health", timeout=2))["health"] == "true",
            timeout=60, what="etcd")

        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        api_proc = Process("kube-apiserver", apiserver_argv(
            apiserver, self.etcd_url, "127.0.0.1", port, advertise, serving, ca, sa_key, sa_pub, wd / "pki",
            "--authorization-mode=RBAC"), wd / "kube-apiserver.log")
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
        install_crds(self.kubectl, directory)

    def api_client(self):
        """A `kubernetes` ApiClient authenticated as the admin."""
        from kubernetes import config
        return config.new_client_from_config(config_file=str(self.kubeconfig))

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.stop()
        self.procs.clear()
