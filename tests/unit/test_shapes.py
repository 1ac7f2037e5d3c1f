"""blixt.shapes: the JSON types of the fields the translation reads, checked
on objects from files. FULL sets every field of the table on one object of
each kind; each field in turn is then given every wrong type (refused, with
one message naming the field) and null (let through, and the translation
copes)."""

from __future__ import annotations

import copy
import io
import ipaddress
import json
import pathlib
from unittest import mock

import pytest

from blixt import offline, shapes
from blixt.translate import CONTROLLER_NAME, translate
from blixt.translate.proxy import ProxyOptions

pytestmark = pytest.mark.unit

GROUP = "gateway.networking.k8s.io"
EARLIER = "2025-01-01T00:00:00Z"
NOW = "2025-06-01T12:00:00Z"
CONDS = [{"type": "Accepted", "status": "True", "lastTransitionTime": EARLIER}]


def meta(name, ns=None, **labels):
    m = {"name": name, "generation": 1, "creationTimestamp": EARLIER, "labels": labels or {"app": name}}
    return {**m, "namespace": ns} if ns else m


PARENT = {"group": GROUP, "kind": "Gateway", "namespace": "default", "name": "gw", "sectionName": "tcp", "port": 9000}
POOL_REF = {"group": "", "kind": "ConfigMap", "name": "pool", "namespace": "blixt-system"}

# One object of each kind, every field of shapes.KINDS set (checked below),
# chained so that the translation goes all the way: class, Gateway, route,
# Service, endpoints. Through JSON, so that no two places share a value.
FULL = json.loads(json.dumps([
    {"apiVersion": "v1", "kind": "Namespace", "metadata": meta("default", team="a")},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("pool", "blixt-system"),
     "data": {"addresses": "192.0.2.0/30"}},
    {"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass", "metadata": meta("blixt"),
     "spec": {"controllerName": CONTROLLER_NAME, "parametersRef": POOL_REF}, "status": {"conditions": CONDS}},
    {"apiVersion": f"{GROUP}/v1", "kind": "Gateway", "metadata": meta("gw", "default"),
     "spec": {"gatewayClassName": "blixt",
              "listeners": [{"name": "tcp", "port": 9000, "protocol": "TCP", "allowedRoutes": {
                  "namespaces": {"from": "Selector", "selector": {
                      "matchLabels": {"team": "a"},
                      "matchExpressions": [{"key": "team", "operator": "In", "values": ["a"]}]}},
                  "kinds": [{"group": GROUP, "kind": "TCPRoute"}]}}],
              "addresses": [{"type": "IPAddress", "value": "192.0.2.1"}],
              "infrastructure": {"parametersRef": {**POOL_REF, "namespace": "default"}}},
     "status": {"addresses": [{"value": "192.0.2.1"}], "conditions": CONDS,
                "listeners": [{"name": "tcp", "conditions": CONDS}]}},
    {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta("pool", "default"),
     "data": {"addresses": "192.0.2.0/30"}},
    {"apiVersion": f"{GROUP}/v1alpha2", "kind": "TCPRoute", "metadata": meta("r", "default"),
     "spec": {"parentRefs": [PARENT], "rules": [{"backendRefs": [
         {"group": "", "kind": "Service", "namespace": "default", "name": "svc", "port": 80, "weight": 1}]}]},
     "status": {"parents": [{"controllerName": CONTROLLER_NAME, "parentRef": PARENT, "conditions": CONDS}]}},
    {"apiVersion": f"{GROUP}/v1alpha2", "kind": "UDPRoute", "metadata": meta("u", "default"),
     "spec": {"parentRefs": [PARENT], "rules": [{"backendRefs": [
         {"group": "", "kind": "Service", "namespace": "backends", "name": "dns", "port": 53, "weight": 2}]}]},
     "status": {"parents": [{"controllerName": "example.com/other", "parentRef": PARENT, "conditions": CONDS}]}},
    {"apiVersion": f"{GROUP}/v1beta1", "kind": "ReferenceGrant", "metadata": meta("grant", "backends"),
     "spec": {"from": [{"group": GROUP, "kind": "UDPRoute", "namespace": "default"}],
              "to": [{"group": "", "kind": "Service", "name": "dns"}]}},
    {"apiVersion": "v1", "kind": "Service", "metadata": meta("svc", "default"),
     "spec": {"type": "LoadBalancer", "clusterIP": "10.96.0.10", "clusterIPs": ["10.96.0.10"],
              "externalIPs": ["198.51.100.9"],
              "ports": [{"name": "", "port": 80, "protocol": "TCP", "nodePort": 30080}],
              "sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
              "externalTrafficPolicy": "Local", "internalTrafficPolicy": "Cluster", "healthCheckNodePort": 30500,
              "loadBalancerSourceRanges": ["10.0.0.0/8"]},
     "status": {"loadBalancer": {"ingress": [{"ip": "198.51.100.1", "ipMode": "VIP"}]}}},
    {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
     "metadata": meta("svc-a", "default", **{"kubernetes.io/service-name": "svc"}),
     "addressType": "IPv4", "ports": [{"name": "", "port": 8080, "protocol": "TCP"}],
     "endpoints": [{"addresses": ["10.1.0.1"], "conditions": {"ready": True, "serving": True, "terminating": False},
                    "nodeName": "node-a", "hints": {"forZones": [{"name": "z1"}], "forNodes": [{"name": "node-a"}]}}]},
]))

