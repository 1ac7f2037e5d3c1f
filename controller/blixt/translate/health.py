"""The answers of a Service's healthCheckNodePort (LoadBalancer Services with
externalTrafficPolicy Local), as kube-proxy v1.35 gives them, so that cloud
load balancers keep working when blixt replaces it. Pure: the HTTP server
that serves them lives with the agent."""

from __future__ import annotations

import json
from typing import Iterable

from .endpoints import Endpoint


def local_endpoints(ports: Iterable[Iterable[Endpoint]], node: str) -> int:
    """How many distinct IPs of this node's ready endpoints the Service has,
    over all of its ports: the count kube-proxy reports (and weighs by)."""
    return len({e.ip for eps in ports for e in eps if e.ready and e.local(node)})


def response(namespace: str, name: str, local: int, proxy_healthy: bool) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body): 200 while the node has a local endpoint and
    the proxy is healthy, else 503; the body is kube-proxy's JSON, tab-indented."""
    body = json.dumps({"service": {"namespace": namespace, "name": name},
                       "localEndpoints": local, "serviceProxyHealthy": proxy_healthy}, indent="\t")
    headers = {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff",
               "X-Load-Balancing-Endpoint-Weight": str(local)}
    return (200 if local and proxy_healthy else 503), headers, body.encode()
