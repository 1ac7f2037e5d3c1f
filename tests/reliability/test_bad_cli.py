"""The `blixt` command given bad flags, bad files, a kubeconfig pointing
nowhere and a bpfman socket nobody answers on: each run must exit non-zero
(2 for bad usage and bad input files, 1 for what fails at run time, as
`blixt --help` documents) with one line on stderr naming the problem (after
argparse's usage block for usage errors), within a bounded time, and never
with a traceback.

Every run is the real entry point in a subprocess. The only servers are the
test's own: unix sockets in a temporary directory, and a fake kube-apiserver
on loopback that answers GET /version and nothing else. Nothing here needs
root, bpfman or a cluster.

Each run costs an interpreter start (and most of a second importing grpc
and the kubernetes client); one after another they would take well over a
minute. So every run is described up front (cases()), all are started
together a few at a time once per module (the `runs` fixture), and each
test checks its own.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

pytestmark = pytest.mark.unit

# Generous: the slowest case waits about 2 s on purpose; a hang fails here.
RUN_TIMEOUT = 45
# A bound on the runs that wait on purpose (retries, deadlines), far above
# what they need, far below "forever".
BOUNDED = 20
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR) ")
# Every command that talks to bpfman is pointed away from the machine's own
# bpfman-rpc (the default socket may be live): a run that got further than
# it should must not list, let alone remove, anything real. A case's own
# --bpfman-socket comes later on the command line and wins.
NO_SOCKET = "/nonexistent/blixt-test/bpfman.sock"
AGENT = ("agent", "--node", "n1", "--bytecode-file", "/nonexistent/blixt.o", "--interface", "eth0",
         "--bpfman-socket", NO_SOCKET)
QUIET_AGENT = AGENT + ("--log-level=error",)
# Reading /proc/self/mem at offset 0 fails with EIO for every user, root
# included: the lowest page of a process is never mapped.
UNREADABLE = "/proc/self/mem"
IS_ROOT = os.geteuid() == 0
ROOT_READS_MODE_000 = "root reads a mode 000 file anyway; the unreadable case is covered by /proc/self/mem"


# -- running blixt --------------------------------------------------------------

def _env() -> dict:
    # Not in a pod: with no --kubeconfig the commands must not find a cluster.
    return {k: v for k, v in os.environ.items() if not k.startswith("KUBERNETES_")}


def _run(argv: tuple[str, ...], stdin: str = "") -> subprocess.CompletedProcess:
    started = time.monotonic()
    cmd = [sys.executable, "-m", "blixt", *argv]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, input=stdin, timeout=RUN_TIMEOUT, env=_env())
    except subprocess.TimeoutExpired as e:
        # Killed: only this case fails (its exit status is None), not the module.
        out, err = (x.decode(errors="replace") if isinstance(x, bytes) else x or "" for x in (e.stdout, e.stderr))
        res = subprocess.CompletedProcess(cmd, None, out, f"{err}[still running after {RUN_TIMEOUT}s: killed]\n")
    res.elapsed = time.monotonic() - started
    return res


def usage_error(res: subprocess.CompletedProcess, command: str, *names: str) -> str:
    """argparse's shape: exit 2, nothing on stdout, the command's usage
    block, then one `blixt COMMAND: error: ...` line naming `names`."""
    assert res.returncode == 2, res.stderr
    assert res.stdout == ""
    prog = f"blixt {command}" if command else "blixt"
    lines = res.stderr.splitlines()
    assert lines[0].startswith(f"usage: {prog} "), res.stderr
    assert all(line.startswith(" ") for line in lines[1:-1]), res.stderr
    last = lines[-1]
    assert last.startswith(f"{prog}: error: "), res.stderr
    for name in names:
        assert name in last, res.stderr
    return last


def one_line_failure(res: subprocess.CompletedProcess, command: str, *names: str, code: int = 1) -> str:
    """Exit `code`, nothing on stdout, and exactly one stderr line:
    `blixt COMMAND: ...` naming `names`."""
    assert res.returncode == code, res.stderr
    assert res.stdout == ""
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith(f"blixt {command}: "), res.stderr
    for name in names:
        assert name in lines[0], res.stderr
    return lines[0]


# -- servers and files of our own -------------------------------------------------

class _FakeApiServer(http.server.BaseHTTPRequestHandler):
    """GET /version as kube-apiserver answers it, 404 to anything else:
    enough for the commands to get past their wait for the apiserver."""

    def do_GET(self):
        if self.path.split("?")[0] == "/version":
            code, body = 200, {"major": "1", "minor": "35", "gitVersion": "v1.35.0"}
        else:
            code, body = 404, {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404}
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_):
        pass


def write_kubeconfig(path, server: str) -> str:
    path.write_text(
        "apiVersion: v1\nkind: Config\n"
        f"clusters:\n- name: c\n  cluster: {{server: '{server}', insecure-skip-tls-verify: true}}\n"
        "users:\n- name: u\n  user: {token: t}\n"
        "contexts:\n- name: x\n  context: {cluster: c, user: u}\ncurrent-context: x\n")
    return str(path)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Everything the runs point at, alive for the whole module."""
    d = tmp_path_factory.mktemp("bad-cli")
    w = types.SimpleNamespace(dir=d)
    closers = []

    w.plain = d / "plain"  # a regular file: paths through it fail with ENOTDIR, root included
    w.plain.write_text("x: 1\n")
    # A unix socket file nothing listens on (bpfman-rpc died): connect() is refused.
    w.stale = str(d / "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(w.stale)
    s.close()
    # A unix socket that accepts (the kernel's backlog does) and never
    # answers: every call can only end at its deadline.
    w.silent = str(d / "silent.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(w.silent)
    s.listen(64)
    closers.append(s.close)
    # A loopback port that refuses connections and that nothing else can
    # take meanwhile: bound, never listening.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    w.refused = f"https://127.0.0.1:{s.getsockname()[1]}"
    closers.append(s.close)
    # A port someone else listens on.
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen()
    w.taken = f"127.0.0.1:{s.getsockname()[1]}"
    closers.append(s.close)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiServer)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    w.api = f"http://127.0.0.1:{server.server_address[1]}"
    closers += [server.server_close, server.shutdown]

    w.api_kubeconfig = write_kubeconfig(d / "api.kubeconfig", w.api)
    w.refused_kubeconfig = write_kubeconfig(d / "refused.kubeconfig", w.refused)
    for name, (content, _) in {**TRANSLATE_FILES, **WRONG_TYPE_FILES, **KUBECONFIG_FILES}.items():
        (d / name).write_bytes(content if isinstance(content, bytes) else content.encode())
    w.mode000 = d / "mode000.yaml"
    write_kubeconfig(w.mode000, w.refused)
    w.mode000.chmod(0)
    yield w
    for close in reversed(closers):
        close()


# -- the cases ----------------------------------------------------------------------

UNKNOWN_FLAG = {
    "controller": (),
    "agent": AGENT[1:],
    "bpfman-programs": ("--bpfman-socket", NO_SOCKET),
    "dataplane show": ("--node", "n1", "--bpfman-socket", NO_SOCKET),
    "dataplane remove": ("--node", "n1", "--bpfman-socket", NO_SOCKET),
    "translate": ("-f", "-"),
}

# Values checked when parsing, so a typo is refused at once rather than
# after the apiserver and bpfman answered (or never, when the flag is unused).
MALFORMED = [
    (AGENT + ("--cluster-cidr=not-a-cidr",), "--cluster-cidr"),
    (AGENT + ("--node-ip=999.1.1.1",), "--node-ip"),
    (AGENT + ("--healthz-bind=nonsense",), "--healthz-bind"),
    (AGENT + ("--nodeport-addresses=bad",), "--nodeport-addresses"),
    (AGENT + ("--metrics-bind=garbage",), "--metrics-bind"),
    (AGENT + ("--resync=0",), "--resync"),
    (AGENT + ("--apiserver-timeout=-5",), "--apiserver-timeout"),
    (AGENT + ("--bpfman-timeout=nan",), "--bpfman-timeout"),
    (AGENT + ("--priority=0",), "--priority"),
    (AGENT + ("--mark-id-shift=-1",), "--mark-id-shift"),
    (AGENT + ("--mark-id-mask=zz",), "--mark-id-mask"),
    (AGENT + ("--interface=",), "--interface"),
    (("controller", "--metrics-bind=0.0.0.0:99999"), "--metrics-bind"),
    (("bpfman-programs", "--bpfman-socket", NO_SOCKET, "--timeout=0"), "--timeout"),
    (("dataplane", "show", "--node", "n1", "--bpfman-socket", NO_SOCKET, "--timeout=-3"), "--timeout"),
]

# Flags each fine alone; the command refuses the combination (exit 2).
DISAGREE = [
    (("--mark-masquerade=0x10000",), ("--mark-masquerade", "overlap")),
    (("--proxy-services", "--node-ip=10.0.0.1", "--nodeport-addresses=primary,10.0.0.0/8"),
     ("--nodeport-addresses", "primary")),
]

# translate -f FILE: name -> (content, what the error line names besides the path).
TRANSLATE_FILES = {
    "invalid.yaml": ("kind: Gateway\nmetadata: [\n", ("not valid YAML", "line 3")),
    "list.yaml": ("- 1\n- 2\n", ("document 1 is a list",)),
    "values.yaml": ("replicaCount: 2\nimage: {tag: latest}\n", ("document 1", "not a Kubernetes object")),
    "empty.yaml": ("", ("no objects",)),
    "comments.yaml": ("# nothing here\n---\n# nor here\n", ("no objects",)),
    "latin1.yaml": (b"kind: \xe9t\xe9\n", ("not UTF-8",)),
}

# translate -f FILE with an object of the wrong shape, checked (blixt.shapes)
# before the translation, which would otherwise end in a TypeError:
# name -> (content, the error line after `blixt translate: PATH: `).
WRONG_TYPE_FILES = {
    "port-list.yaml": ("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
                       "spec:\n  gatewayClassName: blixt\n  listeners:\n  - {name: tcp, protocol: TCP, port: [80]}\n",
                       "Gateway default/gw: spec.listeners[0].port: expected an integer, got a list"),
    "listener-strings.yaml": ("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: blixt}\n"
                              "spec: {controllerName: gateway.networking.k8s.io/blixt}\n---\n"
                              "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n"
                              "metadata: {name: gw, namespace: web}\n"
                              "spec: {gatewayClassName: blixt, listeners: [tcp, udp]}\n",
                              "Gateway web/gw: spec.listeners[0]: expected a mapping, got a string (and 1 more)"),
    "spec-string.yaml": ("apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: blixt}\n"
                         "spec: gateway.networking.k8s.io/blixt\n",
                         "GatewayClass blixt: spec: expected a mapping, got a string"),
    "spec-list.yaml": ("apiVersion: v1\nkind: Service\nmetadata: {name: svc, namespace: default}\nspec: []\n",
                       "Service default/svc: spec: expected a mapping, got a list"),
    "metadata-string.yaml": ("apiVersion: v1\nkind: Service\nmetadata: x\n",
                             "Service: metadata: expected a mapping, got a string"),
    "ports-mapping.yaml": ("apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {name: s}\n"
                           "addressType: IPv4\nports: {}\n",
                           "EndpointSlice default/s: ports: expected a list, got a mapping"),
    # JSON: true is no port; a later object of the file, in a List.
    "bool-port.json": (json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": "web"},
         "spec": {"ports": [{"port": True}]}}]}),
        "Service web/svc: spec.ports[0].port: expected an integer, got a boolean"),
}

