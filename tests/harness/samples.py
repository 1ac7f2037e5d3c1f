"""samples/ on a one-node cluster (harness.node) with real pods behind it:
two echo pods (tests/cluster/echo.yaml running harness.traffic's server)
for Service default/echo, and the client namespace's traffic through the
Gateway's address. Shared by the tiers that deploy blixt in different ways."""

from __future__ import annotations

import json
import sys

from . import paths
from .proc import wait_for

TESTS = paths.REPO / "tests"
ECHO = TESTS / "cluster" / "echo.yaml"
TRAFFIC = TESTS / "harness" / "traffic.py"


def apply(cluster, timeout: float = 60) -> str:
    """samples/ applied with the echo pods; the Gateway's address once it is Programmed."""
    k = cluster.kubectl
    k("create", "configmap", "echo-server", f"--from-file=traffic.py={TRAFFIC}")
    k("apply", "-f", ECHO)
    k("apply", "-f", paths.REPO / "samples")
    k("rollout", "status", "deployment/echo", "--timeout=120s")

    def programmed():
        gw = json.loads(k("get", "gateway", "demo", "-o", "json").stdout)
        conds = {c["type"]: c["status"] for c in gw.get("status", {}).get("conditions", [])}
        addrs = gw.get("status", {}).get("addresses") or []
        return addrs[0]["value"] if conds.get("Programmed") == "True" and addrs else None
    return wait_for(programmed, timeout=timeout, what="Gateway demo Programmed with an address", interval=0.5)


def client(cluster, *args, timeout: float = 60) -> dict:
    """harness.traffic run in the client namespace; its JSON report."""
    res = cluster.client_exec(sys.executable, "-m", "harness.traffic", *map(str, args), cwd=TESTS, timeout=timeout)
    return json.loads(res.stdout)


def echo_pods(cluster) -> set[str]:
    out = cluster.kubectl("get", "pods", "-l", "app=echo", "-o", "jsonpath={.items[*].metadata.name}").stdout
    return set(out.split())
