"""The container images `make images` writes to $BLIXT_CACHE/images, checked
the way a container runtime sees them: the tags in each docker-archive
tarball, the image config (skopeo), and the root file system a runtime
unpacks (umoci, which also turns the image config into the OCI runtime spec
a runtime would run). Each image's entrypoint then runs from that spec, with
chroot in fresh mount, PID and network namespaces (proc, sysfs, /dev and a
tmpfs /tmp mounted as a runtime would), as the image's user.

Root only. Run by `make test-images` after `make images`, and by `make
test`'s second pytest session, which names tests/images (see conftest.py).
echo-basic, coredns and agnhost are skipped when `make deps-cluster` has not
built their binaries (and so `make images` did not build their images).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shlex
import shutil
import signal
import struct
import subprocess
import sys
import tarfile
import time
import tomllib

import pytest

from harness import paths
from harness.bpfman import memlock_is_capped

IMAGES = paths.CACHE / "images"
VERSION = tomllib.loads((paths.REPO / "pyproject.toml").read_text())["project"]["version"]
PAUSE_TAG = "3.10.1"
# What Gateway API's conformance base manifests (v1.6.1) name.
ECHO_BASIC_TAGS = ["v1.5.1", "v1.6.0-dev.2", "v1.6.0-dev.3"]
COREDNS_TAG = "v1.12.2"
AGNHOST_TAG = "2.59"
NONROOT = "65532:65532"
OPERATOR_VERSION = "0.6.0"

EXPECTED = {
    "blixt": {"tags": [f"blixt:{VERSION}", "blixt:latest"], "entrypoint": ["blixt"], "user": "0:0"},
    "bpfman": {"tags": [f"bpfman:{paths.BPFMAN_VERSION}"], "entrypoint": ["/bpfman-rpc", "--timeout=0"],
               "user": "0:0"},
    "pause": {"tags": [f"registry.k8s.io/pause:{PAUSE_TAG}"], "entrypoint": ["/pause"], "user": "65535:65535"},
    # From binaries `make deps-cluster` builds (tests/deps/cluster.sh).
    "echo-basic": {"tags": [f"registry.k8s.io/gateway-api/echo-basic:{t}" for t in ECHO_BASIC_TAGS],
                   "entrypoint": ["/echo-basic"], "user": NONROOT, "binary": "echo-basic"},
    "coredns": {"tags": [f"registry.k8s.io/coredns/coredns:{COREDNS_TAG}"], "entrypoint": ["/coredns"],
                "user": NONROOT, "binary": "coredns"},
    # Kubernetes' e2e image, as the e2e framework (v1.35.4) names it.
    "agnhost": {"tags": [f"registry.k8s.io/e2e-test-images/agnhost:{AGNHOST_TAG}"], "entrypoint": ["/agnhost"],
                "cmd": ["pause"], "user": "0:0", "binary": "agnhost"},
    # bpfman-operator v0.6.0, its agent and our CSI registrar, where the
    # operator's manifests run them; local names its Config points at.
    "bpfman-operator": {"tags": [f"bpfman-operator:{OPERATOR_VERSION}"], "entrypoint": ["/bpfman-operator"],
                        "user": NONROOT, "binary": "bpfman-operator"},
    "bpfman-agent": {"tags": [f"bpfman-agent:{OPERATOR_VERSION}"], "entrypoint": ["/bpfman-agent"],
                     "user": "0:0", "binary": "bpfman-operator-agent"},
    "csi-node-driver-registrar": {"tags": [f"csi-node-driver-registrar:{OPERATOR_VERSION}"],
                                  "entrypoint": ["/csi-node-driver-registrar"], "user": "0:0",
                                  "binary": "csi-registrar"},
}
BLIXT_COMMANDS = ("controller", "agent", "bpfman-programs", "dataplane", "translate")
# The controller's pod runs as this user with a read-only root (deploy/kustomize/base/controller.yaml).
CONTROLLER_UID = 65532


def normalized(ref: str) -> str:
    """The reference as docker-archive, containerd and the CRI spell it:
    `blixt:latest` is docker.io/library/blixt:latest."""
    first = ref.split("/", 1)[0]
    if "/" in ref and ("." in first or ":" in first or first == "localhost"):
        return ref
    return ("docker.io/" if "/" in ref else "docker.io/library/") + ref


def cluster_bin() -> pathlib.Path:
    """Where tests/deps/cluster.sh leaves its binaries (as tests/deps/images.sh looks)."""
    if (paths.CACHE / "cluster" / "bin").is_dir():
        return paths.CACHE / "cluster" / "bin"
    for line in (paths.REPO / "tests/cluster/kube/go.mod").read_text().splitlines():
        words = line.split()
        if words[:2] == ["require", "k8s.io/kubernetes"]:
            return paths.CACHE / f"cluster-{words[2]}" / "bin"
    raise AssertionError("tests/cluster/kube/go.mod requires no k8s.io/kubernetes")


def built(name: str) -> bool:
    """Whether `make images` builds this image here: always, but for the
    images of `make deps-cluster` binaries only when those exist."""
    binary = EXPECTED[name].get("binary")
    return binary is None or (cluster_bin() / binary).exists()


def archive(name: str) -> pathlib.Path:
    path = IMAGES / f"{name}.tar"
    if not path.exists():
        if not built(name):
            pytest.skip(f"{name}: {cluster_bin() / EXPECTED[name]['binary']} not built (make deps-cluster)")
        pytest.fail(f"{path} not found: run `make images`", pytrace=False)
    return path


@dataclasses.dataclass
class Unpacked:
    name: str
    rootfs: pathlib.Path
    spec: dict  # the OCI runtime spec umoci made from the image config

    @property
    def args(self) -> list[str]:
        return list(self.spec["process"]["args"])

    @property
    def env(self) -> dict[str, str]:
        return dict(e.split("=", 1) for e in self.spec["process"].get("env", []))

    @property
    def user(self) -> tuple[int, int]:
        u = self.spec["process"]["user"]
        return u.get("uid", 0), u.get("gid", 0)

    def _command(self, argv: list[str], user: tuple[int, int] | None, readonly: bool,
                 binds: list[tuple[pathlib.Path, str]]) -> list[str]:
        """unshare + sh (on the host, inside the new mount namespace) + chroot."""
        uid, gid = user or self.user
        r = shlex.quote(str(self.rootfs))
        mount, chroot, ip = shutil.which("mount"), shutil.which("chroot"), shutil.which("ip")
        steps = [f"{ip} link set lo up", f"{mount} --bind {r} {r}"]
        for what, fstype, target in (("proc", "proc", "proc"), ("sysfs", "sysfs", "sys"), ("tmpfs", "tmpfs", "tmp")):
            steps.append(f"if [ -d {r}/{target} ]; then {mount} -t {fstype} {what} {r}/{target}; fi")
        steps.append(f"if [ -d {r}/dev ]; then {mount} --rbind /dev {r}/dev; fi")
        for host, inside in binds:
            steps.append(f"{mount} --bind {shlex.quote(str(host))} {r}{shlex.quote(inside)}")
        if readonly:
            steps.append(f"{mount} -o remount,bind,ro {r}")
        steps.append(f'exec {chroot} --userspec={uid}:{gid} {r} "$@"')
        return ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--net",
                "/bin/sh", "-ec", " && ".join(steps), "sh", *argv]

    def run(self, argv: list[str] | None = None, *, extra: tuple[str, ...] = (), user=None,
            readonly: bool = False, env: dict[str, str] | None = None, input: str | None = None,
            binds=(), timeout: float = 120) -> subprocess.CompletedProcess:
        """Run argv (default: the image's entrypoint and cmd) plus extra, with
        the image's environment (plus env)."""
        argv = (self.args if argv is None else argv) + list(extra)
        return subprocess.run(self._command(argv, user, readonly, list(binds)), env={**self.env, **(env or {})},
                              input=input, capture_output=True, text=True, timeout=timeout)

    def start(self, argv: list[str] | None = None, *, user=None, env=None, binds=(), log=None) -> subprocess.Popen:
        argv = self.args if argv is None else argv
        return subprocess.Popen(self._command(argv, user, False, list(binds)), env={**self.env, **(env or {})},
                                stdout=log or subprocess.PIPE, stderr=subprocess.STDOUT if log else subprocess.PIPE,
                                text=True)


def ns_init_pid(unshare_pid: int, timeout: float = 10) -> int:
    """The host pid of the process unshare forked (PID 1 in the new namespace)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for d in pathlib.Path("/proc").iterdir():
            if not d.name.isdigit():
                continue
            try:
                stat = (d / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == unshare_pid:
                return int(d.name)
        time.sleep(0.05)
    raise AssertionError(f"unshare {unshare_pid} forked no child")


@pytest.fixture(scope="session")
def unpacked(tmp_path_factory):
    with paths.component():
        paths.require_root("running the images' entrypoints (chroot, namespaces)")
        for tool in ("skopeo", "umoci", "unshare", "chroot", "mount", "ip", "nsenter"):
            paths.require_tool(tool, f"{tool} (make images installs it)")
    done: dict[str, Unpacked] = {}

    def get(name: str) -> Unpacked:
        if name not in done:
            d = tmp_path_factory.mktemp(f"image-{name}")
            subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive(name)}", f"oci:{d / 'oci'}:img"],
                           check=True)
            subprocess.run(["umoci", "unpack", "--image", f"{d / 'oci'}:img", str(d / "bundle")], check=True,
                           capture_output=True)
            spec = json.loads((d / "bundle" / "config.json").read_text())
            done[name] = Unpacked(name, d / "bundle" / "rootfs", spec)
        return done[name]
    return get


# --- every image: tags and config ------------------------------------------

def test_images_txt_lists_every_tag():
    lines = (IMAGES / "images.txt").read_text().splitlines()
    assert lines == sorted(lines)
    listed = dict(line.split(" ", 1) for line in lines)
    want = {tag: str(IMAGES / f"{name}.tar") for name, e in EXPECTED.items() if built(name) for tag in e["tags"]}
    assert listed == want


@pytest.mark.parametrize("name", EXPECTED)
def test_archive_holds_one_image_with_its_tags(name):
    path = archive(name)
    with tarfile.open(path) as t:
        manifest = json.load(t.extractfile("manifest.json"))
    assert len(manifest) == 1
    assert manifest[0]["RepoTags"] == [normalized(t) for t in EXPECTED[name]["tags"]]
    assert len(manifest[0]["Layers"]) == 1
    digests = set()
    for tag in EXPECTED[name]["tags"]:
        out = subprocess.run(["skopeo", "inspect", f"docker-archive:{path}:{tag}"], check=True,
                             capture_output=True, text=True).stdout
        digests.add(json.loads(out)["Digest"])
    assert len(digests) == 1


@pytest.mark.parametrize("name", EXPECTED)
def test_image_config(name):
    out = subprocess.run(["skopeo", "inspect", "--config", f"docker-archive:{archive(name)}"], check=True,
                         capture_output=True, text=True).stdout
    config = json.loads(out)
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    c = config["config"]
    assert c["Entrypoint"] == EXPECTED[name]["entrypoint"]
    assert c.get("Cmd") == EXPECTED[name].get("cmd")
    assert c["User"] == EXPECTED[name]["user"]


@pytest.mark.parametrize("name", EXPECTED)
def test_runtime_spec_from_the_image(name, unpacked):
    img = unpacked(name)
    assert img.args == EXPECTED[name]["entrypoint"] + EXPECTED[name].get("cmd", [])
    assert "%d:%d" % img.user == EXPECTED[name]["user"]
    assert img.spec["process"]["cwd"] == "/"


# --- blixt -------------------------------------------------------------------

def test_blixt_help_lists_its_commands(unpacked):
    img = unpacked("blixt")
    res = img.run(extra=("--help",))
    assert res.returncode == 0, res.stderr
    for command in BLIXT_COMMANDS:
        assert f"\n    {command}" in res.stdout, res.stdout
    res = img.run(extra=("--version",))
    assert res.returncode == 0 and VERSION in res.stdout + res.stderr


def test_blixt_path_puts_the_venv_first(unpacked):
    img = unpacked("blixt")
    assert img.env["PATH"].split(":")[0] == "/opt/blixt/bin"
    res = img.run(["sh", "-c", "for c in blixt python3 nft ip conntrack; do command -v $c; done"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.split() == ["/opt/blixt/bin/blixt", "/opt/blixt/bin/python3", "/usr/sbin/nft",
                                  "/usr/sbin/ip", "/usr/sbin/conntrack"]


# Every module but blixt.__main__ (which runs the CLI).
IMPORT_ALL = ("import importlib, pkgutil, blixt\n"
              "names = [m.name for m in pkgutil.walk_packages(blixt.__path__, 'blixt.')\n"
              "         if m.name != 'blixt.__main__']\n"
              "for n in names: importlib.import_module(n)\n"
              "print(len(names))\n")


def test_blixt_every_module_imports_as_the_controller_user_on_a_readonly_root(unpacked):
    img = unpacked("blixt")
    host = subprocess.run([sys.executable, "-c", IMPORT_ALL], capture_output=True, text=True, check=True,
                          cwd=paths.REPO)
    res = img.run(["python3", "-c", IMPORT_ALL], user=(CONTROLLER_UID, CONTROLLER_UID), readonly=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout == host.stdout
    res = img.run(extra=("controller", "--help"), user=(CONTROLLER_UID, CONTROLLER_UID), readonly=True)
    assert res.returncode == 0, res.stderr
    assert "--lease-namespace" in res.stdout


def test_blixt_loads_libbpf_through_ctypes(unpacked):
    img = unpacked("blixt")
    res = img.run(["python3", "-c", "import ctypes; ctypes.CDLL('libbpf.so.1'); print('ok')"])
    assert (res.returncode, res.stdout) == (0, "ok\n"), res.stderr
    # blixt's own loader binds every libbpf function it calls, then calls one.
    res = img.run(["python3", "-c",
                   "from blixt.node import bpf; print(bpf._call('libbpf_num_possible_cpus')[0])"])
    assert res.returncode == 0, res.stderr
    assert int(res.stdout) >= 1


def test_blixt_tools_run(unpacked):
    img = unpacked("blixt")
    for argv in (["nft", "--version"], ["ip", "-V"], ["conntrack", "--version"]):
        res = img.run(argv)
        assert res.returncode == 0, (argv, res.stderr)
    # In the run's own network namespace: a table, and the query the CLI makes for node addresses.
    res = img.run(["sh", "-c", "nft add table inet blixt_image_test && nft list tables"])
    assert res.returncode == 0, res.stderr
    assert "table inet blixt_image_test" in res.stdout
    res = img.run(["ip", "-j", "-4", "addr", "show", "scope", "global"])
    assert res.returncode == 0 and json.loads(res.stdout) == [], res.stderr


def _without_times(doc):
    if isinstance(doc, dict):
        return {k: _without_times(v) for k, v in doc.items() if k != "lastTransitionTime"}
    if isinstance(doc, list):
        return [_without_times(v) for v in doc]
    return doc


def test_blixt_translate_in_the_image_matches_the_work_tree(unpacked):
    img = unpacked("blixt")
    samples = "\n---\n".join(p.read_text() for p in sorted((paths.REPO / "samples").glob("*.yaml")))
    argv = ["translate", "-f", "-", "--json"]
    host = subprocess.run([str(pathlib.Path(sys.executable).parent / "blixt"), *argv], input=samples,
                          capture_output=True, text=True, check=True)
    res = img.run(extra=tuple(argv), input=samples, user=(CONTROLLER_UID, CONTROLLER_UID), readonly=True)
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout)
    assert got["statuses"] and _without_times(got) == _without_times(json.loads(host.stdout))


def test_blixt_image_is_small(unpacked):
    img = unpacked("blixt")
    r = img.rootfs
    for gone in ("usr/share/man", "usr/share/info", "usr/share/locale/de", "opt/blixt/bin/pip",
                 "usr/share/perl", "usr/lib/python3.11/ensurepip/_bundled",
                 "opt/blixt/lib/python3.11/site-packages/kubernetes/aio"):
        assert not os.path.lexists(r / gone), gone
    assert list((r / "var/lib/apt/lists").glob("*")) == []
    docs = [p for p in (r / "usr/share/doc").rglob("*") if p.is_file() and p.name != "copyright"]
    assert docs == []


# --- bpfman ------------------------------------------------------------------

def test_bpfman_binaries_run(unpacked):
    img = unpacked("bpfman")
    res = img.run(extra=("--help",))
    assert res.returncode == 0, res.stderr
    assert "--csi-support" in res.stdout and "--socket-path" in res.stdout
    res = img.run(["/bpfman-rpc", "--version"])
    assert res.returncode == 0 and paths.BPFMAN_VERSION in res.stdout, res.stderr
    res = img.run(["bpfman", "--help"])  # on PATH too
    assert res.returncode == 0, res.stderr
    for command in ("load", "unload", "list", "image"):
        assert f"\n  {command} " in res.stdout, res.stdout


def test_bpfman_libraries_resolve_in_the_image(unpacked):
    img = unpacked("bpfman")
    for binary in ("/bpfman-rpc", "/bpfman"):
        res = img.run(["/lib64/ld-linux-x86-64.so.2", "--list", binary])
        assert res.returncode == 0, res.stderr
        assert "not found" not in res.stdout
        for lib in ("libssl.so.3", "libcrypto.so.3", "libz.so.1", "libgcc_s.so.1", "libc.so.6"):
            assert f"{lib} => /lib/x86_64-linux-gnu/{lib}" in res.stdout or \
                f"{lib} => /usr/lib/x86_64-linux-gnu/{lib}" in res.stdout, (binary, lib, res.stdout)


def test_bpfman_config_and_ca_certificates(unpacked):
    img = unpacked("bpfman")
    config = tomllib.loads((img.rootfs / "etc/bpfman/bpfman.toml").read_text())
    assert config["signing"]["verify_enabled"] is False
    bundle = (img.rootfs / "etc/ssl/certs/ca-certificates.crt").read_text()
    assert bundle.count("BEGIN CERTIFICATE") > 100


def test_bpfman_rpc_serves_requests_from_the_image(unpacked, tmp_path):
    """The image's entrypoint as a pod would run it (the socket directory
    shared with the host, as the bpfman-sock volume is), answering blixt's
    own client."""
    from blixt.bpfman.client import BpfmanClient
    img = unpacked("bpfman")
    sock_dir = tmp_path / "sock"
    sock_dir.mkdir()
    env = {"RUST_LOG": "info"}
    if memlock_is_capped():
        env["LD_PRELOAD"] = "/usr/local/lib/blixt/memlock_shim.so"
    log_path = tmp_path / "bpfman-rpc.log"
    with open(log_path, "w") as log:
        proc = img.start(env=env, binds=[(sock_dir, "/run/bpfman-sock")], log=log)
    try:
        sock = sock_dir / "bpfman.sock"
        deadline = time.monotonic() + 60
        programs = None
        while time.monotonic() < deadline and proc.poll() is None:
            if sock.exists():
                try:
                    with BpfmanClient(str(sock), timeout=5) as c:
                        programs = c.list()
                    break
                except Exception:
                    pass
            time.sleep(0.5)
        assert programs is not None, f"bpfman-rpc did not answer on {sock}:\n{log_path.read_text()}"
        # Its own state (/run/bpfman in the image): nothing loaded there.
        assert list(programs) == []
    finally:
        stop(proc)


# --- pause -------------------------------------------------------------------

def _elf_program_headers(path: pathlib.Path) -> tuple[int, set[int]]:
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF" and data[4] == 2  # ELF64
    e_type = struct.unpack_from("<H", data, 16)[0]
    phoff = struct.unpack_from("<Q", data, 32)[0]
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    types = {struct.unpack_from("<I", data, phoff + i * phentsize)[0] for i in range(phnum)}
    return e_type, types


def test_pause_is_a_static_executable(unpacked):
    img = unpacked("pause")
    assert sorted(p.name for p in img.rootfs.iterdir()) == ["pause"]
    e_type, types = _elf_program_headers(img.rootfs / "pause")
    PT_DYNAMIC, PT_INTERP = 2, 3
    assert PT_INTERP not in types and PT_DYNAMIC not in types
    assert e_type == 2  # ET_EXEC
    res = img.run(extra=("-v",))
    assert (res.returncode, res.stdout) == (0, f"pause.c v{PAUSE_TAG}\n"), res.stderr


def test_pause_runs_as_pid_1_until_sigterm(unpacked):
    img = unpacked("pause")
    proc = img.start()
    try:
        pid = ns_init_pid(proc.pid)
        time.sleep(1)
        assert proc.poll() is None, proc.communicate()
        status = pathlib.Path(f"/proc/{pid}/status").read_text()
        fields = dict(line.split(":", 1) for line in status.splitlines())
        assert fields["Uid"].split()[0] == "65535" and fields["Gid"].split()[0] == "65535"
        assert fields["NSpid"].split()[-1] == "1"
        assert os.readlink(f"/proc/{pid}/exe").endswith("/pause")
        os.kill(pid, signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Shutting down, got signal: Terminated" in err
    assert "should be the first process" not in err


# --- echo-basic and coredns ----------------------------------------------------

def in_netns(pid: int, code: str, timeout: float = 30) -> str:
    """Run Python code (this interpreter) in the network namespace of pid."""
    res = subprocess.run(["nsenter", "-t", str(pid), "-n", sys.executable, "-c", code],
                         capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, res.stderr
    return res.stdout


def proc_status(pid: int) -> dict[str, str]:
    text = pathlib.Path(f"/proc/{pid}/status").read_text()
    return {k: v.strip() for k, v in (line.split(":", 1) for line in text.splitlines())}


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.kill(ns_init_pid(proc.pid), signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def http_get(url: str) -> str:
    """Python code that prints the body at url, retrying while the server starts."""
    return f"""
