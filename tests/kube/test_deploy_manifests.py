"""The kustomize manifests in deploy/kustomize: rendered with kubectl's
kustomize, checked against what the processes need (RBAC, the flags `blixt`
accepts, probes, volumes), authorized and applied (server-side dry run) on the
real apiserver."""

from __future__ import annotations

import base64
import itertools
import json
import os
import pathlib
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
import yaml

from harness.proc import wait_for
from harness import paths
from harness.proc import free_port
from blixt.bpfman import client as bpfman_client
from blixt.cli import build_parser
from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig

pytestmark = pytest.mark.kube

DEPLOY = paths.REPO / "deploy" / "kustomize"
BASE = DEPLOY / "base"
BPFMAN = DEPLOY / "overlays" / "bpfman"
OPERATOR = DEPLOY / "overlays" / "bpfman-operator"
NS = "blixt-system"
GW = "gateway.networking.k8s.io"
FIELD_MANAGER = "blixt-deploy-manifests-test"

# What the processes need (controller/blixt/kube/resources.py): reads of every
# watched type, writes of the status of the four kinds the controller serves,
# and the leader-election Lease.
READ = ("get", "list", "watch")
WATCHED = [(GW, r) for r in ("gatewayclasses", "gateways", "tcproutes", "udproutes", "referencegrants")] + \
          [("", r) for r in ("services", "namespaces", "configmaps")] + [("discovery.k8s.io", "endpointslices")]
STATUS = [(GW, f"{r}/status") for r in ("gatewayclasses", "gateways", "tcproutes", "udproutes")]
ANY = "*"  # a cluster-wide grant, or a rule without resourceNames

READ_GRANTS = {(ANY, g, r, v, ANY) for (g, r), v in itertools.product(WATCHED, READ)}
# The agent writes Events on what its node's maps have no room for.
AGENT_GRANTS = READ_GRANTS | {(ANY, "", "events", "create", ANY)}
# With --maps-dir (overlays/bpfman-operator) it follows bpfman-operator's per-node state.
OPERATOR_AGENT_GRANTS = {(ANY, "bpfman.io", "clusterbpfapplicationstates", v, ANY) for v in READ}
STATUS_WRITE = ("get", "patch", "update")
CONTROLLER_GRANTS = READ_GRANTS | {(ANY, g, r, v, ANY) for (g, r), v in itertools.product(STATUS, STATUS_WRITE)} | {
    (NS, "coordination.k8s.io", "leases", "create", ANY),
    (NS, "coordination.k8s.io", "leases", "get", "blixt-controller"),
    (NS, "coordination.k8s.io", "leases", "update", "blixt-controller"),
}
ACCOUNTS = {"blixt-controller": CONTROLLER_GRANTS, "blixt-agent": AGENT_GRANTS}


# -- rendering -------------------------------------------------------------

@pytest.fixture(scope="module")
def render(kube):
    """render(directory) -> the documents `kubectl kustomize` emits (cached)."""
    cache: dict[str, list[dict]] = {}

    def render_(path: pathlib.Path) -> list[dict]:
        key = str(path)
        if key not in cache:
            out = kube.kubectl("kustomize", key).stdout
            cache[key] = [d for d in yaml.safe_load_all(out) if d]
        return cache[key]
    return render_


def one(docs: list[dict], kind: str, name: str) -> dict:
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"] == name]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} rendered"
    return found[0]


def ident(d: dict) -> tuple[str, str | None, str]:
    return d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]


def config_map(docs: list[dict], generated: str) -> dict:
    """The generated ConfigMap (name with kustomize's hash suffix)."""
    found = [d for d in docs if d["kind"] == "ConfigMap"
             and re.fullmatch(rf"{generated}-[a-z0-9]{{10}}", d["metadata"]["name"])]
    assert len(found) == 1, f"{generated}: {[d['metadata']['name'] for d in docs if d['kind'] == 'ConfigMap']}"
    return found[0]


def container(workload: dict, name: str, init: bool = False) -> dict:
    spec = workload["spec"]["template"]["spec"]
    found = [c for c in spec.get("initContainers" if init else "containers", []) if c["name"] == name]
    assert len(found) == 1, f"container {name} in {workload['metadata']['name']}"
    return found[0]