# --kubeconfig FILE, for the controller: name -> (content, what the line names).
KUBECONFIG_FILES = {
    "invalid.kubeconfig": ("clusters: [\n", ("not valid YAML", "line 2")),
    "scalar.kubeconfig": ("just a string\n", ("not a kubeconfig",)),
    "empty.kubeconfig": ("", ("empty",)),
    "nocontext.kubeconfig": ("apiVersion: v1\nkind: Config\nclusters: []\n", ("current-context",)),
}

# Without --node-ip, --proxy-services reads the first --interface's
# addresses with `ip` (unprivileged); this device does not exist.
MISSING_INTERFACE = ("agent", "--node", "n1", "--bytecode-file", "/nonexistent/blixt.o", "--interface",
                     "blixtnodev0", "--bpfman-socket", NO_SOCKET, "--proxy-services", "--log-level=error")

BPFMAN_COMMANDS = {
    "bpfman-programs": ("bpfman-programs", "--bpfman-socket", NO_SOCKET),
    "dataplane show": ("dataplane", "show", "--node", "n1", "--bpfman-socket", NO_SOCKET),
    "dataplane remove": ("dataplane", "remove", "--node", "n1", "--bpfman-socket", NO_SOCKET),
    "agent": QUIET_AGENT,
}
# The commands share the client's checks and retries: a few stand for all.
STALE_SOCKET_COMMANDS = ["bpfman-programs", "dataplane remove"]
THROUGH_A_FILE_COMMANDS = ["bpfman-programs", "dataplane show", "agent"]


