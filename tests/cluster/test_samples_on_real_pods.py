"""samples/ on the real cluster: the echo Service's EndpointSlices come from
kube-controller-manager, the client namespace reaches both real pods through
the Gateway's address over TCP and UDP, and deleting the agent's pod (the
DaemonSet starts a new one, which adopts the loaded program) neither drops an
established TCP connection nor refuses new ones."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from harness import samples

TESTS = samples.TESTS


@pytest.fixture(scope="module")
def gateway(deployed):
    """samples/ applied with two echo pods behind Service default/echo; the
    Gateway's address once it is Programmed."""
    return samples.apply(deployed.cluster)


def client(deployed, *args, timeout: float = 60) -> dict:
    return samples.client(deployed.cluster, *args, timeout=timeout)


def pods(deployed) -> set[str]:
    return samples.echo_pods(deployed.cluster)


def test_endpoint_slices_come_from_kube_controller_manager(deployed, gateway):
    slices = json.loads(deployed.cluster.kubectl(
        "get", "endpointslices", "-l", "kubernetes.io/service-name=echo", "-o", "json").stdout)["items"]
    assert slices
    for s in slices:
        assert s["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"] == "endpointslice-controller.k8s.io"
    ready = {e["targetRef"]["name"] for s in slices for e in s["endpoints"] if e["conditions"].get("ready")}
    assert ready == pods(deployed)


@pytest.mark.parametrize("proto,port", [("tcp", 8080), ("udp", 8081)])
def test_the_client_reaches_both_pods_through_the_gateway(deployed, gateway, proto, port):
    got = client(deployed, proto, gateway, port, "--count", 40)
    assert got["errors"] == []
    answered = {a.split()[0] for a in got["answers"]}
    assert answered == pods(deployed), got["answers"]
    # The pods see the client's own address: DNAT only, no masquerade.
    assert all(a.split()[1].startswith("198.18.0.2:") for a in got["answers"]), got["answers"]


def test_restarting_the_agent_keeps_established_and_new_flows(deployed, gateway):
    k = deployed.cluster.kubectl
    show = ["-n", "blixt-system", "exec", "ds/blixt-agent", "-c", "agent", "--", "blixt", "dataplane", "show",
            "--node", "blixt-node", "--bpfman-socket", "/run/bpfman-sock/bpfman.sock", "--json"]
    before = json.loads(k(*show).stdout)
    old_pod = k("-n", "blixt-system", "get", "pods", "-l", "app.kubernetes.io/name=blixt-agent",
                "-o", "jsonpath={.items[0].metadata.name}").stdout
    ns = ["ip", "netns", "exec", deployed.cluster.client_ns, sys.executable, "-m", "harness.traffic"]
    hold = subprocess.Popen([*ns, "hold", gateway, "8080", "--seconds", "40"], cwd=TESTS,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    fresh = None
    try:
        assert hold.stdout.readline().strip() == "connected", hold.stderr.read()
        # New connections all through the restart: one every 0.2 s.
        fresh = subprocess.Popen([*ns, "tcp", gateway, "8080", "--count", "150", "--interval", "0.2"],
                                 cwd=TESTS, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        k("-n", "blixt-system", "delete", "pod", old_pod, "--wait=true", "--timeout=60s")
        deployed.rollout()
        new_pod = k("-n", "blixt-system", "get", "pods", "-l", "app.kubernetes.io/name=blixt-agent",
                    "-o", "jsonpath={.items[0].metadata.name}").stdout
        assert new_pod != old_pod
        out, err = hold.communicate(timeout=90)
        held = json.loads(out)
        new = json.loads(fresh.communicate(timeout=90)[0])
    finally:
        for p in (hold, fresh):
            if p is not None and p.poll() is None:
                p.kill()
    assert held["errors"] == [], held
    assert len(held["answers"]) > 100, held
    assert len({a.split()[0] for a in held["answers"]}) == 1, "the held connection changed backend"
    assert new["errors"] == [], new["errors"]
    assert len(new["answers"]) == 150
    # The new agent adopted the program bpfman had loaded for the old one.
    after = json.loads(k(*show).stdout)
    assert [p["id"] for p in after["programs"]] == [p["id"] for p in before["programs"]]