def expanded_argv(docs: list[dict], workload: dict, c: dict, node: str = "node-a") -> list[str]:
    """command + args with $(VAR) expanded as the kubelet would."""
    ns = workload["metadata"]["namespace"]
    env: dict[str, str] = {}
    for e in c.get("env", []):
        if "value" in e:
            env[e["name"]] = e["value"]
            continue
        src = e["valueFrom"]
        if "fieldRef" in src:
            assert src["fieldRef"]["fieldPath"] == "spec.nodeName", e
            env[e["name"]] = node
        elif "configMapKeyRef" in src:
            ref = src["configMapKeyRef"]
            cm = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref["name"]
                  and d["metadata"].get("namespace") == ns]
            assert cm, f"{e['name']}: ConfigMap {ns}/{ref['name']} is not in the rendered manifests"
            env[e["name"]] = cm[0]["data"][ref["key"]]
        else:
            raise AssertionError(f"unexpected env source {e}")

    def sub(text: str) -> str:
        out = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), text)
        assert "$(" not in out, f"unresolved variable in {text!r}"
        return out
    return [sub(a) for a in c.get("command", []) + c.get("args", [])]


def parse_cli(argv: list[str]):
    """The argv through blixt's own parser: every flag must exist and parse."""
    assert argv[0] == "blixt", argv
    try:
        return build_parser().parse_args(argv[1:])
    except SystemExit as e:
        pytest.fail(f"blixt refuses {argv} (exit {e.code})")


# -- base ------------------------------------------------------------------

def test_base_renders_exactly_these_objects(render):
    docs = render(BASE)
    cm = config_map(docs, "blixt-agent-config")["metadata"]["name"]
    assert sorted(map(ident, docs), key=str) == sorted([
        ("Namespace", None, NS),
        ("ServiceAccount", NS, "blixt-controller"), ("ServiceAccount", NS, "blixt-agent"),
        ("ClusterRole", None, "blixt-controller"), ("ClusterRole", None, "blixt-agent"),
        ("ClusterRoleBinding", None, "blixt-controller"), ("ClusterRoleBinding", None, "blixt-agent"),
        ("Role", NS, "blixt-controller-leader-election"), ("RoleBinding", NS, "blixt-controller-leader-election"),
        ("ConfigMap", NS, cm),
        ("Deployment", NS, "blixt-controller"), ("PodDisruptionBudget", NS, "blixt-controller"),
        ("DaemonSet", NS, "blixt-agent"),
    ], key=str)
    for d in docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "blixt", ident(d)


def grants(docs: list[dict], account: str) -> set[tuple]:
    """What the rendered bindings give system:serviceaccount:blixt-system:ACCOUNT,
    as (namespace or *, group, resource, verb, resourceName or *)."""
    roles = {(d["kind"], d["metadata"].get("namespace"), d["metadata"]["name"]): d
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    out: set[tuple] = set()
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == account and s.get("namespace") == NS
                   for s in b["subjects"]):
            continue
        ref = b["roleRef"]
        assert ref["apiGroup"] == "rbac.authorization.k8s.io"
        bns = b["metadata"].get("namespace")
        role = roles.get((ref["kind"], bns if ref["kind"] == "Role" else None, ref["name"]))
        assert role is not None, f"{b['kind']} {b['metadata']['name']} refers to a role not rendered: {ref}"
        scope = bns if b["kind"] == "RoleBinding" else ANY
        for rule in role["rules"]:
            assert "nonResourceURLs" not in rule, rule
            for g, r, v in itertools.product(rule["apiGroups"], rule["resources"], rule["verbs"]):
                for name in rule.get("resourceNames") or [ANY]:
                    out.add((scope, g, r, v, name))
    return out


@pytest.mark.parametrize("overlay", [BASE, BPFMAN, OPERATOR], ids=["base", "bpfman", "bpfman-operator"])
@pytest.mark.parametrize("account", sorted(ACCOUNTS))
def test_rbac_grants_exactly_what_the_process_needs(render, overlay, account):
    docs = render(overlay)
    got = grants(docs, account)
    want = ACCOUNTS[account] | (OPERATOR_AGENT_GRANTS if overlay == OPERATOR and account == "blixt-agent" else set())
    assert got == want, f"missing: {sorted(want - got)}; extra: {sorted(got - want)}"
    # Each workload runs as its own account.
    workload = one(docs, "Deployment" if account == "blixt-controller" else "DaemonSet", account)
    assert workload["spec"]["template"]["spec"]["serviceAccountName"] == account