def cases(w) -> dict[str, tuple[tuple[str, ...], str]]:
    """name -> (argv, stdin). The runs that wait on purpose come first, so
    that they overlap with the rest."""
    c: dict[str, tuple[str, ...] | tuple[tuple[str, ...], str]] = {}
    quiet_timeout = ("--apiserver-timeout=1", "--log-level=error")
    # Waiting on purpose: apiserver retries, bpfman retries and deadlines.
    c["apiserver refused controller"] = ("controller", "--kubeconfig", w.refused_kubeconfig, *quiet_timeout)
    # 0: one try, no retry.
    c["apiserver refused agent"] = (*QUIET_AGENT, "--bpfman-socket", w.stale, "--kubeconfig",
                                    w.refused_kubeconfig, "--apiserver-timeout=0")
    c["apiserver refused with logs"] = ("controller", "--kubeconfig", w.refused_kubeconfig, "--apiserver-timeout=1")
    for name in STALE_SOCKET_COMMANDS:
        c[f"stale socket {name}"] = (*BPFMAN_COMMANDS[name], "--bpfman-socket", w.stale)
    c["silent socket bpfman-programs"] = (*BPFMAN_COMMANDS["bpfman-programs"], "--bpfman-socket", w.silent,
                                          "--timeout=1")
    c["stale socket agent"] = (*QUIET_AGENT, "--kubeconfig", w.api_kubeconfig, "--bpfman-socket", w.stale)
    c["silent socket agent"] = (*QUIET_AGENT, "--kubeconfig", w.api_kubeconfig, "--bpfman-socket", w.silent,
                                "--bpfman-timeout=1")
    c["metrics port taken"] = ("controller", "--kubeconfig", w.api_kubeconfig, "--metrics-bind", w.taken,
                               "--log-level=error")
    # Usage errors.
    c["frobnicate"] = ("frobnicate",)
    c["dataplane frobnicate"] = ("dataplane", "frobnicate")
    for command, required in UNKNOWN_FLAG.items():
        c[f"unknown flag {command}"] = (*command.split(), *required, "--no-such-flag")
    for argv, _ in MALFORMED:
        c[" ".join(argv)] = argv
    for extra, _ in DISAGREE:
        c[" ".join(extra)] = (*QUIET_AGENT, *extra)
    # translate -f.
    c["translate missing"] = ("translate", "-f", str(w.dir / "missing.yaml"))
    c["translate directory"] = ("translate", "-f", str(w.dir))
    c["translate through a file"] = ("translate", "-f", str(w.plain / "x.yaml"))
    c["translate unreadable"] = ("translate", "-f", UNREADABLE)
    if not IS_ROOT:
        c["translate mode 000"] = ("translate", "-f", str(w.mode000))
    for name in (*TRANSLATE_FILES, *WRONG_TYPE_FILES):
        c[f"translate {name}"] = ("translate", "-f", str(w.dir / name))
    c["translate empty stdin"] = (("translate", "-f", "-"), "")
    # --kubeconfig.
    c["kubeconfig missing"] = ("controller", "--kubeconfig", str(w.dir / "nope"), *quiet_timeout)
    c["kubeconfig unreadable"] = ("controller", "--kubeconfig", UNREADABLE, *quiet_timeout)
    if not IS_ROOT:
        c["kubeconfig mode 000"] = ("controller", "--kubeconfig", str(w.mode000), *quiet_timeout)
    for name in KUBECONFIG_FILES:
        c[f"kubeconfig {name}"] = ("controller", "--kubeconfig", str(w.dir / name), *quiet_timeout)
    c["agent kubeconfig invalid"] = (*QUIET_AGENT, "--bpfman-socket", w.stale, "--kubeconfig",
                                     str(w.dir / "invalid.kubeconfig"), "--apiserver-timeout=1")
    c["no kubeconfig"] = ("controller", "--log-level=error")
    # bpfman socket paths that are no socket.
    for name in THROUGH_A_FILE_COMMANDS:
        c[f"socket through a file {name}"] = (*BPFMAN_COMMANDS[name], "--bpfman-socket", str(w.plain / "bpfman.sock"))
    c["socket is a file"] = (*BPFMAN_COMMANDS["bpfman-programs"], "--bpfman-socket", str(w.plain))
    # The agent's look at the node.
    c["missing interface"] = MISSING_INTERFACE
    return {name: v if isinstance(v[0], tuple) else (v, "") for name, v in c.items()}


