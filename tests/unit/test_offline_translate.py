"""`blixt translate`: samples/ plus files written here, translated offline;
the printed statuses and dataplane are checked value by value."""

import dataclasses
import io
import json
import pathlib
import re
import subprocess
import sys

import pytest

from blixt import offline
from blixt.translate import Snapshot

pytestmark = pytest.mark.unit

SAMPLES = sorted((pathlib.Path(__file__).resolve().parents[2] / "samples").glob("*.yaml"))
NOW = "2025-06-01T12:00:00Z"

# What an endpoint controller would write for samples/20-service.yaml: one
# pod on node-a, one on node-b, the Service's named targetPorts resolved.
ENDPOINTS = """\
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata:
  name: echo-abc
  namespace: default
  labels: {kubernetes.io/service-name: echo}
addressType: IPv4
endpoints:
- addresses: [10.244.1.5]
  conditions: {ready: true}
  nodeName: node-a
- addresses: [10.244.2.7]
  conditions: {ready: true}
  nodeName: node-b
ports:
- {name: tcp, protocol: TCP, port: 9000}
- {name: udp, protocol: UDP, port: 9001}
"""

# Two routes that go wrong: refs to a missing Service and to another
# namespace without a ReferenceGrant; a parentRef to a listener that does
# not exist. The first is younger than the sample's route, so it does not
# take the listener's traffic.
BROKEN = """\
apiVersion: gateway.networking.k8s.io/v1
kind: TCPRoute
metadata: {name: broken, namespace: default, creationTimestamp: 2030-01-01T00:00:00Z}
spec:
  parentRefs:
  - {name: demo, sectionName: tcp}
  rules:
  - backendRefs:
    - {name: nope, port: 8080}
    - {name: echo, namespace: other, port: 8080}
---
apiVersion: gateway.networking.k8s.io/v1
kind: UDPRoute
metadata: {name: lost}
spec:
  parentRefs:
  - {name: demo, sectionName: missing}
  rules:
  - backendRefs:
    - {name: echo, port: 8081}
"""


@pytest.fixture
def files(tmp_path):
    def write(name, text):
        p = tmp_path / name
        p.write_text(text)
        return str(p)
    return write


def translate(*paths, stdin="", **kw):
    out, err = io.StringIO(), io.StringIO()
    rc = offline.run(list(paths), now=NOW, stdin=io.StringIO(stdin), stdout=out, stderr=err, **kw)
    return rc, out.getvalue(), err.getvalue()


def cells(text):
    """The status table's rows, split on runs of 2+ spaces (an empty WHERE
    cell disappears)."""
    lines = text.split("\n\n")[1].splitlines()
    return [tuple(re.split(r"\s{2,}", line)) for line in lines]


def dataplane(text):
    return text.split("Dataplane (", 1)[1].splitlines()


def test_samples_with_endpoints_for_one_node(files):
    rc, out, err = translate(*map(str, SAMPLES), files("eps.yaml", ENDPOINTS), node="node-a")
    assert rc == 0 and err == ""
    rows = cells(out)
    assert rows[0] == ("OBJECT", "WHERE", "TYPE", "STATUS", "REASON", "MESSAGE")
    assert ("GatewayClass blixt", "Accepted", "True", "Accepted", "accepted by blixt") in rows
    gw = [r for r in rows if r[0] == "Gateway default/demo"]
    assert ("Gateway default/demo", "Programmed", "True", "Programmed") in gw
    assert ("Gateway default/demo", "listener udp", "Accepted", "True", "Accepted") in gw
    assert ("TCPRoute default/echo-tcp", "parent default/demo section tcp", "ResolvedRefs", "True",
            "ResolvedRefs") in rows
    assert ("UDPRoute default/echo-udp", "parent default/demo section udp", "Accepted", "True", "Accepted") in rows
    assert "  Gateway default/demo: 198.18.200.0" in out
    assert dataplane(out) == [
        "node node-a):",
        "  198.18.200.0:8080/tcp  gateway/default/demo/tcp",
        "    -> 10.244.1.5:9000  weight 1  masquerade no",
        "    -> 10.244.2.7:9000  weight 1  masquerade yes",
        "  198.18.200.0:8081/udp  gateway/default/demo/udp",
        "    -> 10.244.1.5:9001  weight 1  masquerade no",
        "    -> 10.244.2.7:9001  weight 1  masquerade yes",
    ]


