"""The one-node cluster end to end: the Node is Ready, kubelet runs an
echo-basic Pod the client namespace reaches by pod IP and through a ClusterIP
Service (kube-proxy, nftables), CoreDNS answers on its fixed ClusterIP, and
teardown leaves no process, mount, network namespace, cgroup or changed
sysctl behind. The tests run in file order; the last one tears down."""

from __future__ import annotations

import json
import subprocess
import time

from harness import node

ECHO_IMAGE = "registry.k8s.io/gateway-api/echo-basic:v1.6.0-dev.3"

ECHO = f"""\
apiVersion: v1
kind: Pod
metadata: {{name: echo, namespace: default, labels: {{app: echo}}}}
spec:
  containers:
  - name: echo
    image: {ECHO_IMAGE}
    env:
    - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}
    - {{name: NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}
    readinessProbe: {{httpGet: {{path: /, port: 3000}}, periodSeconds: 1}}
---
apiVersion: v1
kind: Service
metadata: {{name: echo, namespace: default}}
spec:
  clusterIP: 10.96.0.80
  selector: {{app: echo}}
  ports: [{{port: 80, targetPort: 3000, protocol: TCP}}]
"""

# A DNS A query, sent from the client namespace (no dig on these machines).
DNS_QUERY = r"""
import socket, struct, sys
name, server = sys.argv[1], sys.argv[2]
q = struct.pack(">HHHHHH", 0x1234, 0x0100, 1, 0, 0, 0)
q += b"".join(bytes([len(p)]) + p.encode() for p in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.settimeout(3)
s.sendto(q, (server, 53)); r = s.recv(512)
answers = struct.unpack(">H", r[6:8])[0]
print(r[3] & 15, socket.inet_ntoa(r[-4:]) if answers else "-")
"""


def http_get_from_client(cluster, url: str, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        res = cluster.client_exec("curl", "-sS", "-m", "3", url, check=False)
        if res.returncode == 0:
            return json.loads(res.stdout)
        if time.monotonic() > deadline:
            raise AssertionError(f"GET {url} from the client namespace: {res.stderr}")
        time.sleep(0.5)


def test_node_ready(node_cluster):
    assert node_cluster.node_ready()
    ip = node_cluster.kubectl("get", "node", node.NODE_NAME, "-o",
                              "jsonpath={.status.addresses[?(@.type=='InternalIP')].address}").stdout
    assert ip == node.NODE_IP


def test_echo_pod_reached_from_client(node_cluster):
    node_cluster.kubectl("apply", "-f", "-", input=ECHO)
    node_cluster.kubectl("wait", "--for=condition=Ready", "pod/echo", "--timeout=120s")
    pod_ip = node_cluster.kubectl("get", "pod", "echo", "-o", "jsonpath={.status.podIP}").stdout
    assert pod_ip.startswith("198.18.128.")
    # By pod IP: client -> node (forwarding) -> CNI bridge -> pod.
    body = http_get_from_client(node_cluster, f"http://{pod_ip}:3000/")
    assert (body["pod"], body["namespace"]) == ("echo", "default")
    # Through the ClusterIP Service: kube-proxy's nftables DNAT in the node namespace.
    body = http_get_from_client(node_cluster, "http://10.96.0.80/")
    assert body["pod"] == "echo"


def test_coredns_answers_on_its_cluster_ip(node_cluster):
    deadline = time.monotonic() + 30
    while True:
        res = node_cluster.client_exec("python3", "-c", DNS_QUERY, "echo.default.svc.cluster.local",
                                       node.DNS_IP, check=False)
        if res.returncode == 0 and res.stdout.split() == ["0", "10.96.0.80"]:
            break
        assert time.monotonic() < deadline, f"DNS via {node.DNS_IP}: {res.stdout} {res.stderr}"
        time.sleep(0.5)


def _leftovers(cluster) -> list[str]:
    wd = cluster.workdir
    left = []
    state = json.loads((wd / "state.down.json").read_text())
    for p in state["procs"]:
        if node._starttime(p["pid"]) == p["start"]:
            left.append(f"process {p['name']} ({p['pid']})")
    left += [f"shim {pid}" for pid in node._shims(wd)]
    left += [f"mount {m}" for m in node._mounts_under(wd)]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    left += [f"netns {ns}" for ns in (cluster.node_ns, cluster.client_ns) if ns in netns.split()]
    left += [f"cgroup {c}" for c in node.CGROUP_ROOT.glob("*/kubepods")]
    for k, v in state["sysctls"].items():
        now = subprocess.run(["sysctl", "-n", k], capture_output=True, text=True).stdout.strip()
        if now != v:
            left.append(f"sysctl {k}={now}, was {v}")
    prop = subprocess.run(["findmnt", "-no", "PROPAGATION", "/"], capture_output=True, text=True).stdout.strip()
    if prop != state["propagation"]:
        left.append(f"/ propagation {prop}, was {state['propagation']}")
    return left


def test_teardown_leaves_nothing(node_cluster):
    problems = node.teardown(node_cluster.workdir)
    assert problems == []
    assert not (node_cluster.workdir / "state.json").exists()
    assert _leftovers(node_cluster) == []