@pytest.fixture(scope="module")
def runs(world):
    """name -> the finished run, for every case; started together, four at
    a time (most of each run is the interpreter importing, on any CPU)."""
    todo = cases(world)
    with ThreadPoolExecutor(max_workers=4) as pool:
        futures = {name: pool.submit(_run, argv, stdin) for name, (argv, stdin) in todo.items()}
    return {name: f.result() for name, f in futures.items()}


@pytest.fixture
def run(runs):
    """The run of one case; no run may print a traceback."""
    def get(name: str) -> subprocess.CompletedProcess:
        res = runs[name]
        assert "Traceback" not in res.stdout and "Traceback" not in res.stderr, res.stderr
        return res
    return get


# -- usage errors ---------------------------------------------------------------------

def test_unknown_subcommand(run):
    last = usage_error(run("frobnicate"), "", "frobnicate")
    assert last.startswith("blixt: error: argument COMMAND: invalid choice: 'frobnicate'")


def test_unknown_dataplane_subcommand(run):
    usage_error(run("dataplane frobnicate"), "dataplane", "frobnicate")


@pytest.mark.parametrize("command", UNKNOWN_FLAG)
def test_unknown_flag_is_refused_by_its_subcommand(run, command):
    """The error comes from the subcommand's parser, under its usage, not
    from blixt's top-level one (which shows only `blixt COMMAND ...`)."""
    last = usage_error(run(f"unknown flag {command}"), command, "--no-such-flag")
    assert last == f"blixt {command}: error: unrecognized arguments: --no-such-flag"


