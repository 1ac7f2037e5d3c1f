"""Every binary `make deps-cluster` builds (tests/deps/cluster.sh): it runs,
reports the release it was built from, and carries the build settings asked
for (module version, cgo, tags, per `go version -m`). The servers among them
(echo-basic in its three modes, CoreDNS) answer a request; the upstream
conformance binary lists its TCPRoute/UDPRoute tests, accepts the suite's
flags and derives its L4 base manifests without a cluster. bpfman-operator
prints its default Config, the agent has the DaemonSet's init-container mode,
the operator's config/ tree was copied beside them, and csi-registrar
registers a driver over gRPC the way kubelet's plugin watcher asks.

Deselected unless BLIXT_CLUSTER=1 (see conftest.py); `make test-cluster-deps`."""

from __future__ import annotations

import json
import os
import pathlib
import re
import signal
import socket
import struct
import subprocess
import time

import pytest
import yaml

from harness import paths
from harness.paths import MissingComponent, component
from harness.proc import Process, run

CLUSTER = paths.CACHE / "cluster"
BIN = CLUSTER / "bin"
CNI_BIN = CLUSTER / "cni" / "bin"

KUBE_VERSION = "v1.35.4"
CONTAINERD_VERSION = "v2.2.9"
RUNC_VERSION = "v1.3.6"
CRI_TOOLS_VERSION = "v1.34.0"
CNI_PLUGINS_VERSION = "v1.8.0"
COREDNS_VERSION = "v1.12.2"
GATEWAY_API_VERSION = "v1.6.1"
CONFORMANCE_BINARY = "gateway-api-conformance.test"
E2E_BINARY = "e2e.test"
AGNHOST_VERSION = "2.59"
BPFMAN_OPERATOR_VERSION = "v0.6.0"
KUBELET_API_VERSION = "v0.35.4"  # k8s.io/kubelet of KUBE_VERSION: csi-registrar's plugin-registration API
OPERATOR_CONFIG = CLUSTER / "bpfman-operator" / "config"
# Test binaries: their build info lists no modules.
TEST_BINARIES = (CONFORMANCE_BINARY, E2E_BINARY)

KUBE = ["kubelet", "kube-controller-manager", "kube-scheduler", "kube-proxy"]
CNI_PLUGINS = ["bridge", "host-local", "loopback", "portmap"]
CONTAINERD_TAGS = "no_btrfs,urfave_cli_no_docs"

# name -> (directory, module, version, CGO_ENABLED or None for "as Go defaults", -tags or None)
BUILDS = {
    **{k: (BIN, "k8s.io/kubernetes", KUBE_VERSION, None, None) for k in KUBE},
    **{c: (BIN, "github.com/containerd/containerd/v2", CONTAINERD_VERSION, "0", CONTAINERD_TAGS)
       for c in ("containerd", "ctr", "containerd-shim-runc-v2")},
    "runc": (BIN, "github.com/opencontainers/runc", RUNC_VERSION, "1", "seccomp,urfave_cli_no_docs"),
    "crictl": (BIN, "sigs.k8s.io/cri-tools", CRI_TOOLS_VERSION, "0", None),
    **{p: (CNI_BIN, "github.com/containernetworking/plugins", CNI_PLUGINS_VERSION, "0", None)
       for p in CNI_PLUGINS},
    "coredns": (BIN, "github.com/coredns/coredns", COREDNS_VERSION, "0", None),
    "echo-basic": (BIN, "sigs.k8s.io/gateway-api/conformance", GATEWAY_API_VERSION, "0", None),
    CONFORMANCE_BINARY: (BIN, "sigs.k8s.io/gateway-api/conformance", GATEWAY_API_VERSION, "0", None),
    E2E_BINARY: (BIN, "k8s.io/kubernetes", KUBE_VERSION, "0", None),
    "agnhost": (BIN, "k8s.io/kubernetes", KUBE_VERSION, "0", None),
    "bpfman-operator": (BIN, "github.com/bpfman/bpfman-operator", BPFMAN_OPERATOR_VERSION, "0", None),
    "bpfman-operator-agent": (BIN, "github.com/bpfman/bpfman-operator", BPFMAN_OPERATOR_VERSION, "0", None),
    "csi-registrar": (BIN, "k8s.io/kubelet", KUBELET_API_VERSION, "0", None),
}