# A value of each JSON type, and how messages name it.
VALUES = [([], "a list"), ({}, "a mapping"), ("80", "a string"), (80, "an integer"), (True, "a boolean"),
          (80.0, "a number")]
EXPECTED = {list: "a list", dict: "a mapping", str: "a string", int: "an integer", bool: "a boolean"}


def expected_of(shape) -> str:
    return EXPECTED[type(shape) if isinstance(shape, (list, dict)) else shape]


def load(objs):
    """offline.load on the objects as read from stdin (PyYAML's parse, the
    slow part, left out: test_load_refuses_naming_file_object_and_field has it)."""
    with mock.patch.object(offline, "read_documents", lambda path, stdin=None: copy.deepcopy(objs)):
        return offline.load(["-"])


def run(snapshot):
    return translate(snapshot, now=NOW, node_name="node-a",
                     services=ProxyOptions(node="node-a", node_ips=(ipaddress.IPv4Address("10.0.0.1"),)))


def path_text(keys) -> str:
    out = ""
    for k in keys:
        if isinstance(k, int):
            out += f"[{k}]"
        elif k.isidentifier():
            out += f".{k}" if out else k
        else:
            out += f"[{k!r}]"
    return out


def nodes(shape, value, keys=()):
    """(keys, shape) of value and of everything in it the shape describes."""
    if keys:
        yield keys, shape
    if isinstance(shape, list):
        for i, item in enumerate(value):
            yield from nodes(shape[0], item, (*keys, i))
    elif isinstance(shape, dict):
        for k, sub in (((k, shape[str]) for k in value) if str in shape else shape.items()):
            if value.get(k) is not None:
                yield from nodes(sub, value[k], (*keys, k))


def unset(shape, value, keys=()):
    """Where value leaves a field of the shape out, or a list or map empty."""
    if isinstance(shape, (list, dict)) and not value:
        yield path_text(keys)
    if isinstance(shape, list):
        for i, item in enumerate(value):
            yield from unset(shape[0], item, (*keys, i))
    elif isinstance(shape, dict):
        for k, sub in (((k, shape[str]) for k in value) if str in shape else shape.items()):
            if value.get(k) is None:
                yield path_text((*keys, k))
            else:
                yield from unset(sub, value[k], (*keys, k))


def replaced(obj, keys, value):
    obj = copy.deepcopy(obj)
    node = obj
    for k in keys[:-1]:
        node = node[k]
    node[keys[-1]] = value
    return obj


def every_field():
    return [pytest.param(i, keys, shape, id=f"{obj['kind']}-{i}:{path_text(keys)}")
            for i, obj in enumerate(FULL) for keys, shape in nodes(shapes.KINDS[obj["kind"]], obj)]


def test_every_kind_offline_reads_has_a_shape():
    assert set(shapes.KINDS) == {kind for _, kind in offline.RESOURCES}


def test_full_sets_every_field_of_every_kind():
    """So that the tests below try every field the table lists."""
    assert {o["kind"] for o in FULL} == set(shapes.KINDS)
    for obj in FULL:
        assert list(unset(shapes.KINDS[obj["kind"]], obj)) == [], obj["kind"]


def test_full_passes_and_translates_all_the_way():
    for obj in FULL:
        assert shapes.problems(obj["kind"], obj) == [], obj["kind"]
    t = run(load(FULL).snapshot)
    gateway = [s for s in t.dataplane.services if s.name == "gateway/default/gw/tcp"]
    assert [(str(b.address), b.port) for s in gateway for b in s.backends] == [("10.1.0.1", 8080)]
    assert any(s.name.startswith("service/default/svc") for s in t.dataplane.services)