import time, urllib.request
for _ in range(100):
    try:
        print(urllib.request.urlopen({url!r}, timeout=2).read().decode())
        break
    except OSError:
        time.sleep(0.1)
else:
    raise SystemExit("nothing answered at {url}")
"""


def test_echo_basic_serves_http_as_nonroot(unpacked):
    img = unpacked("echo-basic")
    assert (img.rootfs / "etc/passwd").read_text().count(":65532:65532:") == 1
    proc = img.start(env={"POD_NAME": "echo-pod", "NAMESPACE": "images-test"})
    try:
        pid = ns_init_pid(proc.pid)
        answer = json.loads(in_netns(pid, http_get("http://127.0.0.1:3000/images-test")))
        assert (answer["pod"], answer["namespace"], answer["path"]) == ("echo-pod", "images-test", "/images-test")
        status = proc_status(pid)
        assert status["Uid"].split()[0] == "65532" and status["Gid"].split()[0] == "65532"
    finally:
        stop(proc)


DNS_QUERY = """
import socket, struct, time
name = b"".join(bytes([len(p)]) + p for p in b"blixt.images.test".split(b".")) + b"\\0"
query = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0) + name + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(0.5)
for _ in range(60):
    s.sendto(query, ("127.0.0.1", 53))
    try:
        reply = s.recv(512)
        break
    except OSError:
        time.sleep(0.25)
