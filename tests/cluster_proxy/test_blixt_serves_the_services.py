"""A cluster whose Services only blixt serves: no kube-proxy table on the
node; CoreDNS (which reaches kube-apiserver through the `kubernetes`
ClusterIP) gets Ready; a pod resolves Services by name and reaches them with
its own address; the node's processes reach ClusterIPs; the outside reaches
NodePorts."""

from __future__ import annotations

import collections
import json
import sys
import time

import pytest

from harness import paths
from harness.node import NODE_IP

TESTS = paths.REPO / "tests"
ECHO = TESTS / "cluster" / "echo.yaml"
TRAFFIC = TESTS / "harness" / "traffic.py"
SERVICE = {
    "apiVersion": "v1", "kind": "Service", "metadata": {"name": "echo", "namespace": "default"},
    "spec": {"type": "NodePort", "selector": {"app": "echo"}, "ports": [
        {"name": "tcp", "protocol": "TCP", "port": 8080, "targetPort": "echo-tcp", "nodePort": 30080},
        {"name": "udp", "protocol": "UDP", "port": 8080, "targetPort": "echo-udp", "nodePort": 30080}]},
}
CONNECT = """
import json, socket, sys
kind = socket.SOCK_STREAM if sys.argv[3] == "tcp" else socket.SOCK_DGRAM
answers = []
for _ in range(int(sys.argv[4])):
    s = socket.socket(socket.AF_INET, kind)
    s.settimeout(3)
    s.connect((sys.argv[1], int(sys.argv[2])))
    s.send(b"bye\\n" if kind == socket.SOCK_STREAM else b"hi\\n")
    answers.append(s.recv(200).decode().split()[:2])
    s.close()
print(json.dumps(answers))
"""


@pytest.fixture(scope="module")
def echo(proxied):
    k = proxied.cluster.kubectl
    k("create", "configmap", "echo-server", f"--from-file=traffic.py={TRAFFIC}")
    k("apply", "-f", ECHO)
    k("apply", "-f", "-", input=json.dumps(SERVICE))
    k("rollout", "status", "deployment/echo", "--timeout=120s")
    out = k("get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.name}").stdout
    return set(out.split())


def in_pod(proxied, pod: str, *args: str) -> list:
    res = proxied.cluster.kubectl("-n", "blixt-system", "exec", pod, "-c", "controller", "--",
                                  "python3", "-c", CONNECT, *args)
    return json.loads(res.stdout)


def controller_pods(proxied) -> list[tuple[str, str]]:
    items = json.loads(proxied.cluster.kubectl("-n", "blixt-system", "get", "pods", "-l",
                                               "app.kubernetes.io/name=blixt-controller", "-o", "json").stdout)
    return [(p["metadata"]["name"], p["status"]["podIP"]) for p in items["items"]]


def test_no_kube_proxy_and_coredns_is_ready(proxied):
    tables = proxied.cluster.node_exec("nft", "list", "tables").stdout
    assert "kube-proxy" not in tables and "table ip blixt" in tables
    proxied.cluster.kubectl("-n", "kube-system", "rollout", "status", "deployment/coredns", "--timeout=120s")


def test_a_pod_resolves_a_service_and_reaches_it_with_its_own_address(proxied, echo):
    pod, ip = controller_pods(proxied)[0]
    for proto in ("tcp", "udp"):
        # The rollout is done before the EndpointSlice names every pod and the
        # agent has programmed it: wait for both to answer.
        deadline = time.monotonic() + 60
        while True:
            answers = in_pod(proxied, pod, "echo.default.svc.cluster.local", "8080", proto, "12")
            if {a[0] for a in answers} == echo or time.monotonic() > deadline:
                break
            time.sleep(1)
        assert {a[0] for a in answers} == echo, (proto, answers)
        assert {a[1].rsplit(":", 1)[0] for a in answers} == {ip}, answers  # not masqueraded


def test_the_node_reaches_cluster_ips(proxied, echo):
    cip = proxied.cluster.kubectl("get", "service", "echo", "-o", "jsonpath={.spec.clusterIP}").stdout.strip()
    res = proxied.cluster.node_exec(sys.executable, "-c", CONNECT, cip, "8080", "tcp", "12")
    assert {a[0] for a in json.loads(res.stdout)} == echo
    # kubelet's own view: the apiserver through the `kubernetes` ClusterIP from the node.
    res = proxied.cluster.node_exec("curl", "-sk", "-o", "/dev/null", "-w", "%{http_code}",
                                    "https://10.96.0.1/readyz", check=False)
    assert res.stdout in ("200", "401", "403"), res


def test_the_outside_reaches_node_ports(proxied, echo):
    counts = collections.Counter()
    for proto in ("tcp", "udp"):
        res = proxied.cluster.client_exec(sys.executable, "-c", CONNECT, NODE_IP, "30080", proto, "12")
        counts.update((proto, a[0]) for a in json.loads(res.stdout))
    assert {pod for _, pod in counts} == echo and {p for p, _ in counts} == {"tcp", "udp"}
