"""bpfman-operator v0.6.0 installed on the one-node cluster (harness.node)
from the local images, the way deploy/kustomize/README.md tells users:

1. the operator's CRDs (its config/crd),
2. the cluster-scoped `Config` bpfman-config (OPERATOR_CONFIG_CR: the
   images, the CSI registrar, bpfman.toml) *before* the operator runs (it
   makes a default one, with image verification on, when there is none),
3. the rest of its config/default, the operator's image set to ours.

The operator then runs bpfman (`bpfman-rpc --csi-support`), its agent and
the CSI registrar as the DaemonSet bpfman/bpfman-daemon.

What this machine's one-node cluster needs beyond a real node, recorded in
the cluster's state so teardown undoes it:
- the operator's agent finds the CRI at /run/containerd/containerd.sock (to
  resolve a pod's network namespace); the cluster's containerd listens in its
  workdir, so that path is a symlink to it while the cluster runs;
- the DaemonSet mounts host paths with `type: ""` that do not exist here
  (crio's and docker's sockets, /etc/crictl.yaml): kubelet makes them as
  empty directories; teardown removes those it made;
- bpfman pulls the bytecode image from the cluster's TLS registry, whose CA
  the node's bpfman trusts through REGISTRY_CA_DIR.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import time

import yaml

from . import paths

OPERATOR_CONFIG = paths.CACHE / "cluster" / "bpfman-operator" / "config"
OPERATOR_CONFIG_CR = paths.REPO / "tests" / "cluster_operator" / "bpfman-config.yaml"
NAMESPACE = "bpfman"
CRI_SOCKET = pathlib.Path("/run/containerd/containerd.sock")
# Images as `make images` tags them (tests/deps/images.sh).
OPERATOR_IMAGE = ("bpfman-operator", "0.6.0")
DAEMONSET = "daemonset/bpfman-daemon"
# Where the bpfman image looks for extra CA certificates (SSL_CERT_DIR,
# tests/deps/images.sh): the DaemonSet mounts the node's /run/bpfman.
REGISTRY_CA_DIR = pathlib.Path("/run/bpfman/registry-ca")


def host_paths(daemonset: pathlib.Path) -> list[str]:
    """The host paths the operator's DaemonSet payload mounts (kubelet makes
    missing ones: directories, whatever the name says). Pure."""
    doc = yaml.safe_load(daemonset.read_text())
    return sorted({v["hostPath"]["path"] for v in doc["spec"]["template"]["spec"].get("volumes", [])
                   if "hostPath" in v})


def kustomization(config: pathlib.Path, at: pathlib.Path) -> str:
    """A kustomization in directory `at` over the operator's config/default
    with our image (kustomize takes relative paths only). Pure."""
    name, tag = OPERATOR_IMAGE
    return yaml.safe_dump({
        "apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization",
        "resources": [os.path.relpath(config / "default", at)],
        "images": [{"name": "quay.io/bpfman/bpfman-operator", "newName": name, "newTag": tag}],
        "patches": [{"target": {"kind": "Deployment", "name": "bpfman-operator"}, "patch": yaml.safe_dump([
            {"op": "replace", "path": "/spec/template/spec/containers/0/imagePullPolicy",
             "value": "IfNotPresent"}])}],
    }, sort_keys=False)


class Operator:
    """bpfman-operator installed on `cluster` (a harness.node.NodeCluster)."""

    def __init__(self, cluster):
        self.cluster = cluster
        config = paths.require_file(OPERATOR_CONFIG / "default" / "kustomization.yaml",
                                    "bpfman-operator's config (make deps-cluster)").parent.parent
        st = cluster.state
        made = st.data.setdefault("host_paths_made", [])
        # Each host path and its parents: kubelet makes missing ones (mkdir -p).
        wanted = {str(a) for p in host_paths(config / "bpfman-deployment" / "daemonset.yaml")
                  for a in (pathlib.Path(p), *pathlib.Path(p).parents) if a != pathlib.Path("/")}
        before = {p: os.path.lexists(p) for p in sorted(wanted)}
        st.data["operator_host_paths_before"] = before
        st.save()
        # The CRI where the operator's agent looks for it.
        if os.path.lexists(CRI_SOCKET):
            raise RuntimeError(f"{CRI_SOCKET} exists: another container runtime runs on this machine; "
                               "the operator's agent would ask it for the cluster's pods")
        CRI_SOCKET.parent.mkdir(parents=True, exist_ok=True)
        CRI_SOCKET.symlink_to(cluster.sock)
        made.append(str(CRI_SOCKET))
        st.save()
        # The registry's CA, by OpenSSL's hashed name.
        if REGISTRY_CA_DIR.exists():
            raise RuntimeError(f"{REGISTRY_CA_DIR} exists: a cluster not torn down (`make cluster-down`)")
        st.data.setdefault("trees_made", []).append(str(REGISTRY_CA_DIR))
        st.save()
        REGISTRY_CA_DIR.mkdir(parents=True)
        h = cluster.node_exec("openssl", "x509", "-noout", "-subject_hash", "-in", cluster.ca_cert).stdout.strip()
        shutil.copy(cluster.ca_cert, REGISTRY_CA_DIR / f"{h}.0")

        # 1. CRDs, 2. the Config, 3. the rest (namespace, RBAC, the operator):
        # server-side, as the CRDs are too large for kubectl's last-applied annotation.
        work = cluster.workdir / "bpfman-operator"
        work.mkdir(exist_ok=True)
        (work / "kustomization.yaml").write_text(kustomization(config, work))
        cluster.kubectl("apply", "--server-side", "-k", config / "crd")
        cluster.kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd", "--all")
        cluster.kubectl("apply", "-f", paths.require_file(OPERATOR_CONFIG_CR, "the operator's Config"))
        cluster.kubectl("apply", "--server-side", "-k", work)
        self.wait_rolled_out()

    def wait_rolled_out(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        k = self.cluster.kubectl
        k("-n", NAMESPACE, "rollout", "status", "deployment/bpfman-operator", f"--timeout={int(timeout)}s")
        while k("-n", NAMESPACE, "get", DAEMONSET, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise AssertionError(f"the operator made no {DAEMONSET}:\n{self.describe()}")
            time.sleep(1)
        left = max(1, int(deadline - time.monotonic()))
        res = k("-n", NAMESPACE, "rollout", "status", DAEMONSET, f"--timeout={left}s", check=False)
        if res.returncode != 0:
            raise AssertionError(f"{DAEMONSET} not rolled out: {res.stderr}\n{self.describe()}")

    def describe(self) -> str:
        k = self.cluster.kubectl
        out = k("get", "pods", "-A", "-o", "wide", check=False).stdout
        for what in ("deployment/bpfman-operator", DAEMONSET):
            out += f"--- {what}\n" + k("-n", NAMESPACE, "logs", what, "--all-containers", "--tail=40",
                                       check=False).stdout
        out += k("get", "clusterbpfapplicationstates", "-o", "yaml", check=False).stdout[-3000:]
        return out