else:
    raise SystemExit("coredns did not answer on :53")
ident, flags, qd, an = struct.unpack(">HHHH", reply[:8])
assert ident == 0x1234 and flags & 0xF == 0 and an == 1, (flags, an)
print(socket.inet_ntoa(reply[-4:]))
"""


def test_coredns_answers_on_port_53_as_nonroot(unpacked, tmp_path):
    """As the conformance manifests run it: `-conf /root/Corefile` from a
    volume at /root, as nonroot, binding :53 through the binary's file
    capability (cap_net_bind_service)."""
    img = unpacked("coredns")
    conf = tmp_path / "conf"
    conf.mkdir()
    conf.chmod(0o755)
    (conf / "Corefile").write_text(".:53 {\n    hosts {\n        192.0.2.53 blixt.images.test\n    }\n"
                                   "    errors\n}\n")
    (conf / "Corefile").chmod(0o644)
    proc = img.start(img.args + ["-conf", "/root/Corefile"], binds=[(conf, "/root")])
    try:
        pid = ns_init_pid(proc.pid)
        assert in_netns(pid, DNS_QUERY).strip() == "192.0.2.53"
        status = proc_status(pid)
        assert status["Uid"].split()[0] == "65532"
        CAP_NET_BIND_SERVICE = 10
        assert int(status["CapEff"], 16) == 1 << CAP_NET_BIND_SERVICE
    finally:
        stop(proc)


# --- agnhost -------------------------------------------------------------------

def test_agnhost_netexec_answers(unpacked):
    img = unpacked("agnhost")
    proc = img.start(["/agnhost", "netexec", "--http-port=8080"])
    try:
        pid = ns_init_pid(proc.pid)
        assert in_netns(pid, http_get("http://127.0.0.1:8080/hostname")).strip()
    finally:
        stop(proc)


def test_agnhost_has_the_tools_the_e2e_tests_run(unpacked):
    """The shell commands the Services e2e tests run in agnhost pods
    (test/e2e/network/service.go): nc, curl, wget, seq, nslookup; nsenter
    for the host-exec pods."""
    img = unpacked("agnhost")
    res = img.run(["/bin/sh", "-c", "nc -h 2>&1 | head -1; curl --version | head -1; wget --version | head -1; "
                   "seq 1 2 | tr '\\n' ' '; echo; nslookup -version 2>&1; echo; nsenter --version; ip -V; "
                   "bash --version | head -1; /agnhost --version"])
    assert res.returncode == 0, res.stderr
    out = res.stdout
    for want in ("OpenBSD netcat", "curl ", "GNU Wget", "1 2", "nslookup 9.", "nsenter from util-linux",
                 "ip utility", "GNU bash", f"version {AGNHOST_TAG}"):
        assert want in out, (want, out)
    assert "user-defined-in-image:x:1000:" in (img.rootfs / "etc/passwd").read_text()
    assert "group-defined-in-image:x:50000:user-defined-in-image" in (img.rootfs / "etc/group").read_text()


# --- the tarballs in containerd ------------------------------------------------

CONTAINERD_TOOLS = ("containerd", "ctr", "containerd-shim-runc-v2", "runc")
# What each image prints for a quick run, by containerd and runc, as its image's user.
RUNS = {
    "blixt": (["blixt", "--version"], VERSION),
    "bpfman": (["/bpfman-rpc", "--version"], paths.BPFMAN_VERSION),
    "pause": (["/pause", "-v"], f"pause.c v{PAUSE_TAG}"),
    "coredns": (["/coredns", "-version"], f"CoreDNS-{COREDNS_TAG[1:]}"),
    "agnhost": (["/agnhost", "--version"], f"version {AGNHOST_TAG}"),
}


@pytest.fixture(scope="module")
def ctr(tmp_path_factory):
    """A private containerd (`make deps-cluster`'s build, CRI plugin off, its
    own root, state and socket) and a ctr for its k8s.io namespace."""
    bin_dir = cluster_bin()
    missing = [t for t in CONTAINERD_TOOLS if not (bin_dir / t).exists()]
    if missing:
        pytest.skip(f"{', '.join(missing)} not built in {bin_dir} (make deps-cluster)")
    d = tmp_path_factory.mktemp("containerd")
    sock = d / "containerd.sock"
    (d / "config.toml").write_text(f"""\
