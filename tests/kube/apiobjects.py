"""Helpers for the tests of blixt.kube: waiting, creating and cleaning up
objects through the raw API, and valid manifests of each watched type."""

from __future__ import annotations

from blixt.kube import rest
from blixt.kube.resources import Resource

CONTROLLER = "blixt.io/test-controller"








class Objects:
    """Creates objects through the raw API and deletes them all afterwards."""

    def __init__(self, api):
        self.api = api
        self.made: list[tuple[Resource, str | None, str]] = []

    def create(self, resource: Resource, obj: dict) -> dict:
        ns = obj["metadata"].get("namespace") if resource.namespaced else None
        created = rest.request(self.api, "POST", resource.path(ns), body=obj)
        self.made.append((resource, ns, obj["metadata"]["name"]))
        return created

    def get(self, resource: Resource, namespace: str | None, name: str) -> dict:
        return rest.request(self.api, "GET", resource.path(namespace, name))

    def patch(self, resource: Resource, namespace: str | None, name: str, patch: dict,
              subresource: str | None = None) -> dict:
        return rest.request(self.api, "PATCH", resource.path(namespace, name, subresource),
                            body=patch, content_type=rest.MERGE_PATCH)

    def delete(self, resource: Resource, namespace: str | None, name: str) -> None:
        try:
            rest.request(self.api, "DELETE", resource.path(namespace, name))
        except rest.ApiError as e:
            if e.status != 404:
                raise
        if resource.kind == "Namespace":
            # No namespace controller runs in the test control plane: finalize
            # by hand, or the namespace would stay Terminating.
            try:
                ns = self.get(resource, None, name)
                ns["spec"]["finalizers"] = []
                rest.request(self.api, "PUT", f"/api/v1/namespaces/{name}/finalize", body=ns)
            except rest.ApiError as e:
                if e.status != 404:
                    raise

    def cleanup(self) -> None:
        for resource, ns, name in reversed(self.made):
            self.delete(resource, ns, name)


# Valid manifests: each passes the CRDs' schema and CEL rules.

def _meta(name: str, namespace: str | None) -> dict:
    return {"name": name, "namespace": namespace} if namespace else {"name": name}


def service(name: str, namespace: str = "default") -> dict:
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(name, namespace),
            "spec": {"ports": [{"name": "tcp", "port": 80, "protocol": "TCP"}]}}


def namespace(name: str) -> dict:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": _meta(name, None)}


def config_map(name: str, namespace: str = "default", **data: str) -> dict:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": _meta(name, namespace), "data": data}


def endpoint_slice(name: str, namespace: str = "default", service_name: str = "svc") -> dict:
    return {"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {**_meta(name, namespace), "labels": {"kubernetes.io/service-name": service_name}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": True}}],
            "ports": [{"name": "tcp", "port": 8080, "protocol": "TCP"}]}


def gateway_class(name: str, controller: str = CONTROLLER) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
            "metadata": _meta(name, None), "spec": {"controllerName": controller}}


def gateway(name: str, namespace: str = "default", class_name: str = "blixt", port: int = 9000) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": _meta(name, namespace),
            "spec": {"gatewayClassName": class_name,
                     "listeners": [{"name": "tcp", "protocol": "TCP", "port": port}]}}


def _route(kind: str, name: str, namespace: str, gateway_name: str, backend: str) -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": kind,
            "metadata": _meta(name, namespace),
            "spec": {"parentRefs": [{"name": gateway_name}],
                     "rules": [{"backendRefs": [{"name": backend, "port": 80}]}]}}


def tcp_route(name: str, namespace: str = "default", gateway_name: str = "gw", backend: str = "svc") -> dict:
    return _route("TCPRoute", name, namespace, gateway_name, backend)


def udp_route(name: str, namespace: str = "default", gateway_name: str = "gw", backend: str = "svc") -> dict:
    return _route("UDPRoute", name, namespace, gateway_name, backend)


def reference_grant(name: str, namespace: str = "default", from_namespace: str = "other") -> dict:
    return {"apiVersion": "gateway.networking.k8s.io/v1beta1", "kind": "ReferenceGrant",
            "metadata": _meta(name, namespace),
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": "TCPRoute",
                               "namespace": from_namespace}],
                     "to": [{"group": "", "kind": "Service"}]}}


def condition(type_: str, status: str = "True", reason: str | None = None, message: str = "",
              generation: int = 1, when: str = "2026-01-01T00:00:00Z") -> dict:
    return {"type": type_, "status": status, "reason": reason or type_, "message": message,
            "observedGeneration": generation, "lastTransitionTime": when}
