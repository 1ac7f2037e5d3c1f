"""The health, readiness and metrics endpoint."""

from __future__ import annotations

import urllib.error
import urllib.request

import pytest

from blixt.kube import metrics
from blixt.kube.serve import Server, parse_bind

pytestmark = pytest.mark.unit


def _get(server: Server, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{server.port}{path}", timeout=5) as r:
            return r.status, r.headers["Content-Type"], r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.headers["Content-Type"], e.read().decode()


@pytest.fixture
def serve():
    servers: list[Server] = []

    def start(**kw) -> Server:
        s = Server(**kw)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


def test_healthz_answers_while_the_process_serves(serve):
    server = serve(ready=lambda: False)
    assert server.port > 0
    assert _get(server, "/healthz")[0] == 200
    assert _get(server, "/nothing")[0] == 404


def test_readyz_follows_the_callable(serve):
    state = {"ready": False}
    server = serve(ready=lambda: state["ready"])
    assert _get(server, "/readyz")[0] == 503
    state["ready"] = True
    assert _get(server, "/readyz")[0] == 200
    assert _get(server, "/readyz?verbose")[0] == 200


def test_a_failing_readiness_check_is_not_ready(serve):
    def broken() -> bool:
        raise RuntimeError("cache not built")

    status, _, body = _get(serve(ready=broken), "/readyz")
    assert status == 503 and "cache not built" in body


def test_metrics_exposes_the_blixt_metrics(serve):
    metrics.STATUS_WRITES.labels("Gateway", "written").inc()
    metrics.WATCH_EVENTS.labels("gateways", "ADDED").inc()
    metrics.WATCH_RESTARTS.labels("gateways", "expired").inc()
    metrics.RECONCILES.labels("ok").inc()
    metrics.RECONCILE_DURATION.observe(0.02)
    metrics.LEADER.labels("blixt-system/blixt-controller").set(1)
    metrics.DATAPLANE_APPLIES.labels("ok").inc()
    metrics.DATAPLANE_SERVICES.set(3)
    metrics.DATAPLANE_BACKENDS.set(7)

    status, content_type, body = _get(serve(), "/metrics")
    assert status == 200 and content_type.startswith("text/plain")
    for line in (
        'blixt_status_writes_total{kind="Gateway",result="written"}',
        'blixt_watch_events_total{resource="gateways",type="ADDED"}',
        'blixt_watch_restarts_total{reason="expired",resource="gateways"}',
        'blixt_reconcile_total{result="ok"}',
        "blixt_reconcile_duration_seconds_count",
        'blixt_leader{lease="blixt-system/blixt-controller"} 1.0',
        'blixt_dataplane_applies_total{result="ok"}',
        "blixt_dataplane_services 3.0",
        "blixt_dataplane_backends 7.0",
        "process_cpu_seconds_total",
    ):
        assert line in body, f"{line} missing from /metrics"


def test_stop_frees_the_port(serve):
    server = Server(bind="127.0.0.1:0")
    port = server.port
    server.stop()
    again = serve(bind=f"127.0.0.1:{port}")
    assert _get(again, "/healthz")[0] == 200


def test_parse_bind():
    assert parse_bind("127.0.0.1:8080") == ("127.0.0.1", 8080)
    assert parse_bind(":9090") == ("0.0.0.0", 9090)
    assert parse_bind("[::1]:0") == ("::1", 0)
    with pytest.raises(ValueError):
        parse_bind("localhost")


def test_metrics_named_in_the_query_are_the_only_ones_collected(serve):
    """`?name[]=...` (Prometheus' convention): only those metrics, and a
    collector of other names is not asked at all (the agent's per-frontend
    counters read every frontend's entry from the kernel)."""
    from prometheus_client import CollectorRegistry, Gauge
    from prometheus_client.core import CounterMetricFamily

    asked = []

    class Expensive:
        def describe(self):
            return [CounterMetricFamily("expensive", "read from the kernel")]

        def collect(self):
            asked.append(1)
            yield CounterMetricFamily("expensive", "read from the kernel", value=1)

    registry = CollectorRegistry()
    Gauge("cheap", "a gauge", registry=registry).set(4)
    Gauge("other", "another gauge", registry=registry).set(5)
    registry.register(Expensive())
    server = serve(registry=registry)
    _, _, body = _get(server, "/metrics?name[]=cheap&name[]=other")
    assert "cheap 4.0" in body and "other 5.0" in body and "expensive" not in body
    assert not asked
    _, _, body = _get(server, "/metrics")
    assert "expensive_total 1.0" in body and asked