@pytest.mark.parametrize("argv, flag", MALFORMED, ids=[f"{a[0]} {a[-1]}" for a, _ in MALFORMED])
def test_malformed_value_is_a_usage_error(run, argv, flag):
    command = " ".join(argv[:2] if argv[0] == "dataplane" else argv[:1])
    last = usage_error(run(" ".join(argv)), command, flag)
    assert last.startswith(f"blixt {command}: error: argument {flag}"), last
    assert "<lambda>" not in last  # argparse names the type function when it fails


@pytest.mark.parametrize("extra, names", DISAGREE, ids=[" ".join(e) for e, _ in DISAGREE])
def test_flags_that_disagree_exit_2_in_one_line(run, extra, names):
    one_line_failure(run(" ".join(extra)), "agent", *names, code=2)


# -- translate -f: unreadable and unusable files ------------------------------------

def test_translate_missing_file(run, world):
    one_line_failure(run("translate missing"), "translate", f"cannot read {world.dir / 'missing.yaml'}",
                     "No such file", code=2)


def test_translate_directory(run, world):
    one_line_failure(run("translate directory"), "translate", f"cannot read {world.dir}", "Is a directory", code=2)


def test_translate_path_through_a_file(run, world):
    one_line_failure(run("translate through a file"), "translate", f"cannot read {world.plain / 'x.yaml'}",
                     "Not a directory", code=2)