# name -> (version argv, pattern its output must match)
VERSIONS = {
    **{k: (["--version"], rf"^Kubernetes {re.escape(KUBE_VERSION)}$") for k in KUBE},
    "containerd": (["--version"], rf"^containerd github\.com/containerd/containerd/v2 {re.escape(CONTAINERD_VERSION)}\b"),
    "ctr": (["--version"], rf"^ctr github\.com/containerd/containerd/v2 {re.escape(CONTAINERD_VERSION)}$"),
    "containerd-shim-runc-v2": (["-v"], rf"^\s*Version:\s+{re.escape(CONTAINERD_VERSION)}$"),
    "runc": (["--version"], rf"^runc version {re.escape(RUNC_VERSION[1:])}$"),
    "crictl": (["--version"], rf"^crictl version {re.escape(CRI_TOOLS_VERSION)}$"),
    "coredns": (["-version"], rf"^CoreDNS-{re.escape(COREDNS_VERSION[1:])}$"),
    "agnhost": (["--version"], rf"^app version {re.escape(AGNHOST_VERSION)}$"),
    # internal/version.buildVersion, set by tests/deps/cluster.sh's -ldflags.
    "bpfman-operator": (["--version"], rf"^{re.escape(BPFMAN_OPERATOR_VERSION)} go1\.\S+ linux/\w+$"),
    "bpfman-operator-agent": (["--version"], rf"^{re.escape(BPFMAN_OPERATOR_VERSION)} go1\.\S+ linux/\w+$"),
    "csi-registrar": (["-version"], rf"pluginregistration\.k8s\.io/v1 from k8s\.io/kubelet {re.escape(KUBELET_API_VERSION)};"),
}

# Upstream v1.6.1's TCP and UDP route tests (conformance/tests/{tcp,udp}route-*.go).
L4_TESTS = {
    "TCPRouteInvalidBackendRefNonexistent", "TCPRouteInvalidCrossNamespaceBackendRef",
    "TCPRouteInvalidNonTCPListener", "TCPRouteMultipleRoutesAttachment", "TCPRouteParentRefAttachAll",
    "TCPRouteParentRefPortAndSectionName", "TCPRouteReferenceGrant", "TCPRouteWeightedRouting",
    "UDPRoute", "UDPRouteInvalidBackendRefNonexistent", "UDPRouteInvalidCrossNamespaceBackendRef",
    "UDPRouteMultipleRoutesAttachment", "UDPRouteNotAllowedByListeners",
    "UDPRouteParentRefAttachAllListeners", "UDPRouteParentRefPortAndSectionName",
    "UDPRouteReferenceGrant", "UDPRouteWeightedRouting",
}


def binary(name: str) -> pathlib.Path:
    path = BUILDS[name][0] / name
    with component():
        if not os.access(path, os.X_OK):
            raise MissingComponent(f"{name} not found at {path}: run `make deps-cluster`")
    return path


def output(argv, **kw) -> str:
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=60, **kw)
    assert res.returncode == 0, f"{argv} exited {res.returncode}: {res.stdout[-2000:]} {res.stderr[-2000:]}"
    return res.stdout + res.stderr


def build_info(path: pathlib.Path) -> tuple[dict[str, str], dict[str, str]]:
    """`go version -m`: module path -> version (after replacements), build setting -> value."""
    with component():
        go = paths.require_tool("go", "the Go toolchain (reads the binaries' build info)")
    mods: dict[str, str] = {}
    settings: dict[str, str] = {}
    last = None
    for line in run([go, "version", "-m", path]).stdout.splitlines()[1:]:
        f = line.strip().split("\t")
        if f[0] in ("mod", "dep") and len(f) >= 3:
            last, mods[f[1]] = f[1], f[2]
        elif f[0] == "=>" and last and len(f) >= 3:
            mods[last] = f[2]
        elif f[0] == "build" and len(f) >= 2 and "=" in f[1]:
            k, v = f[1].split("=", 1)
            settings[k] = v
    return mods, settings