def test_broken_routes_show_why(files):
    rc, out, err = translate(*map(str, SAMPLES), files("eps.yaml", ENDPOINTS), files("broken.yaml", BROKEN))
    assert rc == 0 and err == ""
    rows = cells(out)
    assert ("TCPRoute default/broken", "parent default/demo section tcp", "Accepted", "True", "Accepted") in rows
    assert ("TCPRoute default/broken", "parent default/demo section tcp", "ResolvedRefs", "False", "RefNotPermitted",
            "Service default/nope not found; backendRef other/echo: no ReferenceGrant in other allows "
            "TCPRoutes from default") in rows
    # No namespace in the file: filed under default, as kubectl apply would.
    assert ("UDPRoute default/lost", "parent default/demo section missing", "Accepted", "False", "NoMatchingParent",
            "Gateway default/demo has no listener with sectionName missing") in rows
    # The sample's older route keeps the traffic; without --node every backend is masqueraded.
    assert dataplane(out)[:4] == [
        "no --node: every backend counts as remote and is masqueraded):",
        "  198.18.200.0:8080/tcp  gateway/default/demo/tcp",
        "    -> 10.244.1.5:9000  weight 1  masquerade yes",
        "    -> 10.244.2.7:9000  weight 1  masquerade yes",
    ]


def test_listener_without_endpoints_rejects(files):
    rc, out, _ = translate(*map(str, SAMPLES))
    assert rc == 0
    assert dataplane(out)[1:] == [
        "  198.18.200.0:8080/tcp  gateway/default/demo/tcp",
        "    no backend with weight > 0: new connections are rejected",
        "  198.18.200.0:8081/udp  gateway/default/demo/udp",
        "    no backend with weight > 0: new connections are rejected",
    ]


def test_json_has_statuses_and_dataplane(files):
    rc, out, _ = translate(*map(str, SAMPLES), files("eps.yaml", ENDPOINTS), node="node-b", json_output=True)
    assert rc == 0
    doc = json.loads(out)
    statuses = {(s["kind"], s["namespace"], s["name"]): s["status"] for s in doc["statuses"]}
    assert list(statuses)[:2] == [("GatewayClass", None, "blixt"), ("Gateway", "default", "demo")]
    route = statuses[("TCPRoute", "default", "echo-tcp")]["parents"][0]
    assert route["parentRef"] == {"name": "demo", "sectionName": "tcp"}
    assert {c["type"]: (c["status"], c["reason"], c["lastTransitionTime"]) for c in route["conditions"]} == {
        "Accepted": ("True", "Accepted", NOW), "ResolvedRefs": ("True", "ResolvedRefs", NOW)}
    assert statuses[("Gateway", "default", "demo")]["addresses"] == [{"type": "IPAddress", "value": "198.18.200.0"}]
    assert doc["addresses"] == {"default/demo": ["198.18.200.0"]}
    assert doc["dataplane"]["node"] == "node-b"
    assert doc["dataplane"]["services"][1] == {
        "name": "gateway/default/demo/udp", "address": "198.18.200.0", "port": 8081, "protocol": "udp",
        "affinity_timeout": 0,
        "backends": [{"address": "10.244.1.5", "port": 9001, "weight": 1, "masquerade": True},
                     {"address": "10.244.2.7", "port": 9001, "weight": 1, "masquerade": False}]}
    assert doc["skipped"] == []


def test_json_input_lists_and_stdin(files):
    # `kubectl get -o json` style: a List whose items carry their kinds.
    objs = [offline.read_documents(str(p)) for p in SAMPLES]
    listing = {"apiVersion": "v1", "kind": "List", "items": [o for docs in objs for o in docs]}
    rc, out, _ = translate("-", stdin=json.dumps(listing))
    assert rc == 0
    assert "  Gateway default/demo: 198.18.200.0" in out
    # A typed list's items may omit kind and apiVersion.
    gw_list = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayList",
               "items": [{k: v for k, v in objs[1][0].items() if k not in ("kind", "apiVersion")}]}
    rc, out, _ = translate(str(SAMPLES[0]), files("gws.json", json.dumps(gw_list)))
    assert rc == 0 and "  Gateway default/demo: 198.18.200.0" in out


