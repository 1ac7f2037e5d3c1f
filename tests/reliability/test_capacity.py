"""Map capacity exhausted, with real components: what fits keeps working,
what does not is left out whole and said so (a Gateway condition from the
controller; an Event, a log line and a metric from the agent), and the maps
never hold anything but the translation of the objects within the budget
(dataplane/fit.py). When room comes back, the left-out object is programmed.

Two budgets are reached for real, without shrinking anything in the code:
the slot map (Gateways may use half of the half of it the fit allows:
131,072 slots, which 32 frontends with a 4,096-slot table fill) and the
backend ids of a narrow mark layout (`--mark-id-mask=0x003f0000`: 63 ids,
31 usable by the fit)."""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
import sys
import time

import pytest

from blixt import translate
from blixt.dataplane.fit import Budget
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Dataplane
from blixt.dataplane.plan import plan
from blixt.kube.watch import Cache
from blixt.node import inspection
from blixt.node.manager import programs_of
from blixt.timestamps import utc_now
from blixt.translate.proxy import ProxyOptions
from harness import paths
from harness.blixt import running
from harness.scenario import Scenario

pytestmark = [pytest.mark.kube, pytest.mark.bpfman, pytest.mark.netns]

PORT = 9000


def events(node, ns: str, name: str) -> list[dict]:
    out = node.cluster.kubectl("get", "events", "-n", ns, "--field-selector", f"involvedObject.name={name}",
                               "-o", "json").stdout
    return sorted(json.loads(out)["items"], key=lambda e: e["metadata"]["creationTimestamp"])


def unfit_metric(node, kind: str) -> float | None:
    m = re.search(rf'^blixt_dataplane_unfit_objects{{kind="{kind}"}} (\S+)$', node.metrics(node.agent_port), re.M)
    return float(m.group(1)) if m else None


def settled(kube, bpfman_server, node, budget: Budget, proxy: ProxyOptions | None = None) -> bool:
    """The maps' frontends are exactly the translation (with `budget`) of
    what the API server has now: nothing half-written, nothing left over.
    (The node's addresses and pod CIDRs are not the translation's: taken
    from the maps.)"""
    cache = Cache(kube.api_client()).start()
    try:
        assert cache.wait_synced(30), cache.unsynced()
        snap = translate.Snapshot(**cache.snapshot())
    finally:
        cache.stop()
    t = translate.translate(snap, now=utc_now(), node_name=node.name, services=proxy, budget=budget)
    with bpfman_server.client() as c:
        reader = inspection.reader(c, programs_of(c, node.name, node.topo.node.netns), "blixt")
        try:
            cur = reader.current()
            desired = Dataplane(t.dataplane.services, {ipaddress.IPv4Address(a) for a in cur.local_addresses},
                                {ipaddress.ip_network((k.addr, k.prefixlen)) for k in cur.pod_cidrs})
            p = plan(desired, cur, reader.settings.marks)
        finally:
            for m in reader.maps.values():
                m.close()
    if not p.empty:
        raise AssertionError(f"the maps differ from the translation: {p.summary()}")
    return True


