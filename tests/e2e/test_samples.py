"""samples/ applied as-is carry TCP and UDP through the Gateway."""

from __future__ import annotations

import collections
import re

from harness import paths


def who(answers):
    return collections.Counter(a.split()[0] for a in answers)


def test_samples_apply_and_carry_traffic(blixt):
    for f in sorted((paths.REPO / "samples").glob("*.yaml")):
        blixt.apply(f)
    blixt.write_endpoints("default", "echo", pods=[0, 1, 2],
                          ports=[("tcp", "TCP", 8080), ("udp", "UDP", 8080)])
    addr = blixt.gateway_address("default", "demo")
    assert addr.startswith("198.18.200.")

    def tcp_ok():
        res = blixt.client("tcp", addr, 8080, "--count", 30, "--timeout", 1)
        return res if not res["errors"] and len(who(res["answers"])) == 3 else None
    blixt.wait_for("TCP through the Gateway reaches all three pods", tcp_ok)

    def udp_ok():
        res = blixt.client("udp", addr, 8081, "--count", 30, "--timeout", 1)
        return res if not res["errors"] and len(who(res["answers"])) == 3 else None
    blixt.wait_for("UDP through the Gateway reaches all three pods", udp_ok)

    gw = blixt.get("gateway", "default", "demo")
    listeners = {l["name"]: l for l in gw["status"]["listeners"]}
    assert listeners["tcp"]["attachedRoutes"] == 1
    assert listeners["udp"]["attachedRoutes"] == 1
    route = blixt.get("tcproute", "default", "echo-tcp")
    (parent,) = route["status"]["parents"]
    assert parent["controllerName"] == "gateway.networking.k8s.io/blixt"
    assert {c["type"]: c["status"] for c in parent["conditions"]} == {"Accepted": "True", "ResolvedRefs": "True"}
    gwc = blixt.get("gatewayclass", None, "blixt")
    assert {c["type"]: c["status"] for c in gwc["status"]["conditions"]}["Accepted"] == "True"
    # The agent says what it did, and /metrics counts it.
    text = blixt.metrics(blixt.agent_port)
    assert "blixt_dataplane_applies_total" in text
    # Each pass that programmed the dataplane is timed (one at least: the first full sync).
    (count,) = re.findall(r"^blixt_dataplane_sync_duration_seconds_count (\S+)$", text, re.M)
    (total,) = re.findall(r"^blixt_dataplane_sync_duration_seconds_sum (\S+)$", text, re.M)
    assert float(count) >= 1 and 0 < float(total) < 60 * float(count)
