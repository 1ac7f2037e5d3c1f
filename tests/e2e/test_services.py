"""Kubernetes Services through blixt's agent (--proxy-services), flow by flow,
and the same tests through real kube-proxy (nftables mode) as the reference.

The node namespace has three pods: pod0 and pod1 on this node, pod2 named
as another node's in the EndpointSlices (it is reachable all the same, as
a remote pod would be through the pod network). Every case sends real
connections and records, per flow, which pod answered and which source
address the pod saw (the client's own, or a node address: masqueraded), or
how it failed (refused: TCP RST / ICMP port unreachable; timeout: dropped).
The expected tables are kube-proxy's behaviour (nftables mode, v1.35); the
kube-proxy run proves them."""

from __future__ import annotations

import collections
import json
import sys

import pytest

from harness.blixt import Node
from harness.kube_proxy import KubeProxy
from harness.traffic import run_client

pytestmark = [pytest.mark.kube, pytest.mark.bpfman, pytest.mark.netns]

NS = "default"
REMOTE = "node-far"  # pod2's node in the EndpointSlices
NODE_IP = "198.18.0.1"
LB_IP = "198.18.201.7"
EXTERNAL_IP = "198.18.201.8"
PORTS = [("tcp", "TCP", 8080), ("udp", "UDP", 8080)]
POD_CIDR = "10.244.0.0/16"  # the pods are 10.244.{1,2,3}.2
ZONE = "zone-a"


@pytest.fixture(scope="module", params=["blixt", "kube-proxy"])
def node(request, kube, bpfman_server, bytecode_image, workdir):
    """The node namespace served by blixt's agent, or by real kube-proxy
    (nftables mode) with the same settings: the same tests must pass on both."""
    wd = workdir / f"e2e-services-{request.param}"
    n = Node(wd, kube, bpfman_server.socket, bytecode_image, name="svc-node", pod_net="10.244")
    n.workdir.mkdir(parents=True, exist_ok=True)
    reference = None
    # Like a real node: a default route (ClusterIPs without endpoints get an
    # answer from the proxy, not "network unreachable" from routing), and no
    # ICMP rate limit, so each rejected UDP datagram gets its port unreachable.
    n.topo.node.exec("ip", "route", "add", "default", "via", n.topo.client.address)
    n.topo.node.exec("sysctl", "-qw", "net.ipv4.icmp_ratelimit=0")
    try:
        if request.param == "blixt":
            n.start_agent("--pod-interfaces=eth-pod", "--proxy-services", f"--cluster-cidr={POD_CIDR}", f"--node-ip={NODE_IP}",
                          f"--zone={ZONE}")
        else:
            reference = KubeProxy(wd, kube, n.topo.node.netns, n.name, NODE_IP, POD_CIDR, f"{NODE_IP}/32",
                                  zone=ZONE)
        yield n
    finally:
        if reference is not None:
            reference.close()
        n.close()
        with bpfman_server.client() as c:
            for p in c.list(match_metadata={"blixt.io/node": n.name}):
                c.unload(p.id)


@pytest.fixture
def svc(node, kube):
    """Apply a Service (and its EndpointSlice); both deleted afterwards."""
    made = []

    def apply(name: str, cluster_ip: str, spec: dict | None = None, pods=(0, 1, 2), status: dict | None = None):
        ports = [{"name": "tcp", "protocol": "TCP", "port": 80, "targetPort": 8080},
                 {"name": "udp", "protocol": "UDP", "port": 80, "targetPort": 8080}]
        spec = {"clusterIP": cluster_ip, "ports": ports, **(spec or {})}
        for p, np in zip(spec["ports"], spec.pop("nodePorts", ())):
            p["nodePort"] = np
        body = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": NS}, "spec": spec}
        kube.kubectl("apply", "-f", "-", input=json.dumps(body))
        made.append(name)
        if status is not None:
            kube.kubectl("patch", "service", name, "-n", NS, "--subresource=status", "--type=merge",
                         "-p", json.dumps({"status": status}))
        if pods:
            node.write_endpoints(NS, name, list(pods), PORTS, nodes={2: REMOTE})
    yield apply
    for name in made:
        kube.kubectl("delete", "service", name, "-n", NS, "--wait=false", check=False)
        kube.kubectl("delete", "endpointslice", f"{name}-blixt", "-n", NS, "--wait=false", check=False)