def hold(node, addr: str, seconds: float) -> subprocess.Popen:
    proc = node.topo.client.popen(
        sys.executable, "-m", "harness.traffic", "hold", addr, str(PORT), "--seconds", str(seconds),
        cwd=str(paths.REPO / "tests"), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "connected", proc.stderr.read()
    return proc


def test_gateway_past_the_slot_budget_is_no_resources_and_the_rest_keeps_working(blixt, kube, bpfman_server):
    """Gateways, oldest first: `serving` (real pods, a flow held throughout),
    `big` (2 listeners x 15 addresses, each frontend a 4,096-slot table from
    weights 4095:1) and `late` (2 frontends more, 8,192 slots: past the
    131,072). `late` gets Programmed=False NoResources naming blixt_slots
    from the controller and a Warning Event from the agent, its addresses
    stay in its status, and the maps hold exactly `serving` and `big`.
    Deleting `big` makes room: `late` is programmed and reported so."""
    sc = Scenario(blixt, "capacity")
    ns, addr = sc.serving_gateway(pods=(0,))
    flow = hold(blixt, addr, 40)
    try:
        sc.service(ns, "heavy", [1])
        sc.service(ns, "light", [2])
        refs = [{"name": "heavy", "port": 8080, "weight": 4095}, {"name": "light", "port": 8080, "weight": 1}]
        for name, addrs, ports in (("big", [f"198.18.201.{i}" for i in range(1, 16)], (9100, 9101)),
                                   ("late", ["198.18.202.1"], (9100, 9101))):
            time.sleep(1.1)  # creationTimestamp has whole seconds: keep the ages apart
            sc.gateway(ns, name, [Scenario.listener(f"l{p}", "TCP", p) for p in ports],
                       addresses=[{"type": "IPAddress", "value": a} for a in addrs])
            sc.route("TCPRoute", ns, f"r-{name}", [{"name": name}], refs)
        late = sc.wait_gateway(ns, "late", {"Accepted": ("True", "Accepted"), "Programmed": ("False", "NoResources")},
                               timeout=60)
        prog = next(c for c in late["status"]["conditions"] if c["type"] == "Programmed")
        assert "blixt_slots" in prog["message"] and "needs 8192" in prog["message"], prog
        assert [a["value"] for a in late["status"]["addresses"]] == ["198.18.202.1"]
        sc.wait_gateway(ns, "big", {"Programmed": ("True", "Programmed")})
        budget = Budget.of_maps()
        blixt.wait_for("an agent Event on the left-out Gateway", lambda: any(
            e["reason"] == "NoResources" and e["type"] == "Warning" and e["source"]["host"] == blixt.name
            and "blixt_slots" in e["message"] for e in events(blixt, ns, "late")), timeout=60)
        assert unfit_metric(blixt, "Gateway") == 1
        blixt.wait_for("the maps equal the fitted translation",
                       lambda: settled(kube, bpfman_server, blixt, budget), timeout=60)
        assert "gateway capacity-a/late: no room in the maps" in blixt.agent.log.read_text()

        # Room again: `big` goes, `late` is programmed.
        sc.delete("Gateway", ns, "big")
        sc.wait_gateway(ns, "late", {"Programmed": ("True", "Programmed")}, timeout=60)
        blixt.wait_for("an agent Event saying it fits again", lambda: any(
            e["reason"] == "Programmed" and e["type"] == "Normal" for e in events(blixt, ns, "late")), timeout=60)
        blixt.wait_for("the maps equal the translation again",
                       lambda: settled(kube, bpfman_server, blixt, budget), timeout=60)
        assert unfit_metric(blixt, "Gateway") == 0
        out, err = flow.communicate(timeout=60)
    finally:
        flow.kill()
    held = json.loads(out)
    assert not held["errors"] and len(held["answers"]) > 100 and {a.split()[0] for a in held["answers"]} == {"pod0"}, held
    assert blixt.agent.alive() and blixt.controller.alive()


NODE_IP = "198.18.0.1"
POD_CIDR = "10.244.0.0/16"
NARROW = ("--mark-id-shift=16", "--mark-id-mask=0x003f0000")  # backend ids 1..63


def test_service_past_the_backend_id_budget_gets_an_event_and_the_rest_keeps_working(
        kube, bpfman, bpfman_server, bytecode_image, workdir):
    """An agent serving Services with a mark layout of 63 backend ids (31 for
    the fit). Services oldest first: `kubernetes` (1 endpoint), cap-0 (the 3
    pods), cap-1 and cap-2 (12 endpoints each): 28. cap-3 (12 more) does not
    fit: a Warning Event on it from this node, the metric, and no frontend;
    cap-0 keeps answering. Deleting cap-1 lets cap-3 in (a Normal Event)."""
    from harness.blixt import ECHO_PORT
    with running(kube, bpfman_server.socket, bytecode_image, workdir / "e2e-capacity", name="capacity-node",
                 pod_net="10.244") as node:
        node.stop_agent()
        node.topo.node.exec("ip", "route", "add", "default", "via", node.topo.client.address)
        node.start_agent("--proxy-services", f"--cluster-cidr={POD_CIDR}", f"--node-ip={NODE_IP}", *NARROW)
        sc = Scenario(node, "capacity")
        ns = "default"
        fake = iter(f"10.244.200.{i}" for i in range(1, 250))
        try:
            for i in range(4):
                time.sleep(1.1)  # distinct creationTimestamps
                sc.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"cap-{i}", "namespace": ns},
                           "spec": {"clusterIP": f"10.96.101.{i + 1}", "ports": [
                               {"name": "p", "protocol": "TCP", "port": 80, "targetPort": ECHO_PORT}]}})
                if i == 0:
                    node.write_endpoints(ns, "cap-0", [0, 1, 2], ports=[("p", "TCP", ECHO_PORT)])
                else:
                    node.apply(json.dumps({
                        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                        "metadata": {"name": f"cap-{i}-blixt", "namespace": ns,
                                     "labels": {"kubernetes.io/service-name": f"cap-{i}"}},
                        "addressType": "IPv4",
                        "endpoints": [{"addresses": [next(fake)], "conditions": {"ready": True},
                                       "nodeName": node.name} for _ in range(12)],
                        "ports": [{"name": "p", "protocol": "TCP", "port": ECHO_PORT}]}))
                sc.created.append(("EndpointSlice", ns, f"cap-{i}-blixt"))
            node.wait_for("a Warning Event on cap-3 from this node", lambda: any(
                e["reason"] == "NoResources" and e["source"]["host"] == node.name and "backend ids" in e["message"]
                for e in events(node, ns, "cap-3")), timeout=60)
            assert not any(e["reason"] == "NoResources" for i in range(3) for e in events(node, ns, f"cap-{i}"))
            assert unfit_metric(node, "Service") == 1
            answers = node.client("tcp", "10.96.101.1", 80, "--count", 30, "--timeout", 1)
            assert not answers["errors"] and {a.split()[0] for a in answers["answers"]} == {"pod0", "pod1", "pod2"}

            marks = MarkConfig(id_shift=16, id_mask=0x003F0000)
            proxy = ProxyOptions(node=node.name, pod_cidrs=(ipaddress.ip_network(POD_CIDR),),
                                 node_ips=(ipaddress.IPv4Address(NODE_IP),))
            node.wait_for("the maps equal the fitted translation", lambda: settled(
                kube, bpfman_server, node, Budget.of_maps(marks), proxy), timeout=60)
            with bpfman_server.client() as c:
                reader = inspection.reader(c, programs_of(c, node.name, node.topo.node.netns), "blixt")
                vips = {str(ipaddress.IPv4Address(k.addr)) for k in reader.current().services}
                for m in reader.maps.values():
                    m.close()
            assert {"10.96.101.1", "10.96.101.2", "10.96.101.3"} <= vips and "10.96.101.4" not in vips

            sc.delete("Service", ns, "cap-1")
            node.wait_for("a Normal Event: cap-3 fits again", lambda: any(
                e["reason"] == "Programmed" and e["type"] == "Normal" for e in events(node, ns, "cap-3")), timeout=60)
            node.wait_for("the maps equal the translation again", lambda: settled(
                kube, bpfman_server, node, Budget.of_maps(marks), proxy), timeout=60)
            assert unfit_metric(node, "Service") == 0
            assert node.agent.alive()
        finally:
            sc.cleanup()