version = 3
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.cri.v1.images", "io.containerd.cri.v1.runtime"]
[grpc]
  address = "{sock}"
[ttrpc]
  address = "{sock}.ttrpc"
""")
    # Its shim and runc first on PATH (not a distribution's older containerd).
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    log = open(d / "containerd.log", "w")
    proc = subprocess.Popen([str(bin_dir / "containerd"), "--config", str(d / "config.toml")],
                            stdout=log, stderr=subprocess.STDOUT, env=env)

    def run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([str(bin_dir / "ctr"), "--address", str(sock), "-n", "k8s.io", *args],
                              env=env, capture_output=True, text=True, timeout=timeout)
    try:
        deadline = time.monotonic() + 30
        while run("version", timeout=10).returncode != 0:
            assert proc.poll() is None and time.monotonic() < deadline, (d / "containerd.log").read_text()
            time.sleep(0.2)
        yield run
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def test_containerd_imports_every_tarball_and_runs_it(ctr):
    listed = dict(line.split(" ", 1) for line in (IMAGES / "images.txt").read_text().splitlines())
    for path in sorted(set(listed.values())):
        res = ctr("images", "import", path)
        assert res.returncode == 0, (path, res.stderr)
    refs = set(ctr("images", "ls", "-q").stdout.split())
    assert {normalized(tag) for tag in listed} <= refs
    for name, (argv, expect) in RUNS.items():
        tag = EXPECTED[name]["tags"][0]
        if tag not in listed:
            continue  # a cluster image whose binary is not built
        res = ctr("run", "--rm", normalized(tag), f"images-test-{name}", *argv)
        assert res.returncode == 0, (name, res.stderr)
        assert expect in res.stdout + res.stderr, (name, res.stdout, res.stderr)


# --- bpfman-operator ---------------------------------------------------------

def test_bpfman_operator_runs_and_carries_the_payload_it_reads(unpacked):
    """It reads ./config/bpfman-deployment/*.yaml from its working directory (/)."""
    img = unpacked("bpfman-operator")
    res = img.run(extra=("--version",))
    assert res.returncode == 0 and res.stdout.startswith(f"v{OPERATOR_VERSION} "), (res.stdout, res.stderr)
    payload = img.rootfs / "config" / "bpfman-deployment"
    assert sorted(p.name for p in payload.iterdir()) == ["csidriverinfo.yaml", "daemonset.yaml",
                                                         "metrics-proxy-daemonset.yaml"]
    assert "node-driver-registrar" in (payload / "daemonset.yaml").read_text()


def test_bpfman_agent_and_registrar_run(unpacked):
    agent = unpacked("bpfman-agent")
    res = agent.run(extra=("--version",))
    assert res.returncode == 0 and res.stdout.startswith(f"v{OPERATOR_VERSION} "), (res.stdout, res.stderr)
    res = agent.run(extra=("--help",))
    assert "mount-bpffs" in res.stdout + res.stderr
    registrar = unpacked("csi-node-driver-registrar")
    res = registrar.run(extra=("-version",))
    assert res.returncode == 0 and "pluginregistration.k8s.io/v1" in res.stdout + res.stderr, (res.stdout, res.stderr)
