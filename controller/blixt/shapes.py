"""The JSON types of the fields the translation reads, checked on objects
that `blixt translate` reads from files.

The API server checks every object against its kind's schema when it is
written (the CRDs' structural schemas for Gateway API kinds, the Go types
for core ones), so the controller and the agent only ever see a port that
is an integer, a listener that is a mapping, and so on, and the translation
(blixt.translate) counts on it: it would end in a TypeError or an
AttributeError on a list where a port should be. Files given to `blixt
translate` have been through no API server, so their objects are checked
here for the same types, for the fields the translation reads (the others
do not matter to it), and refused with a message naming the field.

Only types are checked, not values: a port out of range or an unknown
protocol is the translation's to judge, with the condition the controller
would write. An absent field is fine, and so is a null one (the API server
reads it as unset, and so does the translation); a list item is never null.

A shape is one of:
    str, int, bool  a string; an integer (JSON's: not a boolean, nor 80.0); a boolean
    [shape]         a list of items of that shape
    {"f": shape}    a mapping whose listed fields have their shapes (others are not looked at)
    {str: shape}    a mapping whose every value has that shape (labels)
"""

from __future__ import annotations

from typing import Any, Iterator

LABELS = {str: str}
CLUSTER_META = {"name": str, "generation": int, "creationTimestamp": str, "labels": LABELS}
META = {**CLUSTER_META, "namespace": str}  # namespaced kinds'
CONDITIONS = [{"type": str, "status": str, "lastTransitionTime": str}]
SELECTOR = {"matchLabels": LABELS, "matchExpressions": [{"key": str, "operator": str, "values": [str]}]}
PARAMETERS_REF = {"group": str, "kind": str, "name": str, "namespace": str}
PARENT_REF = {"group": str, "kind": str, "namespace": str, "name": str, "sectionName": str, "port": int}
BACKEND_REF = {"group": str, "kind": str, "namespace": str, "name": str, "port": int, "weight": int}
LISTENER = {
    "name": str, "port": int, "protocol": str,
    "allowedRoutes": {"namespaces": {"from": str, "selector": SELECTOR}, "kinds": [{"group": str, "kind": str}]},
}
ROUTE = {
    "metadata": META,
    "spec": {"parentRefs": [PARENT_REF], "rules": [{"backendRefs": [BACKEND_REF]}]},
    "status": {"parents": [{"controllerName": str, "parentRef": PARENT_REF, "conditions": CONDITIONS}]},
}

# Kind -> the shape of its objects: what blixt/translate/*.py reads.
KINDS: dict[str, dict] = {
    "GatewayClass": {
        "metadata": CLUSTER_META,
        "spec": {"controllerName": str, "parametersRef": PARAMETERS_REF},
        "status": {"conditions": CONDITIONS},
    },
    "Gateway": {
        "metadata": META,
        "spec": {
            "gatewayClassName": str,
            "listeners": [LISTENER],
            "addresses": [{"type": str, "value": str}],
            "infrastructure": {"parametersRef": PARAMETERS_REF},
        },
        "status": {
            "addresses": [{"value": str}],
            "conditions": CONDITIONS,
            "listeners": [{"name": str, "conditions": CONDITIONS}],
        },
    },
    "TCPRoute": ROUTE,
    "UDPRoute": ROUTE,
    "ReferenceGrant": {
        "metadata": META,
        "spec": {"from": [{"group": str, "kind": str, "namespace": str}],
                 "to": [{"group": str, "kind": str, "name": str}]},
    },
    "Service": {
        "metadata": META,
        "spec": {
            "type": str, "clusterIP": str, "clusterIPs": [str], "externalIPs": [str],
            "ports": [{"name": str, "port": int, "protocol": str, "nodePort": int}],
            "sessionAffinity": str, "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": int}},
            "externalTrafficPolicy": str, "internalTrafficPolicy": str, "healthCheckNodePort": int,
            "loadBalancerSourceRanges": [str],
        },
        "status": {"loadBalancer": {"ingress": [{"ip": str, "ipMode": str}]}},
    },
    "EndpointSlice": {
        "metadata": META,
        "addressType": str,
        "ports": [{"name": str, "port": int, "protocol": str}],
        "endpoints": [{
            "addresses": [str],
            "conditions": {"ready": bool, "serving": bool, "terminating": bool},
            "nodeName": str,
            "hints": {"forZones": [{"name": str}], "forNodes": [{"name": str}]},
        }],
    },
    "Namespace": {"metadata": CLUSTER_META},
    "ConfigMap": {"metadata": META, "data": {"addresses": str}},
}

_EXPECTED = {str: "a string", int: "an integer", bool: "a boolean", list: "a list", dict: "a mapping"}


def _expected(shape) -> str:
    return _EXPECTED[type(shape) if isinstance(shape, (list, dict)) else shape]


def _found(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float):
        return "a number"
    for t in (bool, int, str, list, dict):  # bool before int: True is an int to Python
        if isinstance(value, t):
            return _EXPECTED[t]
    return f"a {type(value).__name__}"  # YAML's !!binary, !!set, ...


def _fits(shape, value: Any) -> bool:
    if isinstance(shape, (list, dict)):
        return isinstance(value, type(shape))
    return isinstance(value, shape) and not (shape is int and isinstance(value, bool))


def _field(path: str, key: Any) -> str:
    if isinstance(key, str) and key.isidentifier():
        return f"{path}.{key}" if path else key
    return f"{path}[{key!r}]"  # a label key: kubernetes.io/service-name


def _walk(shape, value: Any, path: str) -> Iterator[str]:
    if not _fits(shape, value):
        yield f"{path or 'the object'}: expected {_expected(shape)}, got {_found(value)}"
    elif isinstance(shape, list):
        for i, item in enumerate(value):
            yield from _walk(shape[0], item, f"{path}[{i}]")
    elif isinstance(shape, dict):
        fields = ((k, shape[str]) for k in value) if str in shape else shape.items()
        for key, sub in fields:
            if value.get(key) is not None:
                yield from _walk(sub, value[key], _field(path, key))


def problems(kind: str, obj: dict) -> list[str]:
    """What in obj (an object of that kind) has the wrong type, each as
    "spec.listeners[0].port: expected an integer, got a list"; [] when
    nothing does, or when blixt does not read the kind."""
    shape = KINDS.get(kind)
    if shape is None:
        return []
    return list(_walk(shape, obj, ""))
