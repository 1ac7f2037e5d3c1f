"""blixt.translate.health: kube-proxy's healthCheckNodePort answers."""

from __future__ import annotations

import ipaddress
import json

import pytest

from blixt.translate import health
from blixt.translate.endpoints import Endpoint

pytestmark = pytest.mark.unit


def ep(ip, node, ready=True, port=80):
    return Endpoint(ipaddress.IPv4Address(ip), port, node, ready=ready)


def test_local_endpoints_counts_distinct_ready_local_ips_over_all_ports():
    http = [ep("10.0.0.1", "a"), ep("10.0.0.2", "a", ready=False), ep("10.0.0.3", "b")]
    https = [ep("10.0.0.1", "a", port=443), ep("10.0.0.4", "a", port=443)]
    assert health.local_endpoints([http, https], "a") == 2
    assert health.local_endpoints([http, https], "c") == 0


@pytest.mark.parametrize("local,healthy,status", [(2, True, 200), (0, True, 503), (2, False, 503)])
def test_status_headers_and_body(local, healthy, status):
    code, headers, body = health.response("ns", "web", local, healthy)
    assert code == status
    assert headers["X-Load-Balancing-Endpoint-Weight"] == str(local)
    assert headers["Content-Type"] == "application/json"
    assert json.loads(body) == {"service": {"namespace": "ns", "name": "web"},
                                "localEndpoints": local, "serviceProxyHealthy": healthy}
    # kube-proxy's layout: tab-indented, no trailing newline.
    assert body.startswith(b'{\n\t"service": {\n\t\t"namespace": "ns",') and body.endswith(b"}")