def test_translate_file_that_cannot_be_read_even_by_root(run):
    if not os.path.exists(UNREADABLE):
        pytest.skip(f"no {UNREADABLE}: not Linux")
    one_line_failure(run("translate unreadable"), "translate", f"cannot read {UNREADABLE}",
                     "Input/output error", code=2)


def test_translate_file_without_read_permission(run, world):
    if IS_ROOT:
        pytest.skip(ROOT_READS_MODE_000)
    one_line_failure(run("translate mode 000"), "translate", str(world.mode000), "Permission denied", code=2)


@pytest.mark.parametrize("name", TRANSLATE_FILES)
def test_translate_file_that_is_not_kubernetes_objects(run, world, name):
    one_line_failure(run(f"translate {name}"), "translate", f"{world.dir / name}: ", *TRANSLATE_FILES[name][1],
                     code=2)


@pytest.mark.parametrize("name", WRONG_TYPE_FILES)
def test_translate_object_with_a_wrong_type(run, world, name):
    """Refused before the translation, naming the file, the object and the
    field, rather than a TypeError traceback from deep in the translation."""
    line = one_line_failure(run(f"translate {name}"), "translate", code=2)
    assert line == f"blixt translate: {world.dir / name}: {WRONG_TYPE_FILES[name][1]}"


def test_translate_empty_stdin(run):
    one_line_failure(run("translate empty stdin"), "translate", "stdin", "no objects", code=2)


# -- --kubeconfig: missing, unreadable, not a kubeconfig, pointing nowhere ----------

def test_kubeconfig_missing(run, world):
    one_line_failure(run("kubeconfig missing"), "controller", f"kubeconfig {world.dir / 'nope'}", "does not exist")


def test_kubeconfig_that_cannot_be_read_even_by_root(run):
    if not os.path.exists(UNREADABLE):
        pytest.skip(f"no {UNREADABLE}: not Linux")
    one_line_failure(run("kubeconfig unreadable"), "controller", f"kubeconfig {UNREADABLE}", "Input/output error")


def test_kubeconfig_without_read_permission(run, world):
    if IS_ROOT:
        pytest.skip(ROOT_READS_MODE_000)
    one_line_failure(run("kubeconfig mode 000"), "controller", str(world.mode000), "Permission denied")


@pytest.mark.parametrize("name", KUBECONFIG_FILES)
def test_kubeconfig_that_is_not_a_kubeconfig(run, world, name):
    one_line_failure(run(f"kubeconfig {name}"), "controller", f"kubeconfig {world.dir / name}",
                     *KUBECONFIG_FILES[name][1])


