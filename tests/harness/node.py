"""A real one-node Kubernetes cluster inside a "node" network namespace.

    client 198.18.0.2 eth0 ──veth── eth0 198.18.0.1 node ── cni0 198.18.128.1/24 ── pods

etcd, kube-apiserver, kube-controller-manager, kube-scheduler, containerd and
kubelet run in the node namespace (entered with `nsenter --net`, not
`ip netns exec`, which remounts /sys and hides /sys/fs/cgroup); pods sit on a
CNI bridge there. Everything made is recorded in <workdir>/state.json as it
is made, so `teardown(workdir)` can remove it from another process
(`make cluster-down`) as well as from the pytest fixture. See
/work/shared/CLUSTER.md for the facts behind each step.

The cluster is ready for `kubectl apply -k deploy/kustomize/overlays/bpfman`
with the overlay's defaults: the Gateway API CRDs (standard channel) are
installed, the node's uplink is named eth0 (the agent's default interface),
and a TLS registry in the node namespace serves blixt's bytecode image at
localhost:5443/blixt/bytecode:latest (the default bytecode image), its CA in
the Secret bpfman/registry-ca that the overlay's bpfman trusts.

CLI: python3 tests/harness/node.py up|down [--workdir DIR]
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import time

if __package__ in (None, ""):  # run as a script
    # tests/ instead of this directory, whose blixt.py would shadow the blixt package.
    sys.path[0] = str(pathlib.Path(__file__).resolve().parents[1])
    from harness import paths  # type: ignore
    from harness.kube import (APISERVER_SANS, KUBECONFIG, SERVICE_CIDR, apiserver_argv, etcd_argv,  # type: ignore
                              install_crds, service_account_keys)
    from harness.pki import CA  # type: ignore
    from harness.proc import run, tail  # type: ignore
    from harness.registry import CONFIG as REGISTRY_CONFIG  # type: ignore
else:
    from . import paths
    from .kube import (APISERVER_SANS, KUBECONFIG, SERVICE_CIDR, apiserver_argv, etcd_argv, install_crds,
                       service_account_keys)
    from .pki import CA
    from .proc import run, tail
    from .registry import CONFIG as REGISTRY_CONFIG

NODE_IP = "198.18.0.1"
CLIENT_IP = "198.18.0.2"
POD_CIDR = "198.18.128.0/24"
DNS_IP = "10.96.0.10"
API_PORT = 6443
NODE_NAME = "blixt-node"
UPLINK = "eth0"
REGISTRY = "localhost:5443"
BYTECODE_IMAGE = f"{REGISTRY}/blixt/bytecode:latest"
# Host directories the overlay's bpfman and agent use (hostPath, DirectoryOrCreate).
BPFMAN_HOST_DIRS = ("/run/bpfman-sock", "/var/lib/bpfman")
BPFMAN_FS = pathlib.Path("/run/bpfman/fs")
# kubelet's default root-dir: bpfman-operator's DaemonSet mounts its plugin
# registration, CSI socket and pods directories by these host paths, and CSI
# target paths are under the root-dir, so the node's kubelet keeps its state
# here (removed at teardown when the cluster made it; kubelet makes
# /var/lib/kubelet/device-plugins whatever its root-dir anyway).
KUBELET_ROOT = pathlib.Path("/var/lib/kubelet")
# What `kubectl apply -k deploy/kustomize/overlays/bpfman` runs: (namespace, workload).
PROXIES = ("kube-proxy", "blixt")
BLIXT_WORKLOADS = (("bpfman", "daemonset/bpfman"), ("blixt-system", "daemonset/blixt-agent"),
                   ("blixt-system", "deployment/blixt-controller"))


def not_rolled_out(kubectl, timeout: str = "180s", workloads=BLIXT_WORKLOADS) -> str | None:
    """Wait for each of workloads ((namespace, kind/name)...) to roll out; the
    first that does not, and why, or None. kubectl: a callable taking
    kubectl's arguments and check=."""
    for ns, what in workloads:
        res = kubectl("-n", ns, "rollout", "status", what, f"--timeout={timeout}", check=False)
        if res.returncode != 0:
            return f"{ns}/{what} is not rolled out: {res.stderr.strip() or res.stdout.strip()}"
    return None