@pytest.mark.parametrize("i, keys, shape", every_field())
def test_a_wrong_type_anywhere_is_refused_by_name(i, keys, shape):
    obj = FULL[i]
    expected = expected_of(shape)
    for value, found in VALUES:
        if found == expected:
            continue
        assert shapes.problems(obj["kind"], replaced(obj, keys, value)) == [
            f"{path_text(keys)}: expected {expected}, got {found}"]


@pytest.mark.parametrize("i, keys, shape", every_field())
def test_null_reads_as_unset_and_the_translation_copes(i, keys, shape):
    """A field may be null; a list item may not (nothing reads it as unset)."""
    obj = replaced(FULL[i], keys, None)
    if isinstance(keys[-1], int):
        assert shapes.problems(obj["kind"], obj) == [f"{path_text(keys)}: expected {expected_of(shape)}, got null"]
        return
    assert shapes.problems(obj["kind"], obj) == []
    objs = [*FULL[:i], obj, *FULL[i + 1:]]
    if keys in (("metadata",), ("metadata", "name")):  # offline.load files objects by name
        with pytest.raises(offline.InputError, match="has no metadata.name"):
            load(objs)
        return
    run(load(objs).snapshot)


def test_missing_fields_are_fine():
    for kind in shapes.KINDS:
        assert shapes.problems(kind, {"kind": kind}) == []
        assert shapes.problems(kind, {"kind": kind, "metadata": {}, "spec": {}, "status": {}}) == []


def test_fields_the_translation_does_not_read_are_not_looked_at():
    gw = {"metadata": {"name": "gw", "annotations": [1]},
          "spec": {"listeners": [{"name": "tcp", "port": 80, "hostname": 5, "tls": "yes"}]}, "extra": 1}
    assert shapes.problems("Gateway", gw) == []
    assert shapes.problems("ConfigMap", {"data": {"addresses": "10.0.0.0/30", "other": 5}}) == []
    assert shapes.problems("Deployment", {"spec": []}) == []  # not a kind blixt reads


@pytest.mark.parametrize("kind, obj, problem", [
    ("Gateway", {"spec": {"listeners": [{"port": [80]}]}}, "spec.listeners[0].port: expected an integer, got a list"),
    ("Gateway", {"spec": {"listeners": ["tcp"]}}, "spec.listeners[0]: expected a mapping, got a string"),
    ("Gateway", {"spec": {"listeners": {"name": "tcp"}}}, "spec.listeners: expected a list, got a mapping"),
    ("Gateway", {"spec": {"listeners": [None]}}, "spec.listeners[0]: expected a mapping, got null"),
    ("Gateway", {"spec": {"listeners": [{"port": "80"}]}}, "spec.listeners[0].port: expected an integer, got a string"),
    # YAML's `port: 80.0` and `port: yes`: not JSON integers.
    ("Gateway", {"spec": {"listeners": [{"port": 80.0}]}}, "spec.listeners[0].port: expected an integer, got a number"),
    ("Gateway", {"spec": {"listeners": [{"port": True}]}}, "spec.listeners[0].port: expected an integer, got a boolean"),
    ("Gateway", {"spec": {"listeners": [{"allowedRoutes": {"namespaces": {"selector": {"matchExpressions": [
        {"key": "team", "operator": "In", "values": "a"}]}}}}]}},
     "spec.listeners[0].allowedRoutes.namespaces.selector.matchExpressions[0].values: expected a list, got a string"),
    ("Service", {"spec": []}, "spec: expected a mapping, got a list"),
    ("Service", {"metadata": "x"}, "metadata: expected a mapping, got a string"),
    ("Service", {"spec": {"ports": {}}}, "spec.ports: expected a list, got a mapping"),
    ("Service", {"spec": {"ports": [{"port": 80, "nodePort": "30000"}]}},
     "spec.ports[0].nodePort: expected an integer, got a string"),
    ("Service", {"status": {"loadBalancer": {"ingress": [{"ip": ["1.2.3.4"]}]}}},
     "status.loadBalancer.ingress[0].ip: expected a string, got a list"),
    ("EndpointSlice", {"metadata": {"labels": {"kubernetes.io/service-name": ["svc"]}}},
     "metadata.labels['kubernetes.io/service-name']: expected a string, got a list"),
    ("EndpointSlice", {"endpoints": [{"addresses": {"ip": "10.0.0.1"}}]},
     "endpoints[0].addresses: expected a list, got a mapping"),
    ("EndpointSlice", {"endpoints": [{"conditions": {"ready": "true"}}]},
     "endpoints[0].conditions.ready: expected a boolean, got a string"),
    ("Namespace", {"metadata": {"labels": {"team": 1}}}, "metadata.labels.team: expected a string, got an integer"),
    ("ConfigMap", {"data": "addresses: 10.0.0.0/30"}, "data: expected a mapping, got a string"),
    ("TCPRoute", {"spec": {"rules": [{"backendRefs": [{"weight": "1"}]}]}},
     "spec.rules[0].backendRefs[0].weight: expected an integer, got a string"),
    ("UDPRoute", {"status": {"parents": [{"parentRef": "gw"}]}},
     "status.parents[0].parentRef: expected a mapping, got a string"),
    ("ReferenceGrant", {"spec": {"from": {"kind": "TCPRoute"}}}, "spec.from: expected a list, got a mapping"),
    ("GatewayClass", {"status": {"conditions": [{"type": ["Accepted"]}]}},
     "status.conditions[0].type: expected a string, got a list"),
])
def test_messages(kind, obj, problem):
    assert shapes.problems(kind, obj) == [problem]