def outcomes(node: Node, host, addr: str, port: int, proto: str = "tcp", count: int = 12,
             timeout: float = 2.0) -> collections.Counter:
    """(pod, "client" | "node" | other source) per answered flow; "refused" or "timeout" otherwise."""
    res = run_client(host, proto, addr, port, "--count", count, "--timeout", timeout)
    node_ips = {node.topo.node.address} | {p.address.rsplit(".", 1)[0] + ".1" for p in node.topo.pods}
    out = collections.Counter()
    for answer in res["answers"]:
        pod, peer = answer.split()[:2]
        ip = peer.rsplit(":", 1)[0]
        out[(pod, "client" if ip == host.address else "node" if ip in node_ips else ip)] += 1
    for err in res["errors"]:
        # A reject in the output path drops the node's own datagram: send() says EPERM.
        out["refused" if "Refused" in err else "timeout" if "timed out" in err
            else "eperm" if "Operation not permitted" in err else err] += 1
    return out


def seen(counter) -> set:
    return set(counter)


def converge(node: Node, what: str, fn, want, timeout: float = 20.0):
    """Poll fn() until it gives `want` (the proxy converges after the apply);
    on a timeout, say what it gave last."""
    last = []

    def check():
        last[:] = [fn()]
        return last[0] == want
    try:
        node.wait_for(what, check, timeout=timeout, interval=0.5)
    except TimeoutError:
        raise AssertionError(f"{what}: want {want}, last got {last[0] if last else None}") from None
    return last[0]


def test_cluster_ip_from_outside_is_masqueraded_and_from_a_pod_keeps_the_pod_ip(node, svc):
    svc("web", "10.96.10.1")
    client, pod0 = node.topo.client, node.topo.pods[0]
    everyone = {("pod0", "node"), ("pod1", "node"), ("pod2", "node")}
    converge(node, "ClusterIP from outside", lambda: seen(outcomes(node, client, "10.96.10.1", 80, count=24)),
             everyone)
    assert seen(outcomes(node, client, "10.96.10.1", 80, "udp", count=24)) == everyone
    # From a pod: the real source, except hairpin to itself (masqueraded, as kube-proxy does).
    assert seen(outcomes(node, pod0, "10.96.10.1", 80, count=24)) == {
        ("pod0", "node"), ("pod1", "client"), ("pod2", "client")}


def test_node_port_cluster_policy_masquerades_and_uses_every_endpoint(node, svc):
    svc("np", "10.96.10.2", {"type": "NodePort", "nodePorts": [30080, 30080]})
    everyone = {("pod0", "node"), ("pod1", "node"), ("pod2", "node")}
    converge(node, "NodePort", lambda: seen(outcomes(node, node.topo.client, NODE_IP, 30080, count=24)), everyone)
    assert seen(outcomes(node, node.topo.client, NODE_IP, 30080, "udp", count=24)) == everyone
    # Only the primary IP serves NodePorts (--nodeport-addresses primary): on a pod-side address of
    # the node nothing listens, and the node's own stack refuses.
    other = node.topo.pods[0].address.rsplit(".", 1)[0] + ".1"
    assert outcomes(node, node.topo.client, other, 30080, count=1) == collections.Counter({"refused": 1})


def test_node_port_local_policy_keeps_the_client_ip_and_pods_reach_every_endpoint(node, svc):
    svc("local", "10.96.10.3", {"type": "NodePort", "nodePorts": [30081, 30081], "externalTrafficPolicy": "Local"})
    converge(node, "Local NodePort", lambda: seen(outcomes(node, node.topo.client, NODE_IP, 30081, count=24)),
             {("pod0", "client"), ("pod1", "client")})
    assert seen(outcomes(node, node.topo.client, NODE_IP, 30081, "udp", count=24)) == {
        ("pod0", "client"), ("pod1", "client")}
    # A pod's traffic to the external address goes to every endpoint (kube-proxy's short-circuit).
    assert seen(outcomes(node, node.topo.pods[1], NODE_IP, 30081, count=24)) == {
        ("pod0", "client"), ("pod1", "node"), ("pod2", "client")}


