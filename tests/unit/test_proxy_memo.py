"""blixt.translate.Memo for Services: the agent translates them again on
every pass; with the memo, a Service whose object, EndpointSlices and
options are the very objects of the last pass is not translated again, and
the result is always the one a translation without the memo gives."""

from __future__ import annotations

import copy
import ipaddress

import pytest

from blixt import translate
from blixt.translate import proxy

pytestmark = pytest.mark.unit

OPTS = proxy.ProxyOptions(node="n", pod_cidrs=(ipaddress.IPv4Network("10.244.0.0/16"),))


def service(i: int) -> dict:
    return {"metadata": {"namespace": "ns", "name": f"s{i}", "creationTimestamp": f"2026-01-01T00:00:{i:02d}Z"},
            "spec": {"clusterIP": f"10.96.0.{i}", "clusterIPs": [f"10.96.0.{i}"],
                     "ports": [{"name": "p", "port": 80, "protocol": "TCP", "targetPort": 8080}]}}


def endpoint_slice(i: int, addresses: list[str]) -> dict:
    return {"metadata": {"namespace": "ns", "name": f"s{i}-x", "labels": {"kubernetes.io/service-name": f"s{i}"}},
            "addressType": "IPv4", "ports": [{"name": "p", "protocol": "TCP", "port": 8080}],
            "endpoints": [{"addresses": [a], "conditions": {"ready": True}} for a in addresses]}


def snapshot(services: dict, slices: dict) -> translate.Snapshot:
    return translate.Snapshot(services=dict(services), endpoint_slices=dict(slices))


def run(snap, memo=None):
    return translate.translate(snap, now="2026-01-01T00:00:00Z", node_name="n", services=OPTS, memo=memo)


@pytest.fixture
def objects():
    services = {("ns", f"s{i}"): service(i) for i in range(1, 6)}
    slices = {("ns", f"s{i}-x"): endpoint_slice(i, [f"10.244.{i}.1", f"10.244.{i}.2"]) for i in range(1, 6)}
    return services, slices


def test_a_memo_gives_the_same_translation_through_changes(objects, monkeypatch):
    services, slices = objects
    memo = translate.Memo()
    calls = []
    real = proxy._service
    monkeypatch.setattr(proxy, "_service", lambda obj, *a: calls.append(obj["metadata"]["name"]) or real(obj, *a))

    assert run(snapshot(services, slices), memo) == run(snapshot(services, slices))
    calls.clear()
    # Nothing changed: nothing translated again.
    assert run(snapshot(services, slices), memo) == run(snapshot(services, slices))
    assert calls.count("s1") == 1  # the run without the memo only

    # One slice replaced (a new object, as the watch cache makes): that Service only.
    slices[("ns", "s2-x")] = endpoint_slice(2, ["10.244.2.9"])
    calls.clear()
    with_memo = run(snapshot(services, slices), memo)
    assert calls == ["s2"]
    assert with_memo == run(snapshot(services, slices))
    assert [str(b.address) for s in with_memo.dataplane.services if s.name.startswith("service/ns/s2:")
            for b in s.backends] == ["10.244.2.9"]

    # A Service changed in place would be a new object too; one removed is forgotten.
    services[("ns", "s3")] = copy.deepcopy(services[("ns", "s3")])
    services[("ns", "s3")]["spec"]["ports"][0]["port"] = 81
    del services[("ns", "s4")]
    calls.clear()
    with_memo = run(snapshot(services, slices), memo)
    assert sorted(calls) == ["s3"]
    assert with_memo == run(snapshot(services, slices))
    assert ("ns", "s4") not in memo.services.entries


def test_other_options_are_a_miss(objects):
    services, slices = objects
    memo = translate.Memo()
    run(snapshot(services, slices), memo)
    other = proxy.ProxyOptions(node="n", masquerade_all=True)
    got = translate.translate(snapshot(services, slices), now="t", node_name="n", services=other, memo=memo)
    assert got == translate.translate(snapshot(services, slices), now="t", node_name="n", services=other)
    assert {s.masquerade for s in got.dataplane.services} == {"all"}