def test_unknown_kinds_are_skipped_and_listed(files):
    extra = files("extra.yaml", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: x}\n---\n"
                                "apiVersion: example.com/v1\nkind: Gateway\nmetadata: {name: g, namespace: x}\n")
    rc, out, err = translate(*map(str, SAMPLES), extra)
    assert rc == 0
    assert err.splitlines() == [
        "blixt translate: warning: skipped Deployment x/web (apps/v1): not a kind blixt reads",
        "blixt translate: warning: skipped Gateway x/g (example.com/v1): not a kind blixt reads",
    ]
    assert "  Gateway default/demo: 198.18.200.0" in out


def test_an_object_given_twice_warns_and_the_last_counts(files):
    moved = files("moved.yaml", (SAMPLES[1].read_text().replace("port: 8080", "port: 7070")))
    rc, out, err = translate(*map(str, SAMPLES), moved)
    assert rc == 0
    assert err == ("blixt translate: warning: Gateway default/demo (gateway.networking.k8s.io/v1) is given "
                   "more than once; the last one counts\n")
    assert "  198.18.200.0:7070/tcp  gateway/default/demo/tcp" in out and ":8080/tcp" not in out


def test_objects_without_a_string_kind_are_skipped(files):
    rc, _, err = translate(files("odd.yaml", "apiVersion: v1\nkind: [Service]\nmetadata: [x]\n"))
    assert rc == 0
    assert err == "blixt translate: warning: skipped ['Service'] None (v1): not a kind blixt reads\n"


def test_foreign_gateway_class_is_noted(files):
    rc, out, err = translate(*map(str, SAMPLES), controller_name="example.com/other")
    assert rc == 0
    assert "GatewayClass blixt has controllerName 'gateway.networking.k8s.io/blixt', not 'example.com/other'" in err
    assert "(none: no GatewayClass with this controllerName)" in out and "(no services)" in out


@pytest.mark.parametrize("text, expected", [
    ("kind: Gateway\nmetadata: [\n", "not valid YAML or JSON"),
    ("apiVersion: v1\nkind: Service\napiVersion: v1\n", "found key 'apiVersion' twice"),
    ("- 1\n- 2\n", "document 1 is a list, not an object"),
    ("apiVersion: v1\nkind: Service\nmetadata: {namespace: default}\n", "Service default/None (v1) has no metadata.name"),
])
def test_bad_input_exits_2(files, text, expected):
    path = files("bad.yaml", text)
    rc, out, err = translate(path)
    assert rc == 2 and out == ""
    assert err.startswith(f"blixt translate: {path}") and expected in err


def test_unreadable_file_exits_2(tmp_path):
    missing = tmp_path / "missing.yaml"
    rc, _, err = translate(str(missing))
    assert rc == 2 and f"cannot read {missing}" in err


def test_every_snapshot_field_is_filled_from_some_kind():
    fields = {f.name for f in dataclasses.fields(Snapshot)}
    assert {r.name for r in offline.RESOURCES.values()} == fields


def test_command_line(files):
    eps = files("eps.yaml", ENDPOINTS)
    res = subprocess.run([sys.executable, "-m", "blixt", "translate", *sum((["-f", str(p)] for p in SAMPLES), []),
                          "-f", eps, "--node", "node-b"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "    -> 10.244.2.7:9000  weight 1  masquerade no" in res.stdout
    help_text = subprocess.run([sys.executable, "-m", "blixt", "--help"], capture_output=True, text=True).stdout
    assert "translate" in help_text
    assert "With `agent --proxy-services` it\nalso serves Kubernetes Services" in help_text
    res = subprocess.run([sys.executable, "-m", "blixt", "translate"], capture_output=True, text=True)
    assert res.returncode == 2 and "-f/--file" in res.stderr