def test_local_policy_with_endpoints_only_elsewhere_drops_outside_traffic(node, svc):
    svc("far", "10.96.10.4", {"type": "NodePort", "nodePorts": [30082, 30082], "externalTrafficPolicy": "Local"},
        pods=(2,))
    converge(node, "dropped", lambda: outcomes(node, node.topo.client, NODE_IP, 30082, count=2, timeout=1.0),
             collections.Counter({"timeout": 2}))
    assert seen(outcomes(node, node.topo.pods[0], NODE_IP, 30082, count=4)) == {("pod2", "client")}
    # The ClusterIP is internal traffic, Cluster policy: served.
    assert seen(outcomes(node, node.topo.client, "10.96.10.4", 80, count=4)) == {("pod2", "node")}


def test_no_endpoints_rejects_tcp_and_udp_on_every_frontend(node, svc):
    svc("empty", "10.96.10.5", {"type": "NodePort", "nodePorts": [30083, 30083]}, pods=())
    refused = collections.Counter({"refused": 2})
    converge(node, "rejected", lambda: outcomes(node, node.topo.client, "10.96.10.5", 80, count=2), refused)
    assert outcomes(node, node.topo.client, NODE_IP, 30083, count=2) == refused
    assert outcomes(node, node.topo.client, "10.96.10.5", 80, "udp", count=2) == refused
    assert outcomes(node, node.topo.pods[0], "10.96.10.5", 80, count=2) == refused


def test_internal_traffic_policy_local(node, svc):
    svc("itp", "10.96.10.6", {"internalTrafficPolicy": "Local"})
    converge(node, "local endpoints only", lambda: seen(outcomes(node, node.topo.pods[2], "10.96.10.6", 80, count=24)),
             {("pod0", "client"), ("pod1", "client")})
    svc("itp-far", "10.96.10.7", {"internalTrafficPolicy": "Local"}, pods=(2,))
    converge(node, "dropped", lambda: outcomes(node, node.topo.pods[0], "10.96.10.7", 80, count=2, timeout=1.0),
             collections.Counter({"timeout": 2}))


def test_load_balancer_ip_and_its_source_ranges(node, svc, kube):
    status = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
    svc("lb", "10.96.10.8", {"type": "LoadBalancer", "nodePorts": [30084, 30084],
                             "loadBalancerSourceRanges": [" 198.18.0.0/30 "]}, status=status)
    everyone = {("pod0", "node"), ("pod1", "node"), ("pod2", "node")}
    converge(node, "LoadBalancer IP", lambda: seen(outcomes(node, node.topo.client, LB_IP, 80, count=24)), everyone)
    kube.kubectl("patch", "service", "lb", "-n", NS, "--type=merge",
                 "-p", json.dumps({"spec": {"loadBalancerSourceRanges": ["203.0.113.0/24"]}}))
    converge(node, "source outside the ranges dropped",
             lambda: outcomes(node, node.topo.client, LB_IP, 80, count=2, timeout=1.0),
             collections.Counter({"timeout": 2}))
    # NodePorts are not subject to the ranges.
    assert seen(outcomes(node, node.topo.client, NODE_IP, 30084, count=48)) == everyone


def test_external_ips(node, svc):
    svc("ext", "10.96.10.9", {"externalIPs": [EXTERNAL_IP]})
    converge(node, "externalIP", lambda: seen(outcomes(node, node.topo.client, EXTERNAL_IP, 80, count=24)),
             {("pod0", "node"), ("pod1", "node"), ("pod2", "node")})


STICKY = {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}


def served(node: Node, host, addr: str, port: int, count: int = 20) -> collections.Counter:
    """outcomes() once every flow is answered (the proxy has converged)."""
    return node.wait_for("served", lambda: (lambda c: c if all(isinstance(k, tuple) for k in c) else None)(
        outcomes(node, host, addr, port, count=count)))


@pytest.mark.parametrize("source", ["client", "node"], ids=["from outside", "from the node"])
def test_client_ip_affinity_keeps_one_backend(node, svc, source):
    svc(f"sticky-{source}", "10.96.10.10" if source == "client" else "10.96.11.7", STICKY)
    got = served(node, getattr(node.topo, source), "10.96.10.10" if source == "client" else "10.96.11.7", 80)
    assert len(got) == 1 and sum(got.values()) == 20, got


# -- the node's own traffic (processes, hostNetwork pods): the output path ------
#
# The node connects from its own address (198.18.0.1, "client" below): a pod
# that sees it was not masqueraded; "node" is the node's address on the
# pod's link, after masquerade.