def test_controller_deployment(render):
    docs = render(BASE)
    dep = one(docs, "Deployment", "blixt-controller")
    spec = dep["spec"]["template"]["spec"]
    assert dep["spec"]["replicas"] == 2
    c = container(dep, "controller")
    assert c["image"] == "blixt:0.1.0"
    args = parse_cli(expanded_argv(docs, dep, c))
    assert args.command == "controller"
    assert args.lease_namespace == NS
    # The Lease the Role lets it get and update.
    role = one(docs, "Role", "blixt-controller-leader-election")
    assert [args.lease_name] == [n for r in role["rules"] for n in r.get("resourceNames", [])]
    _check_metrics_and_probes(c, args.metrics_bind)
    assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
    assert c["resources"]["limits"]["memory"]
    pod_sc, sc = spec["securityContext"], c["securityContext"]
    assert pod_sc["runAsNonRoot"] is True and pod_sc["runAsUser"] != 0
    assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert not spec.get("hostNetwork")
    pdb = one(docs, "PodDisruptionBudget", "blixt-controller")
    assert pdb["spec"]["selector"] == dep["spec"]["selector"]


def _check_metrics_and_probes(c: dict, bind: str) -> None:
    port = int(bind.rsplit(":", 1)[1])
    assert [p for p in c["ports"] if p["name"] == "metrics"] == [
        {"name": "metrics", "containerPort": port, "protocol": "TCP"}]
    for probe, path in (("startupProbe", "/healthz"), ("livenessProbe", "/healthz"), ("readinessProbe", "/readyz")):
        assert c[probe]["httpGet"] == {"path": path, "port": "metrics"}, probe


