"""Small builders of Gateway API / core objects as the API server returns
them (camelCase dicts), and a Snapshot assembled from any mix of them."""

from __future__ import annotations

from blixt.translate import CONTROLLER_NAME, Snapshot, translate

GROUP = "gateway.networking.k8s.io"
NOW = "2025-06-01T12:00:00Z"
EARLIER = "2025-01-01T00:00:00Z"


def _meta(name, ns=None, generation=1, created=EARLIER, labels=None):
    m = {"name": name, "generation": generation, "creationTimestamp": created}
    if ns is not None:
        m["namespace"] = ns
    if labels:
        m["labels"] = dict(labels)
    return m


def gateway_class(name="blixt", controller=CONTROLLER_NAME, params=None, generation=1, status=None):
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "GatewayClass",
           "metadata": _meta(name, generation=generation), "spec": {"controllerName": controller}}
    if params is not None:
        obj["spec"]["parametersRef"] = params
    if status is not None:
        obj["status"] = status
    return obj


def pool_ref(name="pool", ns="blixt-system", group="", kind="ConfigMap"):
    ref = {"group": group, "kind": kind, "name": name}
    if ns is not None:
        ref["namespace"] = ns
    return ref


def config_map(name="pool", ns="blixt-system", addresses="10.0.0.0/30", data=None):
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, ns),
            "data": data if data is not None else {"addresses": addresses}}


def listener(name="tcp", port=9000, protocol="TCP", kinds=None, from_=None, selector=None):
    obj = {"name": name, "port": port, "protocol": protocol}
    allowed = {}
    if kinds is not None:
        allowed["kinds"] = [k if isinstance(k, dict) else {"group": GROUP, "kind": k} for k in kinds]
    if from_ is not None:
        allowed["namespaces"] = {"from": from_}
        if selector is not None:
            allowed["namespaces"]["selector"] = selector
    if allowed:
        obj["allowedRoutes"] = allowed
    return obj


def gateway(name="gw", ns="default", listeners=None, cls="blixt", addresses=None, generation=1,
            created=EARLIER, status=None, infra_params=None):
    spec = {"gatewayClassName": cls, "listeners": listeners if listeners is not None else [listener()]}
    if addresses is not None:
        spec["addresses"] = [a if isinstance(a, dict) else {"type": "IPAddress", "value": a} for a in addresses]
    if infra_params is not None:
        spec["infrastructure"] = {"parametersRef": infra_params}
    obj = {"apiVersion": f"{GROUP}/v1", "kind": "Gateway",
           "metadata": _meta(name, ns, generation, created), "spec": spec}
    if status is not None:
        obj["status"] = status
    return obj


def parent(name="gw", ns=None, section=None, port=None, defaults=True):
    ref = {"group": GROUP, "kind": "Gateway"} if defaults else {}
    ref["name"] = name
    if ns is not None:
        ref["namespace"] = ns
    if section is not None:
        ref["sectionName"] = section
    if port is not None:
        ref["port"] = port
    return ref


def backend(name="svc", port=80, ns=None, weight=None, kind=None, group=None):
    ref = {"group": "" if group is None else group, "kind": kind or "Service", "name": name, "port": port,
           "weight": 1 if weight is None else weight}
    if ns is not None:
        ref["namespace"] = ns
    return ref


def route(kind="TCPRoute", name="r", ns="default", parents=None, backends=None, generation=1,
          created=EARLIER, status=None):
    obj = {"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": _meta(name, ns, generation, created),
           "spec": {"parentRefs": parents if parents is not None else [parent()],
                    "rules": [{"backendRefs": backends if backends is not None else [backend()]}]}}
    if status is not None:
        obj["status"] = status
    return obj


def tcp_route(name="r", **kw):
    return route("TCPRoute", name, **kw)


def udp_route(name="r", **kw):
    return route("UDPRoute", name, **kw)


def service(name="svc", ns="default", ports=((None, 80, 8080, "TCP"),)):
    """ports: (name, port, targetPort, protocol)."""
    out = []
    for pname, port, target, proto in ports:
        p = {"port": port, "targetPort": target, "protocol": proto}
        if pname:
            p["name"] = pname
        out.append(p)
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, ns), "spec": {"ports": out}}


def endpoint(ip, ready=True, serving=None, terminating=None, node="node-a"):
    cond = {}
    if ready is not None:
        cond["ready"] = ready
    if serving is not None:
        cond["serving"] = serving
    if terminating is not None:
        cond["terminating"] = terminating
    return {"addresses": [ip], "conditions": cond, "nodeName": node}


def endpoint_slice(service="svc", ns="default", endpoints=(), port=8080, port_name=None, protocol="TCP",
                   name=None, address_type="IPv4"):
    p = {"port": port, "protocol": protocol, "name": port_name or ""}
    eps = [e if isinstance(e, dict) else endpoint(e) for e in endpoints]
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": _meta(name or f"{service}-{len(eps)}-{port}", ns,
                              labels={"kubernetes.io/service-name": service}),
            "addressType": address_type, "ports": [p], "endpoints": eps}


def namespace(name, labels=None):
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": _meta(name, labels={"kubernetes.io/metadata.name": name, **(labels or {})})}


def reference_grant(name="grant", ns="backends", from_kind="TCPRoute", from_ns="default", to_name=None,
                    to_kind="Service", from_group=GROUP):
    to = {"group": "", "kind": to_kind}
    if to_name is not None:
        to["name"] = to_name
    return {"apiVersion": f"{GROUP}/v1beta1", "kind": "ReferenceGrant", "metadata": _meta(name, ns),
            "spec": {"from": [{"group": from_group, "kind": from_kind, "namespace": from_ns}], "to": [to]}}


_FIELDS = {"GatewayClass": "gateway_classes", "Gateway": "gateways", "TCPRoute": "tcp_routes",
           "UDPRoute": "udp_routes", "ReferenceGrant": "reference_grants", "Service": "services",
           "EndpointSlice": "endpoint_slices", "Namespace": "namespaces", "ConfigMap": "config_maps"}


def snapshot(*objs) -> Snapshot:
    fields = {f: {} for f in _FIELDS.values()}
    for o in objs:
        m = o["metadata"]
        key = m["name"] if o["kind"] in ("GatewayClass", "Namespace") else (m["namespace"], m["name"])
        fields[_FIELDS[o["kind"]]][key] = o
    return Snapshot(**fields)


def run(*objs, now=NOW, **kw):
    return translate(snapshot(*objs), now=now, **kw)


def basic(*extra, pool="10.0.0.0/30"):
    """Our class with a pool, plus extra objects."""
    return (gateway_class(params=pool_ref()), config_map(addresses=pool)) + extra


def cond(conditions, ctype):
    found = [c for c in conditions if c["type"] == ctype]
    assert len(found) == 1, f"{ctype} appears {len(found)} times in {conditions}"
    return found[0]


def csr(conditions, ctype):
    """(status, reason) of one condition."""
    c = cond(conditions, ctype)
    return c["status"], c["reason"]