def test_node_to_cluster_ip_node_port_and_external_ip(node, svc):
    svc("own", "10.96.11.1", {"type": "NodePort", "nodePorts": [30090, 30090], "externalIPs": [EXTERNAL_IP]})
    host = node.topo.node
    everyone = {("pod0", "node"), ("pod1", "node"), ("pod2", "node")}
    converge(node, "node -> ClusterIP", lambda: seen(outcomes(node, host, "10.96.11.1", 80, count=24)), everyone)
    assert seen(outcomes(node, host, "10.96.11.1", 80, "udp", count=24)) == everyone
    assert seen(outcomes(node, host, NODE_IP, 30090, count=24)) == everyone
    assert seen(outcomes(node, host, NODE_IP, 30090, "udp", count=24)) == everyone
    assert seen(outcomes(node, host, EXTERNAL_IP, 80, count=24)) == everyone


def test_node_to_a_local_policy_service_uses_every_endpoint_masqueraded(node, svc):
    svc("own-local", "10.96.11.2", {"type": "NodePort", "nodePorts": [30091, 30091],
                                    "externalTrafficPolicy": "Local"}, pods=(2,))
    converge(node, "node -> Local NodePort", lambda: seen(outcomes(node, node.topo.node, NODE_IP, 30091, count=6)),
             {("pod2", "node")})


def test_node_to_services_without_usable_endpoints(node, svc):
    svc("own-empty", "10.96.11.3", pods=())
    host = node.topo.node
    converge(node, "node -> no endpoints", lambda: outcomes(node, host, "10.96.11.3", 80, count=2),
             collections.Counter({"refused": 2}))
    assert outcomes(node, host, "10.96.11.3", 80, "udp", count=2) == collections.Counter({"eperm": 2})
    svc("own-itp", "10.96.11.4", {"internalTrafficPolicy": "Local"}, pods=(2,))
    converge(node, "node -> ITP Local elsewhere", lambda: outcomes(node, host, "10.96.11.4", 80, count=2,
                                                                   timeout=1.0),
             collections.Counter({"timeout": 2}))
    svc("own-itp-here", "10.96.11.5", {"internalTrafficPolicy": "Local"})
    converge(node, "node -> ITP Local", lambda: seen(outcomes(node, host, "10.96.11.5", 80, count=24)),
             {("pod0", "node"), ("pod1", "node")})


def test_node_to_a_load_balancer_ip_and_its_source_ranges(node, svc, kube):
    status = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
    svc("own-lb", "10.96.11.6", {"type": "LoadBalancer", "nodePorts": [30092, 30092],
                                 "loadBalancerSourceRanges": ["203.0.113.0/24"]}, status=status)
    host = node.topo.node
    converge(node, "node outside the ranges", lambda: outcomes(node, host, LB_IP, 80, count=2, timeout=1.0),
             collections.Counter({"timeout": 2}))
    # A range holding the node's IP lets the node in.
    kube.kubectl("patch", "service", "own-lb", "-n", NS, "--type=merge",
                 "-p", json.dumps({"spec": {"loadBalancerSourceRanges": ["198.18.0.0/24"]}}))
    converge(node, "node inside the ranges", lambda: seen(outcomes(node, host, LB_IP, 80, count=24)),
             {("pod0", "node"), ("pod1", "node"), ("pod2", "node")})


# -- health checks ---------------------------------------------------------------

def http_get(host, url: str) -> tuple[int, dict, dict | str]:
    """(status, headers, JSON body or text) of a GET from inside host's namespace."""
    code = ("import json, sys, urllib.request, urllib.error\n"
            "try:\n    r = urllib.request.urlopen(sys.argv[1], timeout=3)\n"
            "except urllib.error.HTTPError as e:\n    r = e\n"
            "print(json.dumps([r.status, dict(r.headers), r.read().decode()]))\n")
    status, headers, body = json.loads(host.exec(sys.executable, "-c", code, url).stdout)
    try:
        return status, headers, json.loads(body)
    except ValueError:
        return status, headers, body