def test_every_problem_is_listed_in_order():
    gw = {"metadata": {"generation": "1"}, "spec": {"listeners": [{"port": "80"}, "udp"], "addresses": {}}}
    assert shapes.problems("Gateway", gw) == [
        "metadata.generation: expected an integer, got a string",
        "spec.listeners[0].port: expected an integer, got a string",
        "spec.listeners[1]: expected a mapping, got a string",
        "spec.addresses: expected a list, got a mapping",
    ]


def test_unprintable_keys_stay_on_one_line():
    (problem,) = shapes.problems("Namespace", {"metadata": {"labels": {"a\nb": 1}}})
    assert problem == "metadata.labels['a\\nb']: expected a string, got an integer"


# -- through offline.load: the file and the object named ---------------------------

def test_load_refuses_naming_file_object_and_field(tmp_path):
    path = tmp_path / "objs.yaml"
    path.write_text("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
                    "spec:\n  listeners:\n  - {name: tcp, protocol: TCP, port: [80]}\n")
    with pytest.raises(offline.InputError) as e:
        offline.load([str(path)])
    # No namespace: named as filed, in default.
    assert str(e.value) == f"{path}: Gateway default/gw: spec.listeners[0].port: expected an integer, got a list"
    # Through stdin, in a List as `kubectl get -o json` prints it.
    text = json.dumps({"apiVersion": "v1", "kind": "List", "items": [
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"}, "spec": []}]})
    with pytest.raises(offline.InputError) as e:
        offline.load(["-"], stdin=io.StringIO(text))
    assert str(e.value) == "stdin: Service x/s: spec: expected a mapping, got a list"


def test_load_names_what_it_can_of_the_object():
    cases = [
        ({"apiVersion": "v1", "kind": "Service", "metadata": "x"}, "stdin: Service: metadata: expected a mapping"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": ["x"]}},
         "stdin: Service s: metadata.namespace: expected a string, got a list"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": 5, "namespace": "x"}},
         "stdin: Service x/(no name): metadata.name: expected a string, got an integer"),
        ({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "a\nb"}, "spec": []},
         "stdin: Service 'default/a\\nb': spec: expected a mapping, got a list"),
    ]
    for obj, start in cases:
        with pytest.raises(offline.InputError) as e:
            load([obj])
        assert str(e.value).startswith(start) and "\n" not in str(e.value), str(e.value)


def test_load_counts_the_other_problems():
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "namespace": "x"},
           "spec": {"ports": [{"port": "80", "protocol": 6}], "clusterIP": 10}}
    with pytest.raises(offline.InputError) as e:
        load([svc])
    assert str(e.value) == "stdin: Service x/s: spec.clusterIP: expected a string, got an integer (and 2 more)"


def test_samples_pass():
    samples = sorted((pathlib.Path(__file__).resolve().parents[2] / "samples").glob("*.yaml"))
    assert samples
    for path in samples:
        for obj in offline.read_documents(str(path)):
            assert shapes.problems(obj["kind"], obj) == [], path
