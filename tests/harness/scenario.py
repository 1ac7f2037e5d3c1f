"""Builders and checks shared by the conformance scenarios."""

from __future__ import annotations

import collections
import json

from .blixt import ECHO_PORT, Node

GROUP = "gateway.networking.k8s.io"
CONTROLLER = "gateway.networking.k8s.io/blixt"


class Scenario:
    CLASS_MANIFEST = """
apiVersion: v1
kind: Namespace
metadata: {name: blixt-system}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: blixt-pool, namespace: blixt-system}
data: {addresses: "198.18.200.0/24"}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: blixt}
spec:
  controllerName: gateway.networking.k8s.io/blixt
  parametersRef: {group: "", kind: ConfigMap, name: blixt-pool, namespace: blixt-system}
"""

    def __init__(self, node: Node, prefix: str):
        self.node = node
        self.prefix = prefix
        self.created: list[tuple[str, str | None, str]] = []

    # -- objects ------------------------------------------------------------

    def create(self, obj: dict) -> dict:
        self.node.cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))
        meta = obj["metadata"]
        self.created.append((obj["kind"], meta.get("namespace"), meta["name"]))
        return obj

    def delete(self, kind: str, namespace: str | None, name: str) -> None:
        args = ["delete", kind, name, "--wait=false", "--ignore-not-found"] + (["-n", namespace] if namespace else [])
        self.node.cluster.kubectl(*args)

    def cleanup(self) -> None:
        for kind, ns, name in reversed(self.created):
            if kind != "Namespace":  # no namespace controller runs here to finalize them
                self.delete(kind, ns, name)

    def namespace(self, suffix: str, labels: dict | None = None) -> str:
        name = f"{self.prefix}-{suffix}"
        self.create({"apiVersion": "v1", "kind": "Namespace",
                     "metadata": {"name": name, "labels": labels or {}}})
        return name

    def gateway(self, ns: str, name: str, listeners: list[dict], addresses: list[dict] | None = None,
                class_name: str = "blixt", infrastructure: dict | None = None) -> dict:
        spec = {"gatewayClassName": class_name, "listeners": listeners}
        if addresses is not None:
            spec["addresses"] = addresses
        if infrastructure is not None:
            spec["infrastructure"] = infrastructure
        return self.create({"apiVersion": f"{GROUP}/v1", "kind": "Gateway",
                            "metadata": {"name": name, "namespace": ns}, "spec": spec})

    @staticmethod
    def listener(name: str, protocol: str, port: int, from_: str = "Same", kinds: list[str] | None = None,
                 selector: dict | None = None) -> dict:
        allowed = {"namespaces": {"from": from_}}
        if selector is not None:
            allowed["namespaces"]["selector"] = selector
        if kinds is not None:
            allowed["kinds"] = [{"kind": k} for k in kinds]
        return {"name": name, "protocol": protocol, "port": port, "allowedRoutes": allowed}

    def service(self, ns: str, name: str, pods: list[int], protocol: str = "TCP", port: int = 8080) -> None:
        """A Service on `port` backed by these pods (their echo servers on ECHO_PORT)."""
        self.create({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
                     "spec": {"ports": [{"name": "p", "protocol": protocol, "port": port,
                                         "targetPort": ECHO_PORT}]}})
        self.node.write_endpoints(ns, name, pods, ports=[("p", protocol, ECHO_PORT)])
        self.created.append(("EndpointSlice", ns, f"{name}-blixt"))

    def route(self, kind: str, ns: str, name: str, parents: list[dict], backends: list[dict]) -> dict:
        return self.create({"apiVersion": f"{GROUP}/v1", "kind": kind, "metadata": {"name": name, "namespace": ns},
                            "spec": {"parentRefs": parents, "rules": [{"backendRefs": backends}]}})

    def grant(self, ns: str, name: str, from_kind: str, from_ns: str, to_name: str | None = None) -> dict:
        to = {"group": "", "kind": "Service"}
        if to_name:
            to["name"] = to_name
        return self.create({"apiVersion": f"{GROUP}/v1beta1", "kind": "ReferenceGrant",
                            "metadata": {"name": name, "namespace": ns},
                            "spec": {"from": [{"group": GROUP, "kind": from_kind, "namespace": from_ns}],
                                     "to": [to]}})

    def serving_gateway(self, pods=(0,), protocols=("TCP",), port: int = 9000) -> tuple[str, str]:
        """The class, a namespace, a Gateway with one listener per protocol on
        `port`, and a route per protocol to a Service on these pods; returns
        (namespace, address) once every protocol reaches exactly those pods."""
        self.node.apply(Scenario.CLASS_MANIFEST)
        ns = self.namespace("a")
        self.gateway(ns, "gw", [Scenario.listener(p.lower(), p, port) for p in protocols])
        for p in protocols:
            self.service(ns, f"svc-{p.lower()}", list(pods), p)
            self.route(f"{p}Route", ns, f"r-{p.lower()}", [{"name": "gw", "sectionName": p.lower()}],
                       [{"name": f"svc-{p.lower()}", "port": 8080}])
        addr = self.address(ns, "gw")
        for p in protocols:
            self.wait_traffic(p, addr, port, {f"pod{i}" for i in pods})
        return ns, addr

    # -- status -------------------------------------------------------------

    def get(self, kind: str, ns: str | None, name: str) -> dict:
        return self.node.get(kind, ns, name)

    @staticmethod
    def conditions(obj_or_list) -> dict[str, tuple[str, str]]:
        conds = obj_or_list if isinstance(obj_or_list, list) else obj_or_list.get("status", {}).get("conditions", [])
        return {c["type"]: (c["status"], c["reason"]) for c in conds}

    def wait_route(self, kind: str, ns: str, name: str, want: dict[str, tuple[str, str]],
                   parent: str | None = None, timeout: float = 30, controller: str = CONTROLLER) -> dict:
        """Until the controller's parents[] entry (for parent, if given) has the wanted conditions."""
        def check():
            route = self.get(kind.lower(), ns, name)
            for p in route.get("status", {}).get("parents", []):
                if p["controllerName"] != controller or (parent and p["parentRef"]["name"] != parent):
                    continue
                conds = self.conditions(p["conditions"])
                gen = route["metadata"]["generation"]
                if all(conds.get(t) == v for t, v in want.items()) and \
                        all(c.get("observedGeneration") == gen for c in p["conditions"]):
                    return p
            return None
        return self.node.wait_for(f"{kind} {ns}/{name} parent conditions {want}", check, timeout)

    def wait_gateway(self, ns: str, name: str, want: dict[str, tuple[str, str]], timeout: float = 30) -> dict:
        def check():
            gw = self.get("gateway", ns, name)
            conds = self.conditions(gw)
            gen = gw["metadata"]["generation"]
            ok = all(conds.get(t) == v for t, v in want.items()) and all(
                c.get("observedGeneration") == gen for c in gw.get("status", {}).get("conditions", []))
            return gw if ok else None
        return self.node.wait_for(f"Gateway {ns}/{name} conditions {want}", check, timeout)

    def address(self, ns: str, name: str) -> str:
        return self.node.gateway_address(ns, name)

    # -- traffic ------------------------------------------------------------

    def who(self, protocol: str, addr: str, port: int, count: int = 20, sport_base: int = 0) -> collections.Counter:
        args = ["tcp" if protocol == "TCP" else "udp", addr, port, "--count", count, "--timeout", 1]
        if sport_base:
            args += ["--sport-base", sport_base]
        res = self.node.client(*args)
        out = collections.Counter(a.split()[0] for a in res["answers"])
        if res["errors"]:
            out["<error>"] = len(res["errors"])
        return out

    def wait_traffic(self, protocol: str, addr: str, port: int, pods: set[str], timeout: float = 20) -> None:
        """Until every answer comes from `pods` (an empty set: every attempt fails)."""
        def check():
            got = self.who(protocol, addr, port)
            if not pods:
                return got if set(got) == {"<error>"} else None
            return got if set(got) == pods else None
        self.node.wait_for(f"{protocol} {addr}:{port} answered by {pods or 'nobody'}", check, timeout)