def test_health_check_node_port_answers_for_local_endpoints(node, svc, kube):
    status = {"loadBalancer": {"ingress": [{"ip": LB_IP}]}}
    svc("hc", "10.96.12.1", {"type": "LoadBalancer", "nodePorts": [30093, 30093], "externalTrafficPolicy": "Local",
                             "healthCheckNodePort": 32100}, pods=(0, 2), status=status)
    url = f"http://{NODE_IP}:32100/"

    def status() -> int | str:
        try:
            return http_get(node.topo.client, url)[0]
        except Exception as e:  # not listening yet
            return str(e)
    converge(node, "health check 200", status, 200)
    _, headers, body = http_get(node.topo.client, url)
    assert body == {"service": {"namespace": NS, "name": "hc"}, "localEndpoints": 1, "serviceProxyHealthy": True}
    assert headers["X-Load-Balancing-Endpoint-Weight"] == "1"
    node.write_endpoints(NS, "hc", [2], PORTS, nodes={2: REMOTE})
    converge(node, "health check 503", status, 503)
    assert http_get(node.topo.client, url)[2]["localEndpoints"] == 0


def test_proxy_healthz(node):
    code, headers, body = node.wait_for("healthz", lambda: http_get(node.topo.node, "http://127.0.0.1:10256/healthz"))
    assert code == 200 and headers["Content-Type"] == "application/json"
    assert {"lastUpdated", "currentTime"} <= set(body), body
    assert http_get(node.topo.node, "http://127.0.0.1:10256/livez")[0] == 200


# -- topology hints and UDP conntrack ----------------------------------------------


def test_zone_hints_narrow_cluster_endpoints(node, svc, kube):
    svc("zoned", "10.96.13.1", pods=())
    node.write_endpoints(NS, "zoned", [0, 1, 2], PORTS, nodes={2: REMOTE}, zones={0: ZONE, 1: "zone-b", 2: ZONE})
    converge(node, "same-zone endpoints", lambda: seen(outcomes(node, node.topo.client, "10.96.13.1", 80, count=24)),
             {("pod0", "node"), ("pod2", "node")})
    # One endpoint without a hint: hints are ignored.
    node.write_endpoints(NS, "zoned", [0, 1, 2], PORTS, nodes={2: REMOTE}, zones={0: ZONE, 1: "zone-b"})
    converge(node, "every endpoint", lambda: seen(outcomes(node, node.topo.client, "10.96.13.1", 80, count=24)),
             {("pod0", "node"), ("pod1", "node"), ("pod2", "node")})


def test_a_udp_flow_follows_its_removed_endpoint(node, svc):
    """The same 5-tuple each time: conntrack would keep sending it to the
    removed endpoint unless the proxy deletes the entry."""
    svc("udp-stale", "10.96.13.2")
    client = node.topo.client

    def answered_by():
        res = run_client(client, "udp", "10.96.13.2", 80, "--count", 1, "--sport-base", 41000, "--timeout", 1)
        return res["answers"][0].split()[0] if res["answers"] else res["errors"]
    first = node.wait_for("a UDP answer", lambda: (lambda a: a if isinstance(a, str) else None)(answered_by()))
    rest = [i for i in (0, 1, 2) if f"pod{i}" != first]
    node.write_endpoints(NS, "udp-stale", rest, PORTS, nodes={2: REMOTE})
    moved = node.wait_for("the flow moved", lambda: (lambda a: a if isinstance(a, str) and a != first else None)(
        answered_by()))
    assert moved in {f"pod{i}" for i in rest}


def test_affinity_is_shared_by_the_frontends_of_a_service_port(node, svc):
    svc("sticky-np", "10.96.13.3", {"type": "NodePort", "nodePorts": [30094, 30094], **STICKY})
    client = node.topo.client
    first = served(node, client, "10.96.13.3", 80, count=10)
    assert len(first) == 1, first
    # The NodePort goes to the pod the ClusterIP chose for this client.
    assert seen(outcomes(node, client, NODE_IP, 30094, count=10)) == set(first)


def test_a_pod_that_comes_later_is_served_and_its_link_goes_with_it(node, svc, bpfman_server):
    svc("late", "10.96.13.4")
    late = node.topo.add_pod()
    try:
        converge(node, "the new pod reaches the ClusterIP",
                 lambda: seen(outcomes(node, late, "10.96.13.4", 80, count=24)),
                 {("pod0", "client"), ("pod1", "client"), ("pod2", "client")})
    finally:
        node.topo.remove_pod(late)
    if node.agent is None:  # kube-proxy: nothing to attach
        return
    with bpfman_server.client() as c:
        (prog,) = c.list(match_metadata={"blixt.io/node": node.name})
        # The uplink and the three pods' veths again: the gone pod's link was detached.
        node.wait_for("the gone pod's link detached", lambda: len(c.get(prog.id).links) == 4)