def test_agent_daemonset(render):
    docs = render(BASE)
    ds = one(docs, "DaemonSet", "blixt-agent")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    assert spec["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert {"operator": "Exists"} in spec["tolerations"]
    c = container(ds, "agent")
    assert c["image"] == "blixt:0.1.0"
    assert c["securityContext"]["privileged"] is True
    assert {"name": "NODE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}} in c["env"]
    raw = c["args"]
    for flag in ("--node=$(NODE_NAME)", "--bytecode-image=$(BLIXT_BYTECODE_IMAGE)", "--interface=$(BLIXT_INTERFACE)"):
        assert flag in raw

    cm = config_map(docs, "blixt-agent-config")
    args = parse_cli(expanded_argv(docs, ds, c, node="node-a"))
    assert args.command == "agent" and args.node == "node-a"
    assert args.bytecode_image == cm["data"]["BLIXT_BYTECODE_IMAGE"]
    iface = cm["data"]["BLIXT_INTERFACE"]
    assert [a.iface for a in args.interface] == [iface]
    assert args.attach_mode == "tcx"
    _check_metrics_and_probes(c, args.metrics_bind)

    # bpfman's socket directory and its bpffs, each at its host path: bpfman
    # reports host paths (the socket, the maps' pin directory).
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    sock_dir = os.path.dirname(args.bpfman_socket)
    for host_path in (sock_dir, "/run/bpfman/fs"):
        m = mounts.get(host_path)
        assert m, f"{host_path} is not mounted in the agent: {sorted(mounts)}"
        assert volumes[m["name"]]["hostPath"]["path"] == host_path
        assert m["mountPropagation"] == "HostToContainer"
        assert not m.get("readOnly")


def test_base_is_accepted_by_the_apiserver(kube, render, blixt_system):
    dry_run(kube, render(BASE))


def test_rbac_authorizes_exactly_that_on_the_apiserver(kube, rbac_applied):
    """The real RBAC authorizer, asked about the granted and a ring of
    neighbouring permissions, allows exactly what the grants list."""
    questions = []
    gw = ["gatewayclasses", "gateways", "tcproutes", "udproutes", "referencegrants", "httproutes", "grpcroutes"]
    resources = [(GW, r, s) for r in gw for s in ("", "status")] + \
        [("", r, "") for r in ("services", "namespaces", "configmaps", "secrets", "pods", "nodes", "endpoints",
                               "events")] + \
        [("", "services", "status"), ("discovery.k8s.io", "endpointslices", "")]
    cluster_scoped = {"gatewayclasses", "namespaces", "nodes"}
    verbs = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
    for account in ACCOUNTS:
        for (g, r, s), v in itertools.product(resources, verbs):
            questions.append((account, None if r in cluster_scoped else "default", g, r, s, v, ""))
        for ns, name, v in itertools.product((NS, "default"), ("blixt-controller", "other", ""), verbs):
            questions.append((account, ns, "coordination.k8s.io", "leases", "", v, name))
    reviews = {"apiVersion": "v1", "kind": "List", "items": [{
        "apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
        "spec": {"user": f"system:serviceaccount:{NS}:{account}",
                 "groups": ["system:serviceaccounts", f"system:serviceaccounts:{NS}", "system:authenticated"],
                 "resourceAttributes": {k: v for k, v in (("namespace", ns), ("group", g), ("resource", r),
                                                          ("subresource", s), ("verb", v), ("name", name)) if v}}}
        for account, ns, g, r, s, v, name in questions]}
    out = kube.kubectl("create", "-o", "json", "-f", "-", input=yaml.safe_dump(reviews)).stdout
    answers = json_documents(out)  # kubectl prints one object after another
    assert len(answers) == len(questions)
    wrong = []
    for (account, ns, g, r, s, v, name), a in zip(questions, answers):
        res = f"{r}/{s}" if s else r
        expected = any(scope in (ANY, ns) and gg == g and rr == res and vv == v and nn in (ANY, name)
                       for scope, gg, rr, vv, nn in ACCOUNTS[account])
        if a["status"]["allowed"] != expected:
            wrong.append(f"{account}: {v} {g or 'core'}/{res} ns={ns} name={name!r}: "
                         f"allowed={a['status']['allowed']}, expected {expected}")
    assert not wrong, "\n".join(wrong)
    # And the questions reached every grant.
    for account, granted in ACCOUNTS.items():
        for scope, gg, rr, vv, nn in granted:
            assert any(acc == account and scope in (ANY, ns) and (f"{r}/{s}" if s else r) == rr and g == gg
                       and v == vv and nn in (ANY, name) and a["status"]["allowed"]
                       for (acc, ns, g, r, s, v, name), a in zip(questions, answers)), (account, scope, gg, rr, vv, nn)


def test_the_controller_runs_as_deployed_with_only_its_rbac(kube, render, rbac_applied, tmp_path):
    """`blixt controller` with the Deployment's command line, authenticated as
    its ServiceAccount (a token from the TokenRequest API): it syncs its
    cache, takes the Lease and writes a GatewayClass's status, and is never
    refused. Only the connection flags and, so that it acts on this test's
    objects alone, the controller name are added."""
    docs = render(BASE)
    dep = one(docs, "Deployment", "blixt-controller")
    token = kube.kubectl("create", "token", "blixt-controller", "-n", NS, "--duration=1h").stdout.strip()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "sa",
        "clusters": [{"name": "test", "cluster": {"server": kube.server, "certificate-authority": str(kube.ca_cert)}}],
        "users": [{"name": "sa", "user": {"token": token}}],
        "contexts": [{"name": "sa", "context": {"cluster": "test", "user": "sa"}}]}))
    suffix = os.urandom(4).hex()
    controller_name = f"example.com/blixt-deploy-test-{suffix}"
    port = free_port()
    argv = expanded_argv(docs, dep, container(dep, "controller")) + [
        f"--kubeconfig={kubeconfig}", f"--metrics-bind=127.0.0.1:{port}",
        f"--controller-name={controller_name}", "--apiserver-timeout=20"]
    args = parse_cli(argv)

    # samples/00-gatewayclass.yaml, renamed: the class and its address pool.
    sample = [d for d in yaml.safe_load_all((paths.REPO / "samples" / "00-gatewayclass.yaml").read_text()) if d]
    pool = next(d for d in sample if d["kind"] == "ConfigMap")
    gwc = next(d for d in sample if d["kind"] == "GatewayClass")
    assert pool["metadata"]["namespace"] == NS
    pool["metadata"]["name"] = gwc["spec"]["parametersRef"]["name"] = f"deploy-test-pool-{suffix}"
    gwc["metadata"]["name"] = f"deploy-test-{suffix}"
    gwc["spec"]["controllerName"] = controller_name
    objects = yaml.safe_dump_all([pool, gwc])
    kube.kubectl("create", "-f", "-", input=objects)
    log = tmp_path / "controller.log"
    with open(log, "w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "blixt", *argv[1:]], stdout=out, stderr=subprocess.STDOUT)
    try:
        def ready() -> bool:
            assert proc.poll() is None, log.read_text()
            try:
                return urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2).status == 200
            except OSError:
                return False
        wait_for(ready, 30, "the controller's /readyz")

        def accepted():
            got = json.loads(kube.kubectl("get", "gatewayclass", gwc["metadata"]["name"], "-o", "json").stdout)
            conds = {c["type"]: c for c in (got.get("status") or {}).get("conditions", [])}
            return conds.get("Accepted", {}).get("reason") == "Accepted" and conds["Accepted"]["status"] == "True"
        wait_for(accepted, 30, "the GatewayClass's Accepted condition, written by the controller")

        lease = json.loads(kube.kubectl("get", "lease", args.lease_name, "-n", args.lease_namespace,
                                        "-o", "json").stdout)
        assert lease["spec"]["holderIdentity"], lease
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=objects)
        kube.kubectl("delete", "lease", args.lease_name, "-n", args.lease_namespace, "--ignore-not-found")
    text = log.read_text()
    assert "403" not in text and "forbidden" not in text.lower(), text