def test_agent_kubeconfig_not_yaml(run, world):
    """The agent checks the kubeconfig as the controller does (its bpfman
    socket exists, so it gets that far)."""
    one_line_failure(run("agent kubeconfig invalid"), "agent", str(world.dir / "invalid.kubeconfig"),
                     "not valid YAML", "line 2")


def test_no_kubeconfig_outside_a_cluster(run):
    one_line_failure(run("no kubeconfig"), "controller", "--kubeconfig", "KUBERNETES_SERVICE_HOST")


@pytest.mark.parametrize("command", ["controller", "agent"])
def test_apiserver_nobody_listens_on(run, world, command):
    """Bounded by --apiserver-timeout (1 s, and 0 for the agent: a single
    try), then one line naming the server."""
    res = run(f"apiserver refused {command}")
    one_line_failure(res, command, f"kube-apiserver at {world.refused} unreachable for", "refused")
    assert res.elapsed < BOUNDED


def test_apiserver_retries_are_log_lines_then_one_error(run, world):
    """At the default log level each retry is a WARNING log record; the
    failure itself is still the one last line."""
    res = run("apiserver refused with logs")
    assert res.returncode == 1 and res.stdout == ""
    *logs, last = res.stderr.splitlines()
    assert logs and all(LOG_LINE.match(line) for line in logs), res.stderr
    assert last.startswith(f"blixt controller: kube-apiserver at {world.refused} unreachable for 1s"), res.stderr


def test_controller_metrics_port_taken(run, world):
    """The metrics server binds once the apiserver (ours) answered; a port
    in use is one line naming the flag, not the HTTP server's traceback."""
    one_line_failure(run("metrics port taken"), "controller", f"--metrics-bind {world.taken}",
                     "Address already in use")


# -- the bpfman socket -----------------------------------------------------------------

@pytest.mark.parametrize("command", THROUGH_A_FILE_COMMANDS)
def test_bpfman_socket_path_through_a_file(run, world, command):
    """stat() fails with ENOTDIR, not ENOENT (root included)."""
    one_line_failure(run(f"socket through a file {command}"), command, f"no bpfman socket at "
                     f"{world.plain / 'bpfman.sock'}", "Not a directory")


def test_bpfman_socket_that_is_not_a_socket(run, world):
    one_line_failure(run("socket is a file"), "bpfman-programs", f"no bpfman socket at {world.plain}",
                     "not a socket")


@pytest.mark.parametrize("command", STALE_SOCKET_COMMANDS)
def test_bpfman_socket_nothing_listens_on(run, world, command):
    """Refused connections are retried a few times (about 2 s), then one line."""
    res = run(f"stale socket {command}")
    one_line_failure(res, command, world.stale, "UNAVAILABLE")
    assert res.elapsed < BOUNDED


def test_bpfman_socket_that_never_answers(run, world):
    """A call that ends at its deadline: gRPC's message names no socket;
    blixt's line does."""
    res = run("silent socket bpfman-programs")
    one_line_failure(res, "bpfman-programs", "DEADLINE_EXCEEDED", f"bpfman socket {world.silent}")
    assert res.elapsed < BOUNDED


def test_agent_bpfman_socket_nothing_listens_on(run, world):
    """The agent gets past the apiserver (ours), then bpfman refuses: one
    line naming the socket, in bounded time."""
    res = run("stale socket agent")
    one_line_failure(res, "agent", world.stale, "UNAVAILABLE")
    assert res.elapsed < BOUNDED


def test_agent_bpfman_socket_that_never_answers(run, world):
    res = run("silent socket agent")
    one_line_failure(res, "agent", "DEADLINE_EXCEEDED", f"bpfman socket {world.silent}")
    assert res.elapsed < BOUNDED


# -- the agent's own look at the node --------------------------------------------------

def test_agent_primary_ips_of_a_missing_interface(run):
    """A device that does not exist is one line with ip's own words, not a
    CalledProcessError traceback."""
    one_line_failure(run("missing interface"), "agent", "--node-ip", "blixtnodev0", "does not exist")