SMALL = (8, 32, 16)  # the Makefile's SMALL_MAPS: 4 frontends, 16 slots, 8 members for the fit


def test_the_agent_plans_against_the_capacity_of_the_build_it_loads(
        kube, bpfman, bpfman_server, bytecode_image, variant_object, registry, workdir):
    """An agent serving Services from the small build (8 frontends: 4 for
    the fit). `kubernetes` and cap-0..cap-4, one port each, oldest first:
    cap-3 and cap-4 do not fit (Events, the metric, no frontend), the rest
    answer. Restarted with the default build, the agent loads it (another
    bytecode is not adopted), carries the frontends over and programs all
    six; back on the small build, nothing is carried into the smaller maps
    and the first pass writes the four that fit."""
    from blixt import oci_image
    from blixt.bytecode_image import image_for
    from blixt.dataplane import layout
    from harness.blixt import ECHO_PORT
    small_ref = registry.ref("blixt/bytecode", "small")
    oci_image.push(image_for(variant_object("small")), small_ref, cafile=str(registry.ca.cert))
    proxy = ProxyOptions(node="small-node", pod_cidrs=(ipaddress.ip_network(POD_CIDR),),
                         node_ips=(ipaddress.IPv4Address(NODE_IP),))
    flags = ("--proxy-services", f"--cluster-cidr={POD_CIDR}", f"--node-ip={NODE_IP}")

    def loaded() -> tuple[int, layout.Capacity, set[str]]:
        with bpfman_server.client() as c:
            progs = programs_of(c, "small-node", node.topo.node.netns)
            reader = inspection.reader(c, progs, "blixt")
            try:
                cur = reader.current()
                vips = {str(ipaddress.IPv4Address(k.addr)) for k in cur.services}
                return progs[0].id, cur.capacity, vips
            finally:
                for m in reader.maps.values():
                    m.close()

    def restart(image: str, capacity: layout.Capacity, unfit: int) -> int:
        node.stop_agent()
        node.bytecode_image = image
        node.start_agent(*flags)
        node.wait_for(f"{unfit} Services left out", lambda: unfit_metric(node, "Service") == unfit, timeout=60)
        node.wait_for("the maps equal the fitted translation", lambda: settled(
            kube, bpfman_server, node, Budget.of_maps(MarkConfig(), capacity), proxy), timeout=60)
        prog, got, vips = loaded()
        assert got == capacity
        assert {f"10.96.102.{i + 1}" for i in range(5 - unfit)} <= vips
        assert not vips & {f"10.96.102.{i + 1}" for i in range(5 - unfit, 5)}
        answers = node.client("tcp", "10.96.102.1", 80, "--count", 10, "--timeout", 1)
        assert not answers["errors"], answers
        return prog

    with running(kube, bpfman_server.socket, small_ref, workdir / "e2e-small-maps", name="small-node",
                 pod_net="10.244") as node:
        node.stop_agent()
        node.topo.node.exec("ip", "route", "add", "default", "via", node.topo.client.address)
        node.start_agent(*flags)
        sc = Scenario(node, "small")
        ns = "default"
        # The oldest Service: other tests' cleanup deletes it, and the
        # apiserver makes it again within seconds.
        node.wait_for("the kubernetes Service", lambda: node.cluster.kubectl(
            "get", "service", "kubernetes", "-n", "default", check=False).returncode == 0, timeout=60)
        try:
            for i in range(5):
                time.sleep(1.1)  # distinct creationTimestamps: the oldest fit
                sc.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": f"small-{i}", "namespace": ns},
                           "spec": {"clusterIP": f"10.96.102.{i + 1}", "ports": [
                               {"name": "p", "protocol": "TCP", "port": 80, "targetPort": ECHO_PORT}]}})
                node.write_endpoints(ns, f"small-{i}", [i % 3], ports=[("p", "TCP", ECHO_PORT)])
            for i in (3, 4):
                node.wait_for(f"a Warning Event on small-{i}", lambda i=i: any(
                    e["reason"] == "NoResources" and e["source"]["host"] == node.name and "blixt_services" in e["message"]
                    for e in events(node, ns, f"small-{i}")), timeout=60)
            first = restart(small_ref, layout.Capacity(*SMALL), unfit=2)
            grown = restart(bytecode_image, layout.Capacity(), unfit=0)
            assert grown != first and "carried 4 blixt_services entries" in node.agent.log.read_text()
            shrunk = restart(small_ref, layout.Capacity(*SMALL), unfit=2)
            assert shrunk != grown
            assert "blixt_services: this build's maps are smaller" in node.agent.log.read_text()
            assert node.agent.alive()
        finally:
            sc.cleanup()
