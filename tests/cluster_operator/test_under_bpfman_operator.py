"""blixt under the real bpfman-operator v0.6.0: the operator (from the local
images) loads blixt's bytecode from the cluster's TLS registry for the
overlay's ClusterBpfApplication and attaches it; the agent (`--maps-dir`)
programs the maps bpfman's CSI driver pinned into its pod; TCP and UDP reach
samples/' echo pods; a recreated ClusterBpfApplication leaves the pod's pins
on the old maps, which the agent detects (not ready, one log line saying to
delete the pod), and a replaced pod works again."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest

from harness import bpfman_operator, node, samples
from harness.proc import wait_for

AGENT = "system:serviceaccount:blixt-system:blixt-agent"
AGENT_LABEL = "app.kubernetes.io/name=blixt-agent"
APP = "blixt"
PROGRAMS: set[int] = set()  # every program id the operator loaded, for the teardown check


@pytest.fixture(scope="module")
def gateway(operator_deployed):
    return samples.apply(operator_deployed.cluster)


def agent_pod(k) -> dict:
    pods = json.loads(k("-n", "blixt-system", "get", "pods", "-l", AGENT_LABEL, "-o", "json").stdout)["items"]
    live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
    assert len(live) == 1, [p["metadata"]["name"] for p in pods]
    return live[0]


def ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions", []))


def app_state(k) -> dict:
    (state,) = json.loads(k("get", "clusterbpfapplicationstates", "-l", f"bpfman.io/ownedByProgram={APP}",
                            "-o", "json").stdout)["items"]
    return state


def attached_program(k) -> int | None:
    """The program id once the node's state says loaded and attached."""
    status = app_state(k).get("status") or {}
    (prog,) = status.get("programs") or [{}]
    links = (prog.get("tcx") or {}).get("links") or []
    if status.get("appLoadStatus") == "LoadSuccess" and links and \
            all(link.get("linkStatus") == "Attached" for link in links):
        PROGRAMS.add(prog["programId"])
        return prog["programId"]
    return None


def through_the_gateway(cluster, address: str, within: float = 30) -> None:
    """TCP and UDP from the client reach both echo pods, within `within`
    seconds: right after the rollout, or after a new agent starts, the
    EndpointSlice and the agent's pass may not have caught up yet (once, in
    CI, all 40 connections went to the one pod the slice listed then)."""
    pods = samples.echo_pods(cluster)
    deadline = time.monotonic() + within
    for proto, port in (("tcp", 8080), ("udp", 8081)):
        while True:
            got = samples.client(cluster, proto, address, port, "--count", 40)
            try:
                assert got["errors"] == [], (proto, got["errors"])
                assert {a.split()[0] for a in got["answers"]} == pods, (proto, got["answers"])
                break
            except AssertionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)


def test_the_operator_runs_bpfman_from_the_local_images(operator_deployed):
    k = operator_deployed.cluster.kubectl
    pods = json.loads(k("-n", "bpfman", "get", "pods", "-o", "json").stdout)["items"]
    images = {c["name"]: c["image"] for p in pods for c in p["spec"]["containers"]}
    assert images == {"bpfman-operator": "bpfman-operator:0.6.0", "bpfman": "bpfman:0.6.0",
                      "bpfman-agent": "bpfman-agent:0.6.0",
                      "node-driver-registrar": "csi-node-driver-registrar:0.6.0"}, images
    assert all(ready(p) for p in pods), operator_deployed.operator.describe()
    # Our registrar registered bpfman's CSI driver with kubelet.
    drivers = k("get", "csinode", "blixt-node", "-o", "jsonpath={.spec.drivers[*].name}").stdout.split()
    assert "csi.bpfman.io" in drivers