def test_controller_meets_the_restricted_pod_security_level(kube, render, scratch_namespace):
    """Pod Security Admission, asked to warn at `restricted`, has nothing to
    say about the controller's pods; it does about the agent's (as it must:
    privileged, host network, hostPath), which shows the check is live."""
    ns = scratch_namespace({"pod-security.kubernetes.io/warn": "restricted"})
    docs = render(BASE)
    for kind, name, quiet in (("Deployment", "blixt-controller", True), ("DaemonSet", "blixt-agent", False)):
        obj = yaml.safe_load(yaml.safe_dump(one(docs, kind, name)))
        obj["metadata"]["namespace"] = ns
        r = kube.kubectl("apply", "--server-side", "--dry-run=server", f"--field-manager={FIELD_MANAGER}",
                         "-f", "-", input=yaml.safe_dump(obj))
        warned = "would violate PodSecurity" in r.stderr
        assert warned != quiet, f"{kind}/{name}: {r.stderr}"
        if kind == "DaemonSet":
            for what in ("privileged", "hostNetwork", "hostPath"):
                assert what in r.stderr, r.stderr


# -- overlays --------------------------------------------------------------

def _bpfman_objects(docs: list[dict]) -> list[dict]:
    return [d for d in docs if d["metadata"].get("namespace") == "bpfman"
            or (d["kind"] == "Namespace" and d["metadata"]["name"] == "bpfman")]


def test_bpfman_overlay_is_the_base_plus_the_wait_for_bpfman(render):
    """Besides the bpfman DaemonSet (and its namespace), the overlay is the
    base with one init container in the agent's pods."""
    base, overlay = render(BASE), render(BPFMAN)
    assert sorted(ident(d) for d in _bpfman_objects(overlay)) == [
        ("DaemonSet", "bpfman", "bpfman"), ("Namespace", None, "bpfman")]
    overlay = [d for d in overlay if d not in _bpfman_objects(overlay)]
    assert [ident(d) for d in overlay] == [ident(d) for d in base]
    for b, o in zip(base, overlay):
        if b["kind"] != "DaemonSet":
            assert o == b, ident(o)
    ds = one(overlay, "DaemonSet", "blixt-agent")
    init = container(ds, "wait-for-bpfman", init=True)
    without = yaml.safe_load(yaml.safe_dump(ds))
    del without["spec"]["template"]["spec"]["initContainers"]
    assert without == one(base, "DaemonSet", "blixt-agent")

    agent = parse_cli(expanded_argv(overlay, ds, container(ds, "agent")))
    env = {e["name"]: e["value"] for e in init["env"]}
    assert env["BPFMAN_SOCKET"] == agent.bpfman_socket
    assert [m["mountPath"] for m in init["volumeMounts"]] == [os.path.dirname(agent.bpfman_socket)]
    assert init["image"] == container(ds, "agent")["image"]


