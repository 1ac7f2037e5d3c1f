"""The bpfman overlay on a real cluster: every pod Ready from the local images,
the agent's program attached to the node's uplink through the bpfman pod, and
RBAC that is least privilege as the live API server enforces it."""

from __future__ import annotations

import re

import pytest

from harness import node

AGENT = "system:serviceaccount:blixt-system:blixt-agent"
CONTROLLER = "system:serviceaccount:blixt-system:blixt-controller"
BPFMAN = "system:serviceaccount:bpfman:default"


def test_every_pod_is_ready_from_the_local_images(deployed):
    pods = deployed.cluster.kubectl(
        "get", "pods", "-n", "blixt-system", "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].image} "
        "{.status.containerStatuses[0].ready}{'\\n'}{end}").stdout.split("\n")
    pods += deployed.cluster.kubectl(
        "get", "pods", "-n", "bpfman", "-o",
        "jsonpath={range .items[*]}{.metadata.name} {.status.containerStatuses[0].image} "
        "{.status.containerStatuses[0].ready}{'\\n'}{end}").stdout.split("\n")
    rows = sorted(tuple(p.split()) for p in pods if p.strip())
    kinds = sorted(name.rsplit("-", 2 if name.startswith("blixt-controller") else 1)[0] for name, _, _ in rows)
    assert kinds == ["blixt-agent", "blixt-controller", "blixt-controller", "bpfman"], rows
    for name, image, ready in rows:
        want = "bpfman:0.6.0" if name.startswith("bpfman") else "blixt:0.1.0"
        assert image.endswith(want) and ready == "true", rows


def test_the_agent_loaded_its_program_through_bpfman_and_attached_it(deployed):
    logs = deployed.cluster.kubectl("-n", "blixt-system", "logs", "ds/blixt-agent", "-c", "agent").stdout
    assert "attached blixt_tcx to eth0 ingress" in logs, logs[-2000:]
    # What bpfman (pulled from the TLS registry, loaded, linked) reports, and
    # the maps pinned in its bpffs, as `blixt dataplane show` sees them from the agent's pod.
    show = deployed.cluster.kubectl("-n", "blixt-system", "exec", "ds/blixt-agent", "-c", "agent", "--",
                                    "blixt", "dataplane", "show", "--node", node.NODE_NAME,
                                    "--bpfman-socket", "/run/bpfman-sock/bpfman.sock").stdout
    assert re.search(r"^  \d+ blixt_tcx  links \d+  attached to eth0 \(tcx ingress\)  "
                     r"maps /run/bpfman/fs/maps/\d+$", show, re.M), show
    assert re.search(r"^  blixt_services +\d+ / \d+", show, re.M), show


# (who, verb, resource, namespace or "" for all/cluster, allowed)
RBAC = [
    # The agent reads what it translates and writes nothing but Events (on a
    # Gateway or Service its node's maps have no room for).
    (AGENT, "watch", "gateways.gateway.networking.k8s.io", "", True),
    (AGENT, "list", "endpointslices.discovery.k8s.io", "", True),
    (AGENT, "patch", "gateways.gateway.networking.k8s.io/status", "default", False),
    (AGENT, "update", "tcproutes.gateway.networking.k8s.io/status", "default", False),
    (AGENT, "update", "gatewayclasses.gateway.networking.k8s.io/status", "", False),
    (AGENT, "create", "gateways.gateway.networking.k8s.io", "default", False),
    (AGENT, "get", "secrets", "blixt-system", False),
    (AGENT, "create", "events", "default", True),
    (AGENT, "update", "events", "default", False),
    (AGENT, "delete", "events", "default", False),
    (AGENT, "list", "pods", "", False),
    (AGENT, "get", "nodes", "", False),
    # The controller writes status and its Lease, nothing else; no nodes, no pods.
    (CONTROLLER, "patch", "gateways.gateway.networking.k8s.io/status", "default", True),
    (CONTROLLER, "update", "udproutes.gateway.networking.k8s.io/status", "default", True),
    (CONTROLLER, "create", "leases.coordination.k8s.io", "blixt-system", True),
    (CONTROLLER, "create", "leases.coordination.k8s.io", "default", False),
    (CONTROLLER, "update", "gateways.gateway.networking.k8s.io", "default", False),
    (CONTROLLER, "delete", "tcproutes.gateway.networking.k8s.io", "default", False),
    (CONTROLLER, "get", "nodes", "", False),
    (CONTROLLER, "list", "nodes", "", False),
    (CONTROLLER, "get", "pods", "default", False),
    (CONTROLLER, "list", "pods", "", False),
    (CONTROLLER, "get", "secrets", "blixt-system", False),
    (CONTROLLER, "update", "services", "default", False),
    # bpfman's pods use the namespace's default account, which may do nothing.
    (BPFMAN, "list", "pods", "", False),
    (BPFMAN, "get", "configmaps", "bpfman", False),
]


@pytest.mark.parametrize("who,verb,resource,ns,allowed", RBAC,
                         ids=[f"{w.rsplit(':', 1)[1]}-{v}-{r.split('.')[0]}{'/status' if '/status' in r else ''}"
                              f"-{n or 'all'}" for w, v, r, n, _ in RBAC])
def test_rbac_is_least_privilege(deployed, who, verb, resource, ns, allowed):
    resource, _, sub = resource.partition("/")
    args = ["auth", "can-i", verb, resource, f"--as={who}", *([f"--subresource={sub}"] if sub else [])]
    args += [f"--namespace={ns}"] if ns else ["--all-namespaces"]
    res = deployed.cluster.kubectl(*args, check=False)
    answer = res.stdout.strip()
    assert answer in ("yes", "no"), res.stderr
    assert (answer == "yes") == allowed, f"{who} {verb} {resource} in {ns or 'all namespaces'}: {answer}"