def has_interpreter(path: pathlib.Path) -> bool:
    """True if the ELF file names a dynamic loader (PT_INTERP): not a static binary."""
    with open(path, "rb") as f:
        ident = f.read(64)
        assert ident[:4] == b"\x7fELF" and ident[4] == 2 and ident[5] == 1, f"{path}: not a 64-bit little-endian ELF"
        phoff, = struct.unpack_from("<Q", ident, 0x20)
        phentsize, phnum = struct.unpack_from("<HH", ident, 0x36)
        f.seek(phoff)
        table = f.read(phentsize * phnum)
    return any(struct.unpack_from("<I", table, i * phentsize)[0] == 3 for i in range(phnum))


def free_port(kind=socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("name", sorted(BUILDS))
def test_built_from_the_pinned_module(name):
    path = binary(name)
    _, module, version, cgo, tags = BUILDS[name]
    mods, settings = build_info(path)
    if name in TEST_BINARIES:
        # A test binary's build info lists no modules; with -trimpath its
        # source file names read module@version/file instead.
        versions = set(re.findall(rb"(?<![\w./-])" + re.escape(module.encode()) + rb"@(v[\w.+-]+)/", path.read_bytes()))
        assert versions == {version.encode()}, f"{name}: {module} at {versions}, want {version}"
    else:
        assert mods.get(module) == version, f"{name}: {module} is {mods.get(module)}, want {version}"
    if cgo is not None:
        assert settings.get("CGO_ENABLED") == cgo
    if tags is not None:
        assert settings.get("-tags") == tags
    if cgo == "0":
        assert not has_interpreter(path), f"{name} is dynamically linked"


def test_e2e_binary_selects_the_services_conformance_tests():
    """What `make conformance-services` runs: Kubernetes v1.35.4 tags 15
    `[sig-network] Services` tests [Conformance] (a dry run lists them)."""
    out = output([binary(E2E_BINARY), "--ginkgo.dry-run", "--ginkgo.no-color", "--ginkgo.v",
                  r"--ginkgo.focus=\[sig-network\] Services .*\[Conformance\]"])
    specs = re.findall(r"^\[sig-network\] Services (should .*) \[Conformance\]", out, re.M)
    assert len(specs) == 15, specs
    assert "should serve a basic endpoint from pods" in specs


def test_conformance_binary_uses_the_same_gateway_api_release():
    # The suite requires the installed CRDs' bundle-version to equal the
    # sigs.k8s.io/gateway-api release compiled in (the go.mod replace).
    out = output([binary(CONFORMANCE_BINARY), "-test.run", "^TestListUpstreamTests$"])
    assert f"gateway-api-bundle-version {GATEWAY_API_VERSION}\n" in out


@pytest.mark.parametrize("name", sorted(VERSIONS))
def test_version_command(name):
    argv, pattern = VERSIONS[name]
    out = output([binary(name), *argv])
    assert re.search(pattern, out, re.M), f"{name} {' '.join(argv)} said:\n{out}"


def test_runc_has_seccomp():
    out = output([binary("runc"), "--version"])
    assert re.search(r"^libseccomp: \d+\.\d+\.\d+$", out, re.M), out


@pytest.mark.parametrize("plugin", CNI_PLUGINS)
def test_cni_plugin_versions(plugin):
    path = binary(plugin)
    # Without CNI_COMMAND a plugin prints its "about" string and exits.
    about = subprocess.run([path], capture_output=True, text=True, timeout=30, env={})
    assert f"CNI {plugin} plugin {CNI_PLUGINS_VERSION}" in about.stdout + about.stderr
    res = json.loads(output([path], env={"CNI_COMMAND": "VERSION"}, input="{}"))
    assert "1.0.0" in res["supportedVersions"]


def test_coredns_has_the_plugins_the_base_manifests_use():
    plugins = set(output([binary("coredns"), "-plugins"]).split())
    assert {"forward", "log", "errors", "whoami", "bind"} <= plugins


def _dns_query(name: str, qid: int) -> bytes:
    qname = b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0"
    return struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + qname + struct.pack("!HH", 1, 1)


def test_coredns_answers(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    (tmp_path / "Corefile").write_text(f"foo.bar.com:{port} {{\n  bind 127.0.0.1\n  whoami\n}}\n")
    proc = Process("coredns", [binary("coredns"), "-conf", tmp_path / "Corefile"], tmp_path / "coredns.log",
                   cwd=str(tmp_path))
    try:
        reply = {}

        def answered() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(_dns_query("foo.bar.com", 0x4242), ("127.0.0.1", port))
                reply["data"] = s.recv(512)
            return True

        proc.wait_until(answered, 30, "coredns answering foo.bar.com")
        qid, flags, _, _, _, arcount = struct.unpack_from("!HHHHHH", reply["data"])
        assert qid == 0x4242 and flags & 0x8000 and flags & 0xF == 0  # a response, NOERROR
        assert arcount >= 1  # whoami puts the client's address in the additional section
    finally:
        proc.stop()


def _echo_basic(tmp_path, env):
    return Process("echo-basic", [binary("echo-basic")], tmp_path / "echo-basic.log",
                   env={"POD_NAME": "pod-a", "NAMESPACE": "ns-a", **env})


def test_echo_basic_http(tmp_path):
    import urllib.request
    port = free_port()
    proc = _echo_basic(tmp_path, {"HTTP_PORT": str(port), "H2C_PORT": str(free_port())})
    try:
        body = {}

        def served() -> bool:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/some/path", timeout=2) as r:
                body.update(json.load(r))
            return True

        proc.wait_until(served, 30, "echo-basic serving HTTP")
        assert body["path"] == "/some/path"
        assert (body["namespace"], body["pod"]) == ("ns-a", "pod-a")
    finally:
        proc.stop()


def test_echo_basic_tcp(tmp_path):
    port = free_port()
    proc = _echo_basic(tmp_path, {"TCP_ECHO_SERVER": "1", "TCP_PORT": str(port)})
    try:
        lines = []

        def served() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                f = s.makefile("rwb")
                lines.append(f.readline())
                f.write(b"TEST\n")
                f.flush()
                lines.append(f.readline())
            return True

        proc.wait_until(served, 30, "echo-basic serving TCP")
        assert lines[0] == b"Gateway API Test TCP Server\n"
        answer = json.loads(lines[1])
        assert (answer["pod"], answer["tcpport"], answer["isTLS"]) == ("pod-a", str(port), False)
    finally:
        proc.stop()


def test_echo_basic_udp(tmp_path):
    port = free_port(socket.SOCK_DGRAM)
    proc = _echo_basic(tmp_path, {"UDP_ECHO_SERVER": "1", "UDP_PORT": str(port)})
    try:
        reply = {}

        def served() -> bool:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.settimeout(0.5)
                s.sendto(b"hello", ("127.0.0.1", port))
                reply.update(json.loads(s.recv(2048)))
            return True

        proc.wait_until(served, 30, "echo-basic serving UDP")
        assert reply["request"] == "hello"
        assert reply["pod"] == "pod-a"
    finally:
        proc.stop()


def test_conformance_binary_lists_l4_tests():
    path = binary(CONFORMANCE_BINARY)
    assert set(output([path, "-test.list", ".*"]).split()) == {
        "TestConformance", "TestBaseManifestsForL4", "TestListUpstreamTests"}
    listed = {}
    for line in output([path, "-test.run", "^TestListUpstreamTests$"]).splitlines():
        m = re.match(r"upstream-test (\S+) provisional=(true|false) features=(\S*)$", line)
        if m:
            listed[m[1]] = (m[2] == "true", m[3].split(","))
    missing = L4_TESTS - set(listed)
    assert not missing, f"not in the binary: {sorted(missing)}"
    l4 = {n for n in listed if n.startswith(("TCPRoute", "UDPRoute"))}
    assert l4 == L4_TESTS, f"TCP/UDP tests changed upstream: {sorted(l4 ^ L4_TESTS)}"
    assert listed["UDPRoute"][0], "UDPRoute is Provisional in v1.6.1"
    assert "TCPRoute" in listed["TCPRouteWeightedRouting"][1]


def test_conformance_binary_derives_l4_base_manifests():
    out = output([binary(CONFORMANCE_BINARY), "-test.run", "^TestBaseManifestsForL4$", "-test.v"])
    assert "--- PASS: TestBaseManifestsForL4" in out
    assert len(re.findall(r"annotated gateway-conformance-infra/\S+ with gateway-api/skip-this-for-readiness", out)) == 4


def test_conformance_binary_takes_the_suite_flags():
    # Nothing runs (-test.run '^$'), but an unknown flag would exit 2.
    out = output([binary(CONFORMANCE_BINARY), "-test.run", "^$",
                  "-gateway-class=blixt", "-conformance-profiles=GATEWAY-TCP,GATEWAY-UDP",
                  "-supported-features=Gateway,TCPRoute,UDPRoute", "-skip-tests=UDPRoute",
                  "-run-test=TCPRouteWeightedRouting", "-skip-provisional-tests",
                  "-report-output=/dev/null", "-organization=o", "-project=p", "-url=u",
                  "-version=v", "-contact=c"])
    assert "PASS" in out


def test_bpfman_operator_prints_its_default_config():
    """The Config `bpfman-config` the operator creates when there is none:
    images from BPFMAN_IMG and BPFMAN_AGENT_IMG (both required)."""
    env = {**os.environ, "BPFMAN_IMG": "registry.test/bpfman:t", "BPFMAN_AGENT_IMG": "registry.test/bpfman-agent:t"}
    config = yaml.safe_load(output([binary("bpfman-operator"), "default-config"], env=env))
    assert (config["kind"], config["metadata"]["name"]) == ("Config", "bpfman-config")
    assert config["spec"]["daemon"]["image"] == "registry.test/bpfman:t"
    assert config["spec"]["agent"]["image"] == "registry.test/bpfman-agent:t"
    assert config["spec"]["namespace"] == "bpfman"
    assert "[signing]" in config["spec"]["configuration"]
    # Without the images it exits 1 before its logger is set up: silently.
    env = {k: v for k, v in os.environ.items() if k not in ("BPFMAN_IMG", "BPFMAN_AGENT_IMG")}
    res = subprocess.run([binary("bpfman-operator")], capture_output=True, text=True, timeout=30, env=env)
    assert res.returncode == 1, res


def test_bpfman_operator_agent_has_the_daemonset_modes():
    # The DaemonSet runs it as `/bpfman-agent --mount-bpffs` (init container)
    # and `/bpfman-agent --health-probe-bind-address=:8175`.
    out = output([binary("bpfman-operator-agent"), "--help"])
    for flag in ("-mount-bpffs", "-mount-bpffs-path", "-health-probe-bind-address", "-kubeconfig"):
        assert re.search(rf"^\s+{flag}\b", out, re.M), f"{flag} not in:\n{out}"


def test_operator_config_copied():
    """The operator module's config/: what the operator reads from
    ./config/bpfman-deployment at run time, and the CRDs to install."""
    with component():
        if not (OPERATOR_CONFIG / "bpfman-deployment").is_dir():
            raise MissingComponent(f"bpfman-operator config not found at {OPERATOR_CONFIG}: run `make deps-cluster`")
    for f in ("daemonset.yaml", "csidriverinfo.yaml", "metrics-proxy-daemonset.yaml"):
        assert (OPERATOR_CONFIG / "bpfman-deployment" / f).is_file(), f
    ds = yaml.safe_load((OPERATOR_CONFIG / "bpfman-deployment" / "daemonset.yaml").read_text())
    containers = {c["name"]: c for c in ds["spec"]["template"]["spec"]["containers"]}
    # The operator sets the images of these containers by name.
    assert {"bpfman", "bpfman-agent", "node-driver-registrar"} <= set(containers)
    assert containers["bpfman-agent"]["command"] == ["/bpfman-agent"]
    assert "--csi-address=/csi/csi.sock" in containers["node-driver-registrar"]["args"]
    crds = {
        "bpfman.io_clusterbpfapplications.yaml": "ClusterBpfApplication",
        "bpfman.io_clusterbpfapplicationstates.yaml": "ClusterBpfApplicationState",
        "bpfman.io_configs.yaml": "Config",
    }
    for f, kind in crds.items():
        crd = yaml.safe_load((OPERATOR_CONFIG / "crd" / "bases" / f).read_text())
        assert crd["kind"] == "CustomResourceDefinition"
        assert (crd["spec"]["group"], crd["spec"]["names"]["kind"], crd["spec"]["scope"]) == ("bpfman.io", kind, "Cluster")
        assert "v1alpha1" in {v["name"] for v in crd["spec"]["versions"]}
    assert (OPERATOR_CONFIG / "default" / "kustomization.yaml").is_file()
    assert os.access(OPERATOR_CONFIG / "bpfman-deployment" / "daemonset.yaml", os.W_OK)


def test_csi_registrar_help():
    out = output([binary("csi-registrar"), "--help"])
    for flag in ("-driver-name", "-csi-address", "-kubelet-registration-path", "-plugin-registration-dir", "-v"):
        assert re.search(rf"^\s+{flag}\b", out, re.M), f"{flag} not in:\n{out}"
    assert 'default "csi.bpfman.io"' in out and 'default "/registration"' in out


def _proto_fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) of a protobuf message with varint and length-delimited fields."""
    def varint(i):
        v = shift = 0
        while True:
            b = data[i]
            v |= (b & 0x7F) << shift
            i += 1
            if not b & 0x80:
                return v, i
            shift += 7
    fields, i = [], 0
    while i < len(data):
        key, i = varint(i)
        if key & 7 == 0:
            v, i = varint(i)
        elif key & 7 == 2:
            n, i = varint(i)
            v, i = data[i:i + n], i + n
        else:
            raise AssertionError(f"wire type {key & 7}")
        fields.append((key >> 3, v))
    return fields


def test_csi_registrar_registers(tmp_path):
    """What kubelet's plugin watcher does: wait for <driver>-reg.sock, GetInfo,
    NotifyRegistrationStatus. SIGTERM removes the socket; a failed registration
    exits 1 (the pod restarts)."""
    import grpc
    csi, reg_dir = tmp_path / "csi.sock", tmp_path / "registration"
    reg = reg_dir / "csi.bpfman.io-reg.sock"
    argv = [binary("csi-registrar"), "--v=5", f"--csi-address={csi}", f"--plugin-registration-dir={reg_dir}",
            "--kubelet-registration-path=/var/lib/kubelet/plugins/csi-bpfman/csi.sock"]

    def call(method: str, request: bytes) -> bytes:
        with grpc.insecure_channel(f"unix://{reg}") as ch:
            return ch.unary_unary(f"/pluginregistration.Registration/{method}")(request, timeout=5)

    proc = Process("csi-registrar", argv, tmp_path / "registrar.log")
    try:
        time.sleep(1)
        assert proc.alive() and not reg.exists(), "registered before the CSI socket existed"
        with socket.socket(socket.AF_UNIX) as driver:
            driver.bind(str(csi))
            driver.listen()
            proc.wait_until(reg.exists, 30, "csi-registrar's registration socket")
            info = _proto_fields(call("GetInfo", b""))
            assert info == [(1, b"CSIPlugin"), (2, b"csi.bpfman.io"),
                            (3, b"/var/lib/kubelet/plugins/csi-bpfman/csi.sock"), (4, b"1.0.0")], info
            assert call("NotifyRegistrationStatus", b"\x08\x01") == b""  # plugin_registered: true
            assert proc.alive()
            os.killpg(proc.popen.pid, signal.SIGTERM)
            assert proc.popen.wait(10) == 0
            assert not reg.exists()
    finally:
        proc.stop()

    proc = Process("csi-registrar", [*argv, "--csi-address="], tmp_path / "registrar-2.log")
    try:
        proc.wait_until(reg.exists, 30, "csi-registrar's registration socket")
        error = b"version mismatch"
        assert call("NotifyRegistrationStatus", b"\x12" + bytes([len(error)]) + error) == b""
        assert proc.popen.wait(10) == 1
        assert not reg.exists()
        assert "version mismatch" in (tmp_path / "registrar-2.log").read_text()
    finally:
        proc.stop()
