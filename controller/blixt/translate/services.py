"""Kubernetes Services -> the frontends a Service proxy serves on a node, as
kube-proxy (v1.35) reads them: every port of the ClusterIP (IPv4 family),
its NodePort, the LoadBalancer ingress IPs in VIP mode and the externalIPs,
with session affinity and loadBalancerSourceRanges. Pure: no I/O, and no
endpoints (endpoints.py chooses those per node).

Not proxied, as kube-proxy: headless Services (clusterIP None or unset),
ExternalName, and Services labelled service.kubernetes.io/service-proxy-name
(another proxy's) or service.kubernetes.io/headless (kube-proxy's watch
selects them out)."""

from __future__ import annotations

import dataclasses
import ipaddress

from .model import is_int, meta

PROXY_NAME_LABEL = "service.kubernetes.io/service-proxy-name"
HEADLESS_LABEL = "service.kubernetes.io/headless"
DEFAULT_AFFINITY_SECONDS = 10800  # the API's default for ClientIP affinity
MAX_AFFINITY_SECONDS = 86400  # the API's maximum, and the dataplane's
PROTOCOLS = {"TCP": "tcp", "UDP": "udp", "SCTP": "sctp"}

CLUSTER_IP, NODE_PORT, LOAD_BALANCER, EXTERNAL_IP = "ClusterIP", "NodePort", "LoadBalancer", "ExternalIP"


@dataclasses.dataclass(frozen=True)
class Frontend:
    service: tuple[str, str]            # namespace, name
    port_name: str                      # selects the EndpointSlice port
    kind: str                           # CLUSTER_IP, NODE_PORT, LOAD_BALANCER or EXTERNAL_IP
    address: ipaddress.IPv4Address | None  # None: the node's NodePort addresses
    port: int
    protocol: str                       # tcp, udp, sctp
    affinity_timeout: int = 0           # seconds of ClientIP affinity; 0: none
    source_ranges: tuple[ipaddress.IPv4Network, ...] = ()  # LoadBalancer only; empty: any source

    @property
    def external(self) -> bool:
        """Subject to externalTrafficPolicy (everything but the ClusterIP)."""
        return self.kind != CLUSTER_IP


def proxied(service: dict) -> bool:
    spec = service.get("spec") or {}
    labels = meta(service).get("labels") or {}
    if PROXY_NAME_LABEL in labels or HEADLESS_LABEL in labels:
        return False
    if spec.get("type") == "ExternalName":
        return False
    return spec.get("clusterIP") not in (None, "", "None")


def _ipv4(value) -> ipaddress.IPv4Address | None:
    try:
        addr = ipaddress.ip_address(str(value).strip())
    except ValueError:
        return None
    return addr if isinstance(addr, ipaddress.IPv4Address) else None


def cluster_ip(service: dict) -> ipaddress.IPv4Address | None:
    spec = service.get("spec") or {}
    for value in spec.get("clusterIPs") or [spec.get("clusterIP")]:
        addr = _ipv4(value)
        if addr is not None:
            return addr
    return None


def affinity_timeout(service: dict) -> int:
    spec = service.get("spec") or {}
    if spec.get("sessionAffinity") != "ClientIP":
        return 0
    timeout = ((spec.get("sessionAffinityConfig") or {}).get("clientIP") or {}).get("timeoutSeconds")
    # The API server rejects a timeout outside 1..86400; should one get here
    # anyway, it reads as unset rather than fail the whole translation.
    return timeout if is_int(timeout) and 0 < timeout <= MAX_AFFINITY_SECONDS else DEFAULT_AFFINITY_SECONDS


def source_ranges(service: dict) -> tuple[ipaddress.IPv4Network, ...]:
    """The IPv4 loadBalancerSourceRanges, whitespace trimmed (validation lets
    it through); unparsable ones left out; any 0.0.0.0/0 means no filter."""
    out = []
    for text in (service.get("spec") or {}).get("loadBalancerSourceRanges") or ():
        try:
            net = ipaddress.ip_network(str(text).strip(), strict=False)
        except ValueError:
            continue
        if isinstance(net, ipaddress.IPv4Network):
            out.append(net)
    if any(n.prefixlen == 0 for n in out):
        return ()
    return tuple(out)


def load_balancer_ips(service: dict) -> list[ipaddress.IPv4Address]:
    """status.loadBalancer.ingress IPs in VIP mode (ipMode unset or VIP);
    ipMode Proxy means the load balancer proxies, so the node does not see the
    IP. Like kube-proxy, whatever the type (the API server clears the status
    when a Service stops being a LoadBalancer)."""
    out = []
    for ing in ((service.get("status") or {}).get("loadBalancer") or {}).get("ingress") or ():
        if ing.get("ipMode") not in (None, "VIP"):
            continue
        addr = _ipv4(ing.get("ip") or "")
        if addr is not None and addr not in out:
            out.append(addr)
    return out


def frontends(service: dict) -> list[Frontend]:
    if not proxied(service):
        return []
    cip = cluster_ip(service)
    if cip is None:  # an IPv6-only Service: nothing for an IPv4 proxy
        return []
    spec = service.get("spec") or {}
    m = meta(service)
    key = (m.get("namespace") or "", m.get("name") or "")
    affinity = affinity_timeout(service)
    lb_ips = load_balancer_ips(service)
    external_ips = []
    for value in spec.get("externalIPs") or ():
        addr = _ipv4(value)
        if addr is not None and addr not in external_ips:
            external_ips.append(addr)
    ranges = source_ranges(service)
    out = []
    for p in spec.get("ports") or ():
        proto = PROTOCOLS.get(p.get("protocol") or "TCP")
        port = p.get("port")
        if proto is None or not is_int(port) or not 1 <= port <= 65535:
            continue
        name = p.get("name") or ""

        def add(kind, addr, number=port, src=()):
            out.append(Frontend(key, name, kind, addr, number, proto, affinity, src))
        add(CLUSTER_IP, cip)
        node_port = p.get("nodePort")  # set only on NodePort and LoadBalancer Services
        if is_int(node_port) and 1 <= node_port <= 65535:
            add(NODE_PORT, None, node_port)
        for addr in lb_ips:
            add(LOAD_BALANCER, addr, src=ranges)
        for addr in external_ips:
            add(EXTERNAL_IP, addr)
    return out
