"""Per-frontend counters: labels from the applied plan, values from the
stats map at collect time, and the Agent's registration of the collector."""

import types

import pytest
from prometheus_client import CollectorRegistry

from blixt.dataplane import layout
from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.plan import Current, plan
from blixt.node.bpf import BpfError
from blixt.node.frontend_metrics import FrontendCollector
from blixt.processes import Agent

pytestmark = pytest.mark.unit

DESIRED = Dataplane.of([
    Service("198.18.200.0", 8080, "tcp", (Backend("10.0.0.1", 9000),), name="gateway/ns/gw/web"),
    Service(None, 30080, "udp", (Backend("10.0.0.2", 9000),), name="gateway/ns/gw/dns"),
])
PLAN = plan(DESIRED, Current(), MarkConfig())


def samples(collector):
    return {(s.name, s.labels["frontend"], s.labels["name"]): s.value
            for m in collector.collect() for s in m.samples}


def test_series_carry_frontend_and_name_and_the_kernel_values():
    tcp_id = PLAN.service_ids[next(k for k in PLAN.service_ids if k.proto == 6)]
    c = FrontendCollector(lambda: {tcp_id: layout.Stats(packets=40, bytes=3000, new_flows=10)})
    c.track(PLAN)
    got = samples(c)
    web = ("198.18.200.0:8080/tcp", "gateway/ns/gw/web")
    assert got[("blixt_frontend_packets_total", *web)] == 40
    assert got[("blixt_frontend_bytes_total", *web)] == 3000
    assert got[("blixt_frontend_new_connections_total", *web)] == 10
    # No stats entry yet: the frontend is there, at zero.
    assert got[("blixt_frontend_packets_total", "*:30080/udp", "gateway/ns/gw/dns")] == 0
    assert len(got) == 6


def test_before_the_first_apply_there_are_no_series_and_no_map_reads():
    def unreachable():
        raise AssertionError("stats read with nothing to label")
    assert samples(FrontendCollector(unreachable)) == {}


def test_an_unreadable_stats_map_leaves_the_series_out_not_the_scrape():
    def broken():
        raise BpfError("map lookup", "/run/bpfman/fs/maps/1/blixt_stats", 9)
    c = FrontendCollector(broken)
    c.track(PLAN)
    assert samples(c) == {}


class FakeManager:
    settings = types.SimpleNamespace(marks=MarkConfig())

    def stats(self):
        return {1: layout.Stats(7, 700, 2)}


def test_agent_registers_the_collector_once():
    registry = CollectorRegistry()
    agent = Agent(cache=None, manager=FakeManager(), node="n1", registry=registry)
    agent.frontend_metrics.track(PLAN)
    name = PLAN.names[1]
    assert registry.get_sample_value("blixt_frontend_new_connections_total",
                                     {"frontend": "198.18.200.0:8080/tcp", "name": name}) == 2
    with pytest.raises(ValueError, match="Duplicated"):
        Agent(cache=None, manager=FakeManager(), node="n1", registry=registry)