def test_the_agent_programs_the_maps_the_operator_loaded(operator_deployed):
    k = operator_deployed.cluster.kubectl
    prog = attached_program(k)
    assert prog, app_state(k)
    pod = agent_pod(k)
    assert ready(pod)
    logs = k("-n", "blixt-system", "logs", pod["metadata"]["name"], "-c", "agent").stdout
    assert f"program {prog} of ClusterBpfApplication {APP} is loaded and attached" in logs, logs[-3000:]
    # bpfman pulled the bytecode from the cluster's TLS registry (its CA
    # trusted through the node's /run/bpfman/registry-ca), not a cached copy.
    registry = (operator_deployed.cluster.workdir / "registry.log").read_text()
    pulls = [line for line in registry.splitlines()
             if '"GET /v2/blixt/bytecode/manifests/latest' in line and "Python-urllib" not in line]
    assert pulls, registry[-2000:]
    # The pod has the CSI volume and nothing of bpfman's.
    volumes = {v["name"]: v for v in pod["spec"]["volumes"]}
    assert volumes["blixt-maps"]["csi"]["driver"] == "csi.bpfman.io"
    assert not {"bpfman-sock", "bpfman-fs"} & set(volumes)
    # The agent's RBAC grew by reading the states, nothing more on them.
    for verb, allowed in (("watch", "yes"), ("list", "yes"), ("get", "yes"), ("update", "no"), ("create", "no")):
        res = k("auth", "can-i", verb, "clusterbpfapplicationstates.bpfman.io", f"--as={AGENT}", check=False)
        assert res.stdout.strip() == allowed, (verb, res.stdout)
    for verb in ("get", "update", "delete"):
        res = k("auth", "can-i", verb, "clusterbpfapplications.bpfman.io", f"--as={AGENT}", check=False)
        assert res.stdout.strip() == "no", (verb, res.stdout)


def test_tcp_and_udp_reach_the_pods_through_the_gateway(operator_deployed, gateway):
    through_the_gateway(operator_deployed.cluster, gateway)


def test_a_recreated_application_is_detected_and_a_new_pod_recovers(operator_deployed, gateway):
    cluster = operator_deployed.cluster
    k = cluster.kubectl
    old_prog = attached_program(k)
    old_pod = agent_pod(k)["metadata"]["name"]
    app = json.loads(k("get", "clusterbpfapplication", APP, "-o", "json").stdout)
    for f in ("resourceVersion", "uid", "creationTimestamp", "generation", "managedFields", "finalizers"):
        app["metadata"].pop(f, None)
    app.pop("status", None)
    k("delete", "clusterbpfapplication", APP, "--wait=true", "--timeout=120s")
    k("create", "-f", "-", input=json.dumps(app))
    new_prog = wait_for(lambda: (p := attached_program(k)) != old_prog and p, timeout=120,
                        what="the recreated ClusterBpfApplication loaded and attached", interval=1)
    # The pod's pins are the old program's maps: not ready, and it says why.
    wait_for(lambda: not ready(agent_pod(k)), timeout=60, what=f"{old_pod} not ready", interval=1)
    logs = k("-n", "blixt-system", "logs", old_pod, "-c", "agent").stdout
    assert re.search(rf"not ready: .*program {new_prog}.*delete this pod", logs), logs[-3000:]
    assert agent_pod(k)["metadata"]["name"] == old_pod

    k("-n", "blixt-system", "delete", "pod", old_pod, "--wait=true", "--timeout=120s")
    operator_deployed.rollout()
    new_pod = agent_pod(k)
    assert new_pod["metadata"]["name"] != old_pod and ready(new_pod)
    logs = k("-n", "blixt-system", "logs", new_pod["metadata"]["name"], "-c", "agent").stdout
    assert f"program {new_prog} of ClusterBpfApplication {APP} is loaded and attached" in logs, logs[-3000:]
    through_the_gateway(cluster, gateway)  # after the new agent's first pass


def test_teardown_leaves_nothing_of_the_operator(operator_deployed):
    cluster = operator_deployed.cluster
    before = cluster.state.data["operator_host_paths_before"]
    assert PROGRAMS, "no program id was seen"
    assert node.teardown(cluster.workdir) == []
    assert not os.path.lexists(bpfman_operator.CRI_SOCKET)
    assert not bpfman_operator.REGISTRY_CA_DIR.exists()
    assert [p for p, existed in before.items() if not existed and os.path.lexists(p)] == []
    # The programs bpfman loaded for the ClusterBpfApplication are unloaded.
    for prog in PROGRAMS:
        res = subprocess.run(["bpftool", "prog", "show", "id", str(prog)], capture_output=True, text=True)
        assert res.returncode != 0, res.stdout