def test_the_bpfman_daemonset_serves_what_the_agent_uses(render):
    """bpfman-rpc's socket is where the agent dials, its /run/bpfman (the
    bpffs the agent opens maps in) reaches the host (Bidirectional), it runs
    the image `make images` builds, and it trusts the optional registry CA."""
    docs = render(BPFMAN)
    agent_ds = one(docs, "DaemonSet", "blixt-agent")
    agent = parse_cli(expanded_argv(docs, agent_ds, container(agent_ds, "agent")))
    ds = one(docs, "DaemonSet", "bpfman")
    spec = ds["spec"]["template"]["spec"]
    assert spec["hostNetwork"] is True
    c = container(ds, "bpfman")
    assert c["image"] == "bpfman:0.6.0"
    assert f"--socket-path={agent.bpfman_socket}" in c["args"] and "--timeout=0" in c["args"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    sock_dir = os.path.dirname(agent.bpfman_socket)
    assert volumes[mounts[sock_dir]["name"]]["hostPath"]["path"] == sock_dir
    assert mounts["/run/bpfman"]["mountPropagation"] == "Bidirectional"
    assert volumes[mounts["/run/bpfman"]["name"]]["hostPath"]["path"] == "/run/bpfman"
    agent_fs = {m["mountPath"] for m in container(agent_ds, "agent")["volumeMounts"]}
    assert "/run/bpfman/fs" in agent_fs
    env = {e["name"]: e["value"] for e in c["env"]}
    assert env["SSL_CERT_FILE"] == "/ca/ca-certificates.crt"
    assert volumes["registry-ca"]["secret"] == {"secretName": "registry-ca", "optional": True}
    init = container(ds, "ca-bundle", init=True)
    assert init["image"] == container(agent_ds, "agent")["image"]


def test_the_ca_bundle_is_debians_plus_the_registry_ca(render, tmp_path):
    """The bpfman pod's init program, run here with its paths moved: the
    system bundle, then each file of the Secret; no Secret, no extra."""
    init = container(one(render(BPFMAN), "DaemonSet", "bpfman"), "ca-bundle", init=True)
    script = init["command"][2]
    system = tmp_path / "system.crt"
    system.write_text("SYSTEM\n")
    ca, extra = tmp_path / "ca", tmp_path / "registry-ca"
    ca.mkdir()
    extra.mkdir()
    script = (script.replace("/etc/ssl/certs/ca-certificates.crt", str(system))
              .replace("/registry-ca/", f"{extra}/").replace("/ca/", f"{ca}/"))
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)
    assert (ca / "ca-certificates.crt").read_text() == "SYSTEM\n"
    (extra / "ca.crt").write_text("REGISTRY\n")
    subprocess.run(["sh", "-c", script], check=True, capture_output=True)
    assert (ca / "ca-certificates.crt").read_text() == "SYSTEM\nREGISTRY\n"


