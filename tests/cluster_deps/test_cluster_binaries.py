"""Every binary `make deps-cluster` builds (tests/deps/cluster.sh): it runs,
reports the release it was built from, and carries the build settings asked
for (module version, cgo, tags, per `go version -m`). The servers among them
(echo-basic in its three modes, CoreDNS) answer a request; the upstream
conformance binary lists its TCPRoute/UDPRoute tests, accepts the suite's
flags and derives its L4 base manifests without a cluster.

Deselected unless BLIXT_CLUSTER=1 (see conftest.py); `make test-cluster-deps`."""

from __future__ import annotations

import json
import os
import pathlib
import re
import socket
import struct
import subprocess
import time

import pytest

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