DEFAULT_WORKDIR = pathlib.Path("/run/blixt-cluster")
SYSCTLS = ("vm.overcommit_memory", "kernel.panic", "kernel.panic_on_oops")
CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")

CONTAINERD_CONFIG = """\
version = 3
root = "{wd}/containerd/root"
state = "{wd}/containerd/state"
[grpc]
  address = "{sock}"
[plugins.'io.containerd.cri.v1.images'.pinned_images]
  sandbox = "registry.k8s.io/pause:3.10.1"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[plugins.'io.containerd.cri.v1.runtime'.cni]
  bin_dirs = ["{cni_bin}"]
  conf_dir = "{wd}/cni/net.d"
[plugins.'io.containerd.internal.v1.opt']
  path = "{wd}/containerd/opt"
[plugins.'io.containerd.nri.v1.nri']
  disable = true
"""

CNI_CONFIG = {
    "cniVersion": "1.0.0",
    "name": "blixt-pods",
    "plugins": [
        {"type": "bridge", "bridge": "cni0", "isGateway": True, "ipMasq": False, "hairpinMode": True,
         "ipam": {"type": "host-local", "ranges": [[{"subnet": POD_CIDR}]],
                  "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "{wd}/cni/ipam"}},
        {"type": "portmap", "capabilities": {"portMappings": True}},
    ],
}

COREDNS = """\
apiVersion: v1
kind: ServiceAccount
metadata: {name: coredns, namespace: kube-system}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: "system:coredns"}
rules:
- apiGroups: [""]
  resources: [endpoints, services, pods, namespaces]
  verbs: [list, watch]
- apiGroups: [discovery.k8s.io]
  resources: [endpointslices]
  verbs: [list, watch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: "system:coredns"}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: "system:coredns"}
subjects: [{kind: ServiceAccount, name: coredns, namespace: kube-system}]
---
apiVersion: v1
kind: ConfigMap
metadata: {name: coredns, namespace: kube-system}
data:
  # No forward: the node namespace has no route out.
  Corefile: |
    .:53 {
        errors
        health :8080
        ready :8181
        kubernetes cluster.local in-addr.arpa ip6.arpa {
            pods insecure
            fallthrough in-addr.arpa ip6.arpa
        }
        cache 30
    }
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: coredns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  replicas: 1
  selector: {matchLabels: {k8s-app: kube-dns}}
  template:
    metadata: {labels: {k8s-app: kube-dns}}
    spec:
      serviceAccountName: coredns
      dnsPolicy: Default
      containers:
      - name: coredns
        image: registry.k8s.io/coredns/coredns:v1.12.2
        args: ["-conf", "/etc/coredns/Corefile"]
        ports:
        - {name: dns, containerPort: 53, protocol: UDP}
        - {name: dns-tcp, containerPort: 53, protocol: TCP}
        readinessProbe: {httpGet: {path: /ready, port: 8181}, periodSeconds: 2}
        volumeMounts: [{name: config, mountPath: /etc/coredns, readOnly: true}]
      volumes: [{name: config, configMap: {name: coredns}}]
---
apiVersion: v1
kind: Service
metadata: {name: kube-dns, namespace: kube-system, labels: {k8s-app: kube-dns}}
spec:
  clusterIP: {dns_ip}
  selector: {k8s-app: kube-dns}
  ports:
  - {name: dns, port: 53, protocol: UDP}
  - {name: dns-tcp, port: 53, protocol: TCP}
"""

KUBELET_CONFIG = """\
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://{sock}
clusterDNS: [{dns}]
clusterDomain: cluster.local
resolvConf: {wd}/resolv.conf
podLogsDir: {wd}/pod-logs
authentication:
  anonymous: {{enabled: false}}
  webhook: {{enabled: true}}
  x509: {{clientCAFile: {ca}}}
authorization: {{mode: Webhook}}
tlsCertFile: {serving_cert}
tlsPrivateKeyFile: {serving_key}
evictionHard: {{memory.available: "20Mi", nodefs.available: "1%", imagefs.available: "1%", nodefs.inodesFree: "1%"}}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
"""


def nsenter(netns: str) -> list[str]:
    return ["nsenter", f"--net=/run/netns/{netns}"]


class State:
    """What has been made so far, written to disk after every change."""

    def __init__(self, workdir: pathlib.Path):
        self.path = workdir / "state.json"
        self.data: dict = {"procs": [], "netns": [], "sysctls": {}, "cgroups_before": {}, "propagation": None}
        if self.path.exists():
            self.data = json.loads(self.path.read_text())

    def save(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, indent=1))
        tmp.rename(self.path)


def _starttime(pid: int) -> str | None:
    try:
        stat = pathlib.Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class Deployed:
    """A cluster with blixt applied from an overlay (kubectl apply -k), all rolled out."""

    def __init__(self, cluster: "NodeCluster", overlay: pathlib.Path, workloads=BLIXT_WORKLOADS):
        self.cluster = cluster
        self.workloads = workloads
        cluster.kubectl("apply", "-k", overlay)
        self.rollout()

    def rollout(self, timeout: str = "180s") -> None:
        problem = not_rolled_out(self.cluster.kubectl, timeout, self.workloads)
        if problem:
            raise AssertionError(f"{problem}\n{self.describe()}")

    def describe(self) -> str:
        pods = self.cluster.kubectl("get", "pods", "-A", "-o", "wide", check=False).stdout
        logs = ""
        for ns, ds in self.workloads:
            if ds.startswith("daemonset/"):
                logs += f"--- {ns}/{ds}\n" + self.cluster.kubectl("-n", ns, "logs", ds, "--all-containers",
                                                                "--tail=30", check=False).stdout
        return pods + logs


@contextlib.contextmanager
def deployed(workdir: pathlib.Path, overlay: pathlib.Path, netns_prefix: str, proxy: str = "kube-proxy"):
    """A NodeCluster with blixt applied from the overlay, torn down afterwards
    (a missing component fails or skips, as harness.paths.component says)."""
    with paths.component():
        cluster = NodeCluster(workdir, netns_prefix=netns_prefix, proxy=proxy)
    try:
        yield Deployed(cluster, overlay)
    finally:
        cluster.stop()


class NodeCluster:
    def __init__(self, workdir: pathlib.Path = DEFAULT_WORKDIR, netns_prefix: str = "blixt",
                 proxy: str = "kube-proxy"):
        """proxy: "kube-proxy", or "blixt": no kube-proxy; Services wait for
        blixt's agent (overlays/service-proxy), CoreDNS included."""
        paths.require_root("a one-node cluster")
        if proxy not in PROXIES:
            raise ValueError(f"proxy must be one of {PROXIES}, got {proxy!r}")
        self.proxy = proxy
        self.bin = paths.CLUSTER_BIN
        self.cni_bin = paths.CACHE / "cluster" / "cni" / "bin"
        for b in ("kubelet", "kube-controller-manager", "kube-scheduler", "containerd",
                  "containerd-shim-runc-v2", "ctr", "runc", "crictl"):
            paths.require_file(self.bin / b, f"{b} (make deps-cluster)")
        for b in ("bridge", "host-local", "loopback", "portmap"):
            paths.require_file(self.cni_bin / b, f"CNI {b} (make deps-cluster)")
        paths.require_file(paths.KUBE_APISERVER, "kube-apiserver")
        paths.require_file(paths.ETCD, "etcd")
        self.images = paths.require_file(paths.CACHE / "images" / "images.txt", "images (make images)")
        self.workdir = workdir.resolve()
        taken = sorted(str(c) for c in CGROUP_ROOT.glob("*/kubepods"))
        if taken:  # another kubelet's pods (or a cluster not torn down): sharing them breaks both
            raise RuntimeError(f"kubepods cgroups exist already ({', '.join(taken)}): "
                               "is another cluster running? `make cluster-down` removes ours")
        if (self.workdir / "state.json").exists():
            raise RuntimeError(f"{self.workdir} holds a cluster already: run `make cluster-down` first")
        if (self.workdir / "state.down.json").exists():  # a previous cluster's logs and data
            shutil.rmtree(self.workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.node_ns = f"{netns_prefix}-node"
        self.client_ns = f"{netns_prefix}-client"
        self.sock = self.workdir / "containerd" / "containerd.sock"
        self.state = State(self.workdir)
        self.state.data["node_ns"] = self.node_ns
        self.state.data["client_ns"] = self.client_ns
        self.state.data["proxy"] = proxy
        self.state.save()
        self.env = {**os.environ, "PATH": f"{self.bin}:{os.environ.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"}
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    # -- processes ------------------------------------------------------
    def _spawn(self, name: str, argv: list, netns: bool = True) -> None:
        log = open(self.workdir / f"{name}.log", "ab")
        full = [*(nsenter(self.node_ns) if netns else []), *map(str, argv)]
        p = subprocess.Popen(full, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                             env=self.env, start_new_session=True)
        log.close()
        self.state.data["procs"].append({"name": name, "pid": p.pid, "start": _starttime(p.pid)})
        self.state.save()
        self._popens = getattr(self, "_popens", {})
        self._popens[name] = p

    def _wait(self, name: str, ready, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            p = self._popens[name]
            if p.poll() is not None:
                raise RuntimeError(f"{what}: {name} exited with {p.returncode}:\n"
                                   f"{tail(self.workdir / f'{name}.log')}")
            try:
                if ready():
                    return
            except Exception as e:  # not ready yet
                last = e
            time.sleep(0.5)
        raise TimeoutError(f"{what}: not ready after {timeout:.0f}s ({last}); "
                           f"{name} log:\n{tail(self.workdir / f'{name}.log')}")

    def node_exec(self, *argv, check: bool = True, **kw) -> subprocess.CompletedProcess:
        full = [*nsenter(self.node_ns), *map(str, argv)]
        if check:
            return run(full, env=self.env, **kw)
        return subprocess.run(full, capture_output=True, text=True, env=self.env, **kw)

    def client_exec(self, *argv, check: bool = True, **kw) -> subprocess.CompletedProcess:
        full = ["ip", "netns", "exec", self.client_ns, *map(str, argv)]
        if check:
            return run(full, **kw)
        return subprocess.run(full, capture_output=True, text=True, **kw)

    def kubectl(self, *args, check: bool = True, input: str | None = None) -> subprocess.CompletedProcess:
        return self.node_exec(paths.KUBECTL, f"--kubeconfig={self.kubeconfig}", *args, check=check, input=input)

    # -- start ----------------------------------------------------------
    def _start(self) -> None:
        wd, st = self.workdir, self.state
        # Network: node + client joined by a veth; forwarding in the node only.
        for ns in (self.node_ns, self.client_ns):
            run(["ip", "netns", "add", ns])
            st.data["netns"].append(ns)
            st.save()
            run(["ip", "-n", ns, "link", "set", "lo", "up"])
        # Both ends are eth0, each in its namespace: the node's is the agent's default --interface.
        run(["ip", "-n", self.node_ns, "link", "add", UPLINK, "type", "veth",
             "peer", "name", "eth0", "netns", self.client_ns])
        run(["ip", "-n", self.node_ns, "addr", "add", f"{NODE_IP}/30", "dev", UPLINK])
        run(["ip", "-n", self.client_ns, "addr", "add", f"{CLIENT_IP}/30", "dev", "eth0"])
        run(["ip", "-n", self.node_ns, "link", "set", UPLINK, "up"])
        run(["ip", "-n", self.client_ns, "link", "set", "eth0", "up"])
        run(["ip", "-n", self.client_ns, "route", "add", "default", "via", NODE_IP])
        # The node's default route is its uplink, as on a real node: host
        # processes (blixt's agent) dial ClusterIPs, which kube-proxy DNATs only
        # after a route was found. The client does not forward, so nothing
        # goes further.
        run(["ip", "-n", self.node_ns, "route", "add", "default", "via", CLIENT_IP])
        self.node_exec("sysctl", "-qw", "net.ipv4.ip_forward=1")

        # PKI.
        ca = CA(wd / "pki", "kube-ca")
        self.ca_cert = ca.cert
        serving = ca.issue("apiserver", "kube-apiserver", sans=(NODE_IP, "127.0.0.1", "localhost", *APISERVER_SANS))
        admin = ca.issue("admin", "blixt-admin", org="system:masters", client=True)
        kcm = ca.issue("kcm", "system:kube-controller-manager", client=True)
        sched = ca.issue("scheduler", "system:kube-scheduler", client=True)
        kubelet = ca.issue("kubelet", f"system:node:{NODE_NAME}", org="system:nodes", client=True)
        kubelet_serving = ca.issue("kubelet-serving", NODE_NAME, sans=(NODE_IP, NODE_NAME))
        proxy = ca.issue("kube-proxy", "system:kube-proxy", client=True)
        apiserver_kubelet = ca.issue("apiserver-kubelet-client", "kube-apiserver-kubelet-client",
                                     org="system:masters", client=True)
        sa_key, sa_pub = service_account_keys(wd / "pki")
        server = f"https://{NODE_IP}:{API_PORT}"
        self.server = server

        def kubeconfig(name, pair):
            f = wd / f"{name}.kubeconfig"
            f.write_text(KUBECONFIG.format(server=server, ca=ca.cert, cert=pair.cert, key=pair.key))
            return f
        self.kubeconfig = kubeconfig("admin", admin)

        # etcd + kube-apiserver.
        etcd_url = "http://127.0.0.1:2379"
        self._spawn("etcd", etcd_argv(paths.ETCD, "blixt-node", wd / "etcd", etcd_url, "http://127.0.0.1:2380"))
        self._spawn("kube-apiserver", apiserver_argv(
            paths.KUBE_APISERVER, etcd_url, NODE_IP, API_PORT, NODE_IP, serving, ca, sa_key, sa_pub, wd / "pki",
            "--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={apiserver_kubelet.cert}",
            f"--kubelet-client-key={apiserver_kubelet.key}",
            f"--kubelet-certificate-authority={ca.cert}",
            # kubectl logs/exec: the node's name does not resolve here.
            "--kubelet-preferred-address-types=InternalIP"))
        self._wait("kube-apiserver", lambda: self.kubectl("get", "--raw=/readyz", check=False).returncode == 0,
                   120, "kube-apiserver /readyz")

        self._spawn("kube-controller-manager", [
            self.bin / "kube-controller-manager", f"--kubeconfig={kubeconfig('kcm', kcm)}",
            f"--authentication-kubeconfig={wd / 'kcm.kubeconfig'}",
            f"--authorization-kubeconfig={wd / 'kcm.kubeconfig'}",
            f"--root-ca-file={ca.cert}", f"--service-account-private-key-file={sa_key}",
            "--use-service-account-credentials=true",
            f"--cluster-signing-cert-file={ca.cert}", f"--cluster-signing-key-file={ca.pair.key}",
            f"--service-cluster-ip-range={SERVICE_CIDR}", f"--cluster-cidr={POD_CIDR}",
            "--leader-elect=false", "--bind-address=127.0.0.1"])
        self._spawn("kube-scheduler", [
            self.bin / "kube-scheduler", f"--kubeconfig={kubeconfig('scheduler', sched)}",
            f"--authentication-kubeconfig={wd / 'scheduler.kubeconfig'}",
            f"--authorization-kubeconfig={wd / 'scheduler.kubeconfig'}",
            "--leader-elect=false", "--bind-address=127.0.0.1"])

        # Host state kubelet and containerd change: save it first.
        st.data["propagation"] = run(["findmnt", "-no", "PROPAGATION", "/"]).stdout.strip()
        for k in SYSCTLS:
            st.data["sysctls"][k] = run(["sysctl", "-n", k]).stdout.strip()
        for ctrl in (CGROUP_ROOT.iterdir() if CGROUP_ROOT.is_dir() else []):
            st.data["cgroups_before"][ctrl.name] = (ctrl / "kubepods").exists()
        st.save()
        run(["mount", "--make-rshared", "/"])

        # containerd + CNI.
        (wd / "containerd").mkdir(exist_ok=True)
        (wd / "cni" / "net.d").mkdir(parents=True, exist_ok=True)
        cni = json.loads(json.dumps(CNI_CONFIG).replace("{wd}", str(wd)))
        (wd / "cni" / "net.d" / "10-blixt.conflist").write_text(json.dumps(cni, indent=1))
        (wd / "containerd.toml").write_text(CONTAINERD_CONFIG.format(wd=wd, sock=self.sock, cni_bin=self.cni_bin))
        self._spawn("containerd", [self.bin / "containerd", f"--config={wd / 'containerd.toml'}"])
        self._wait("containerd", lambda: self.node_exec(self.bin / "ctr", "-a", self.sock, "version",
                                                        check=False).returncode == 0, 60, "containerd")
        tars = sorted({line.split()[1] for line in self.images.read_text().splitlines() if line.strip()})
        for tar in tars:
            self.node_exec(self.bin / "ctr", "-a", self.sock, "-n", "k8s.io", "images", "import", tar, timeout=300)

        # kubelet, its state in KUBELET_ROOT.
        if _mounts_under(KUBELET_ROOT):
            raise RuntimeError(f"{KUBELET_ROOT} has mounts: another kubelet, or a cluster not torn down "
                               "(`make cluster-down`)")
        self.state.data["kubelet_root"] = {"path": str(KUBELET_ROOT), "existed": KUBELET_ROOT.exists()}
        self.state.save()
        KUBELET_ROOT.mkdir(parents=True, exist_ok=True)
        (wd / "resolv.conf").write_text(f"nameserver {NODE_IP}\n")
        (wd / "kubelet.yaml").write_text(KUBELET_CONFIG.format(
            sock=self.sock, dns=DNS_IP, wd=wd, ca=ca.cert,
            serving_cert=kubelet_serving.cert, serving_key=kubelet_serving.key))
        self._spawn("kubelet", [
            self.bin / "kubelet", f"--config={wd / 'kubelet.yaml'}",
            f"--kubeconfig={kubeconfig('kubelet', kubelet)}", f"--root-dir={KUBELET_ROOT}",
            f"--hostname-override={NODE_NAME}", f"--node-ip={NODE_IP}", "--v=1"])
        self._wait("kubelet", self.node_ready, 180, f"Node {NODE_NAME} Ready")

        if self.proxy == "blixt":
            # CoreDNS reaches the apiserver through the `kubernetes` ClusterIP:
            # it gets Ready once blixt's agent serves Services.
            self.kubectl("apply", "-f", "-", input=COREDNS.replace("{dns_ip}", DNS_IP))
            self._prepare_for_blixt(ca)
            return
        # kube-proxy (nftables) for Services, then CoreDNS behind a fixed ClusterIP.
        self._spawn("kube-proxy", [
            self.bin / "kube-proxy", f"--kubeconfig={kubeconfig('kube-proxy', proxy)}",
            "--proxy-mode=nftables", f"--hostname-override={NODE_NAME}",
            f"--cluster-cidr={POD_CIDR}", "--detect-local-mode=ClusterCIDR",
            f"--nodeport-addresses={NODE_IP}/32", "--conntrack-max-per-core=0",
            "--metrics-bind-address=127.0.0.1:10249"])
        self.kubectl("apply", "-f", "-", input=COREDNS.replace("{dns_ip}", DNS_IP))
        self._wait("kube-proxy", lambda: self.kubectl(
            "-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=5s",
            check=False).returncode == 0, 180, "CoreDNS Deployment available")
        self._prepare_for_blixt(ca)

    def _prepare_for_blixt(self, ca: CA) -> None:
        """What the bpfman overlay expects of a cluster: the CRDs, and the
        bytecode image in a TLS registry the node's bpfman can reach."""
        wd, st = self.workdir, self.state
        install_crds(self.kubectl, paths.require_file(paths.GATEWAY_API_CRDS / "standard",
                                                      "Gateway API CRDs (make deps)"))

        # bpfman's host state: note what exists, so teardown removes only what the cluster made.
        st.data["host_dirs_before"] = {d: os.path.exists(d) for d in (*BPFMAN_HOST_DIRS, "/run/bpfman")}
        st.data["bpffs_before"] = bool(_mounts_under(BPFMAN_FS))
        st.save()

        registry = paths.require_tool("docker-registry", "the OCI registry (Debian package docker-registry)")
        pair = ca.issue("registry", "localhost", sans=("localhost", "127.0.0.1"))
        (wd / "registry.yml").write_text(REGISTRY_CONFIG.format(
            root=wd / "registry", port=REGISTRY.split(":")[1], cert=pair.cert, key=pair.key))
        self._spawn("registry", [registry, "serve", wd / "registry.yml"])
        self._wait("registry", lambda: self.node_exec(
            "curl", "-sf", "--cacert", ca.cert, f"https://{REGISTRY}/v2/", check=False).returncode == 0,
            30, f"registry on {REGISTRY}")
        obj = paths.require_file(paths.BYTECODE_OBJECT, "blixt's bytecode (make bytecode)")
        venv = paths.require_file(paths.REPO / ".venv" / "bin" / "python", "the venv (make venv)")
        self.node_exec(venv, "-m", "blixt.bytecode_image", "--object", obj, "--push", BYTECODE_IMAGE,
                       "--ca-file", ca.cert, timeout=120)
        self.kubectl("create", "namespace", "bpfman", "--save-config")
        self.kubectl("-n", "bpfman", "create", "secret", "generic", "registry-ca", f"--from-file=ca.crt={ca.cert}")

    def node_ready(self) -> bool:
        res = self.kubectl("get", "node", NODE_NAME, "-o",
                           "jsonpath={.status.conditions[?(@.type=='Ready')].status}", check=False)
        return res.stdout.strip() == "True"

    def stop(self) -> None:
        teardown(self.workdir)


# -- teardown, from the state file alone ---------------------------------
def _kill(proc: dict, timeout: float = 15) -> None:
    pid = proc["pid"]
    if proc.get("start") is None or _starttime(pid) != proc["start"]:
        return  # gone (or the pid was reused)
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5)):
        try:
            os.killpg(pid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:  # reap if it is our child
                os.waitpid(pid, os.WNOHANG)
            except ChildProcessError:
                pass
            if _starttime(pid) != proc["start"]:
                return
            time.sleep(0.1)


def _mounts_under(root: pathlib.Path) -> list[str]:
    out = []
    for line in pathlib.Path("/proc/self/mountinfo").read_text().splitlines():
        mp = line.split()[4].encode().decode("unicode_escape")
        if mp == str(root) or mp.startswith(str(root) + "/"):
            out.append(mp)
    return out


def _shims(wd: pathlib.Path) -> list[int]:
    """containerd shims (and their sandboxes) started for our containerd: they
    outlive it. Matched by our socket path in their command line."""
    sock = str(wd / "containerd" / "containerd.sock").encode()
    pids = []
    for p in pathlib.Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            if sock in (p / "cmdline").read_bytes():
                pids.append(int(p.name))
        except OSError:
            pass
    return pids


def teardown(workdir: pathlib.Path = DEFAULT_WORKDIR) -> list[str]:
    """Remove everything the cluster in workdir made; return what could not be removed."""
    workdir = workdir.resolve()
    st = State(workdir)
    if not st.path.exists():
        return []
    d = st.data
    problems: list[str] = []
    procs = {p["name"]: p for p in d["procs"]}
    env = {**os.environ, "PATH": f"{paths.CACHE / 'cluster' / 'bin'}:{os.environ.get('PATH', '')}"}
    sock = workdir / "containerd" / "containerd.sock"
    # kubelet first, then the pods through containerd, then the rest.
    if "kubelet" in procs:
        _kill(procs.pop("kubelet"))
    if "containerd" in procs and sock.exists():
        crictl = [*nsenter(d["node_ns"]), str(paths.CACHE / "cluster" / "bin" / "crictl"),
                  f"--runtime-endpoint=unix://{sock}", "--timeout=30s"]
        subprocess.run([*crictl, "rmp", "-fa"], capture_output=True, env=env, timeout=120)
    for name in ("kube-proxy", "containerd", "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"):
        if name in procs:
            _kill(procs.pop(name))
    for p in procs.values():
        _kill(p)
    for pid in _shims(workdir):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    time.sleep(0.5)
    for pid in _shims(workdir):
        problems.append(f"process {pid} still running")
    # Mounts (kubelet's root-dir bind mount, pod volumes, container rootfs, sandbox netns).
    for mp in sorted(_mounts_under(workdir), key=len, reverse=True):
        if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mp], capture_output=True)
    for mp in _mounts_under(workdir):
        problems.append(f"mount {mp} left")
    # kubelet's root-dir: its pod volumes, then the directory if the cluster made it.
    root = d.get("kubelet_root")
    if root:
        for mp in sorted(_mounts_under(pathlib.Path(root["path"])), key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                subprocess.run(["umount", "-l", mp], capture_output=True)
        left = _mounts_under(pathlib.Path(root["path"]))
        problems += [f"mount {mp} left" for mp in left]
        if not left and not root["existed"]:
            shutil.rmtree(root["path"], ignore_errors=True)
    # Programs the cluster's bpfman loaded stay loaded (pinned) after it is
    # killed, their links defunct with the node namespace gone: unload them
    # with a bpfman-rpc of our own, which does that for blixt's at start.
    if "host_dirs_before" in d:
        try:
            from harness.bpfman import BpfmanServer
            server = BpfmanServer(workdir / "bpfman-cleanup")
            server.stop()
        except Exception as e:  # noqa: BLE001 - report, do not stop the teardown
            problems.append(f"blixt programs may be left loaded in bpfman (/run/bpfman): {e}")
    # What bpfman-operator's DaemonSet needed of the host (harness.bpfman_operator):
    # the CRI socket's symlink, and the host paths kubelet made for its mounts.
    for path in d.get("host_paths_made", []):
        if os.path.islink(path):
            os.unlink(path)
    for path in d.get("trees_made", []):
        shutil.rmtree(path, ignore_errors=True)
    for path, existed in sorted(d.get("operator_host_paths_before", {}).items(), key=lambda i: -len(i[0])):
        if existed or _mounts_under(pathlib.Path(path)):
            continue
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path, ignore_errors=True)  # made by kubelet for the mount, filled by the pod
        if os.path.lexists(path):
            problems.append(f"{path} (made for bpfman-operator's DaemonSet) left")
    # bpfman's bpffs and host directories, where the cluster's bpfman made them.
    if d.get("bpffs_before") is False:
        for mp in sorted(_mounts_under(BPFMAN_FS), key=len, reverse=True):
            if subprocess.run(["umount", mp], capture_output=True).returncode != 0:
                problems.append(f"mount {mp} left")
    for path, existed in d.get("host_dirs_before", {}).items():
        if not existed and os.path.isdir(path) and not _mounts_under(pathlib.Path(path)):
            shutil.rmtree(path, ignore_errors=True)
    for ns in reversed(d["netns"]):
        res = subprocess.run(["ip", "netns", "del", ns], capture_output=True, text=True)
        if res.returncode != 0 and pathlib.Path(f"/run/netns/{ns}").exists():
            problems.append(f"netns {ns}: {res.stderr.strip()}")
    for k, v in d["sysctls"].items():
        subprocess.run(["sysctl", "-qw", f"{k}={v}"], capture_output=True)
    # cgroups kubelet made (kubepods, depth first), where it had none before.
    for ctrl, existed in d["cgroups_before"].items():
        top = CGROUP_ROOT / ctrl / "kubepods"
        if existed or not top.is_dir():
            continue
        dirs = sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts), reverse=True)
        for p in [*dirs, top]:
            try:
                p.rmdir()
            except OSError as e:
                problems.append(f"cgroup {p}: {e}")
    if d.get("propagation") == "private":
        subprocess.run(["mount", "--make-rprivate", "/"], capture_output=True)
    if not problems:
        st.path.rename(workdir / "state.down.json")
    return problems


def main(argv: list[str]) -> int:
    import argparse
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("action", choices=("up", "down"))
    ap.add_argument("--workdir", type=pathlib.Path, default=DEFAULT_WORKDIR)
    ap.add_argument("--proxy", choices=PROXIES, default="kube-proxy",
                    help="who serves Services: kube-proxy, or blixt (apply overlays/service-proxy; "
                         "CoreDNS gets Ready once it runs)")
    a = ap.parse_args(argv)
    if a.action == "down":
        problems = teardown(a.workdir)
        for p in problems:
            print("left:", p, file=sys.stderr)
        return 1 if problems else 0
    c = NodeCluster(a.workdir, proxy=a.proxy)
    print(f"Node {NODE_NAME} Ready. kubectl: nsenter --net=/run/netns/{c.node_ns} "
          f"{paths.KUBECTL} --kubeconfig={c.kubeconfig} get pods -A\n"
          f"client namespace: ip netns exec {c.client_ns} ...; logs in {c.workdir}; "
          f"`make cluster-down` removes it all")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