def test_the_wait_for_bpfman_waits_for_a_listening_socket(render, tmp_path):
    """The init container's program, run here: it keeps waiting while the
    socket is missing, and while it exists with nobody listening; it ends as
    soon as something accepts connections on it."""
    init = container(one(render(BPFMAN), "DaemonSet", "blixt-agent"), "wait-for-bpfman", init=True)
    assert init["command"][:2] == ["python3", "-c"]
    path = str(tmp_path / "bpfman.sock")
    proc = subprocess.Popen([sys.executable, "-c", init["command"][2]], env={**os.environ, "BPFMAN_SOCKET": path},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        time.sleep(1)
        assert proc.poll() is None, proc.stdout.read()
        server.bind(path)  # the socket exists, nobody listens yet
        time.sleep(2.5)
        assert proc.poll() is None, proc.stdout.read()
        server.listen()
        assert proc.wait(timeout=10) == 0
        out = proc.stdout.read()
        assert "waiting for bpfman-rpc" in out and "accepts connections" in out, out
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.close()


def test_bpfman_overlay_is_accepted_by_the_apiserver(kube, render, blixt_system):
    existed = kube.kubectl("get", "namespace", "bpfman", check=False).returncode == 0
    if not existed:
        kube.kubectl("create", "namespace", "bpfman")
    try:
        dry_run(kube, render(BPFMAN))
    finally:
        if not existed:
            _finalize_namespace(kube, "bpfman")


def test_operator_overlay_loads_blixt_tcx_and_the_agent_uses_its_maps(render):
    docs = render(OPERATOR)
    base = render(BASE)
    apps = [d for d in docs if d["kind"] == "ClusterBpfApplication"]
    assert len(apps) == 1
    app = apps[0]
    assert app["apiVersion"] == "bpfman.io/v1alpha1"
    assert "namespace" not in app["metadata"]
    spec = app["spec"]
    assert spec["nodeSelector"] == {}

    ds = one(docs, "DaemonSet", "blixt-agent")
    c = container(ds, "agent")
    agent = parse_cli(expanded_argv(docs, ds, c))
    # The agent never talks to bpfman: no socket, no bpffs of bpfman's, no
    # bytecode or interface of its own; it follows the application.
    assert agent.maps_dir == "/run/blixt/maps" and agent.bytecode_image is None and agent.interface == []
    assert agent.bpf_application == app["metadata"]["name"]
    assert {m["mountPath"] for m in c["volumeMounts"]} == {"/run/blixt/maps", "/tmp"}
    assert not [e for e in c["env"] if e["name"].startswith("BLIXT_")]
    _check_metrics_and_probes(c, agent.metrics_bind)
    # What the bpfman overlay's agent would load, where it would attach it.
    cm = config_map(base, "blixt-agent-config")
    # Pulled as the bpfman overlay's agent pulls it (Kubernetes' rule: Always for a moving :latest).
    url = cm["data"]["BLIXT_BYTECODE_IMAGE"]
    policy = "Always" if bpfman_client.default_pull_policy(url) == bpfman_client.PULL_ALWAYS else "IfNotPresent"
    assert spec["byteCode"] == {"image": {"url": url, "imagePullPolicy": policy}}
    (program,) = spec["programs"]
    assert program["name"] == "blixt_tcx" and program["type"] == "TCX"
    assert set(program) == {"name", "type", "tcx"}
    links = program["tcx"]["links"]
    assert [(tuple(link["interfaceSelector"]["interfaces"]), link["direction"].lower(), link["priority"])
            for link in links] == [((cm["data"]["BLIXT_INTERFACE"],), "ingress", agent.priority)]
    # The same skb->mark layout as the agent's flags (it refuses to run otherwise).
    marks = MarkConfig(agent.mark_id_shift, agent.mark_id_mask, agent.mark_masquerade, agent.mark_reject)
    assert base64.b64decode(spec["globalData"]["blixt_cfg"]) == bytes(marks.config())

    # The maps, through bpfman's CSI driver, named after the application.
    volumes = {v["name"]: v for v in ds["spec"]["template"]["spec"]["volumes"]}
    assert set(volumes) == {"blixt-maps", "tmp"}
    csi = volumes["blixt-maps"]["csi"]
    assert csi["driver"] == "csi.bpfman.io"
    assert csi["volumeAttributes"]["csi.bpfman.io/program"] == app["metadata"]["name"]
    assert csi["volumeAttributes"]["csi.bpfman.io/maps"].split(",") == list(layout.MAPS)

    # Everything else is the base, plus the agent's read of the application states.
    extra = {"ClusterBpfApplication", "DaemonSet"}
    rest = [d for d in docs if d["kind"] not in extra and not d["metadata"]["name"].endswith("-bpfman-operator")]
    assert rest == [d for d in base if d["kind"] != "DaemonSet"]


def test_operator_overlay_without_the_application_is_accepted_by_the_apiserver(kube, render, blixt_system):
    """bpfman-operator's CRDs are not installed here: everything but the
    ClusterBpfApplication goes through the dry run."""
    dry_run(kube, [d for d in render(OPERATOR) if d["kind"] != "ClusterBpfApplication"])


def test_the_readme_override_example_works(kube, render, tmp_path):
    """The overlay the README shows (image, bytecode image, interface), on top
    of the bpfman overlay, with the README's patch adding an interface: every
    container runs the new image, the agent gets the new values through a
    ConfigMap with a new name (so the DaemonSet rolls) and both interfaces."""
    readme = (DEPLOY / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, re.S)
    examples = [b for b in blocks if "kind: Kustomization" in b and "behavior: merge" in b]
    assert len(examples) == 1, "the README shows one override kustomization"
    example = yaml.safe_load(examples[0])
    (resource,) = example["resources"]
    overlay = resource.rsplit("/", 1)[1]
    assert overlay == "bpfman"
    example["resources"] = [os.path.relpath(DEPLOY / "overlays" / overlay, tmp_path)]
    (patch_block,) = [b for b in blocks if b.startswith("patches:")]
    example["patches"] = yaml.safe_load(patch_block)["patches"]
    (tmp_path / "kustomization.yaml").write_text(yaml.safe_dump(example))
    docs = [d for d in yaml.safe_load_all(kube.kubectl("kustomize", str(tmp_path)).stdout) if d]

    (image,) = example["images"]
    want_image = f"{image['newName']}:{image['newTag']}"
    pods = [d for d in docs if d["kind"] in ("Deployment", "DaemonSet")]
    images = {c["image"] for d in pods for k in ("containers", "initContainers")
              for c in d["spec"]["template"]["spec"].get(k, []) if c["name"] != "bpfman"}
    assert images == {want_image}
    # bpfman's own image is the other entry of `images:`, left as it is here.
    assert container(one(docs, "DaemonSet", "bpfman"), "bpfman")["image"] == "bpfman:0.6.0"

    literals = dict(kv.split("=", 1) for kv in example["configMapGenerator"][0]["literals"])
    cm = config_map(docs, "blixt-agent-config")
    assert cm["data"] == literals
    assert cm["metadata"]["name"] != config_map(render(BPFMAN), "blixt-agent-config")["metadata"]["name"]
    ds = one(docs, "DaemonSet", "blixt-agent")
    agent = parse_cli(expanded_argv(docs, ds, container(ds, "agent")))
    assert agent.bytecode_image == literals["BLIXT_BYTECODE_IMAGE"]
    added = [op["value"].split("=", 1)[1] for p in example["patches"] for op in yaml.safe_load(p["patch"])]
    assert added, "the README's patch adds an interface"
    assert [a.iface for a in agent.interface] == [literals["BLIXT_INTERFACE"].split("/")[0], *added]


# -- apiserver helpers -----------------------------------------------------

def json_documents(text: str) -> list[dict]:
    decoder, docs, i = json.JSONDecoder(), [], 0
    while i < len(text):
        if text[i].isspace():
            i += 1
            continue
        doc, i = decoder.raw_decode(text, i)
        docs.extend(doc["items"] if doc.get("kind") == "List" else [doc])
    return docs


def dry_run(kube, docs: list[dict]) -> None:
    """Server-side apply, dry run, strict field validation: every object is
    accepted and none draws a warning."""
    r = kube.kubectl("apply", "--server-side", "--dry-run=server", "--validate=strict",
                     f"--field-manager={FIELD_MANAGER}", "-o", "name", "-f", "-",
                     input=yaml.safe_dump_all(docs), check=False)
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr, r.stderr
    applied = r.stdout.split()
    assert len(applied) == len(docs), applied
    for d in docs:
        group = d["apiVersion"].split("/")[0] if "/" in d["apiVersion"] else ""
        kind = d["kind"].lower() + (f".{group}" if group else "")
        assert f"{kind}/{d['metadata']['name']}" in applied, (kind, applied)


def _finalize_namespace(kube, name: str) -> None:
    """Delete a namespace; no namespace controller runs here, so finalize by hand."""
    kube.kubectl("delete", "namespace", name, "--ignore-not-found", "--wait=false")
    r = kube.kubectl("get", "namespace", name, "-o", "json", check=False)
    if r.returncode == 0:
        ns = json.loads(r.stdout)
        ns["spec"]["finalizers"] = []
        kube.kubectl("replace", "--raw", f"/api/v1/namespaces/{name}/finalize", "-f", "-", input=json.dumps(ns))


@pytest.fixture(scope="module")
def blixt_system(kube):
    """The blixt-system namespace, really there: namespaced objects cannot be
    dry-run into a namespace that does not exist. Removed afterwards if this
    module made it."""
    existed = kube.kubectl("get", "namespace", NS, check=False).returncode == 0
    if not existed:
        kube.kubectl("create", "namespace", NS)
    yield NS
    if not existed:
        _finalize_namespace(kube, NS)


@pytest.fixture(scope="module")
def rbac_applied(kube, render, blixt_system):
    """The base's ServiceAccounts, roles and bindings, really there (the
    authorizer only knows what exists); deleted afterwards."""
    rbac = [d for d in render(BASE) if d["kind"] in
            ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")]
    kube.kubectl("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-",
                 input=yaml.safe_dump_all(rbac))
    yield rbac
    kube.kubectl("delete", "--ignore-not-found", "--wait=false", "-f", "-", input=yaml.safe_dump_all(rbac))


@pytest.fixture
def scratch_namespace(kube):
    made: list[str] = []

    def make(labels: dict[str, str]) -> str:
        name = f"blixt-deploy-test-{os.urandom(4).hex()}"
        ns = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": labels}}
        kube.kubectl("create", "-f", "-", input=yaml.safe_dump(ns))
        made.append(name)
        return name
    yield make
    for name in made:
        _finalize_namespace(kube, name)
