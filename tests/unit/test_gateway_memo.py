"""blixt.translate.Memo on the Gateway path: a route's backends are not
worked out again while its backendRefs and their EndpointSlices are the
same objects, and through random changes of every object kind the result is
always the one a translation without the memo gives."""

from __future__ import annotations

import copy
import pathlib
import random
import sys

import pytest

from blixt import translate
from blixt.translate import dataplane

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "bench"))
import translate_bench as tb  # noqa: E402

pytestmark = pytest.mark.unit


def run(snap, memo=None, node="node-1"):
    return translate.translate(snap, now=tb.NOW, node_name=node, memo=memo)


@pytest.fixture
def counted(monkeypatch):
    calls = []
    real = dataplane.backends
    monkeypatch.setattr(dataplane, "backends", lambda refs, *a: calls.append(refs) or real(refs, *a))
    return calls


def test_unchanged_routes_are_not_worked_out_again(counted):
    snap = tb.build(10, 60)
    memo = translate.Memo()
    first = run(snap, memo)
    assert len(counted) == 30  # one winner per listener
    counted.clear()
    assert run(snap, memo) == first
    assert counted == []

    # One EndpointSlice replaced, as the watch cache does: its route only.
    key = next(iter(snap.endpoint_slices))
    snap.endpoint_slices[key] = {**snap.endpoint_slices[key], "endpoints": [
        {"addresses": ["10.99.0.1"], "conditions": {"ready": True}, "nodeName": "node-1"}]}
    counted.clear()
    got = run(snap, memo)
    assert len(counted) <= 1
    assert got == run(snap)
    assert any(str(b.address) == "10.99.0.1" for s in got.dataplane.services for b in s.backends) == bool(counted)


MUTATIONS = ("slice", "slice-gone", "service-port", "route-weight", "route-gone", "grant-gone", "node")


def mutate(snap, rng: random.Random) -> str | None:
    """One change of a random kind, as the watch cache makes it (a new
    object, never one changed in place); returns the node to translate for."""
    what = rng.choice(MUTATIONS)
    if what == "slice":
        key = rng.choice(sorted(snap.endpoint_slices))
        s = copy.deepcopy(snap.endpoint_slices[key])
        s["endpoints"] = [{"addresses": [f"10.{rng.randrange(256)}.{rng.randrange(256)}.{rng.randrange(1, 250)}"],
                           "conditions": {"ready": rng.random() < 0.8}, "nodeName": f"node-{rng.randrange(3)}"}
                          for _ in range(rng.randrange(4))]
        snap.endpoint_slices[key] = s
    elif what == "slice-gone" and snap.endpoint_slices:
        del snap.endpoint_slices[rng.choice(sorted(snap.endpoint_slices))]
    elif what == "service-port":
        key = rng.choice(sorted(snap.services))
        svc = copy.deepcopy(snap.services[key])
        svc["spec"]["ports"][0]["name"] = rng.choice(("p", "q"))
        snap.services[key] = svc
    elif what == "route-weight":
        routes = rng.choice((snap.tcp_routes, snap.udp_routes))
        key = rng.choice(sorted(routes))
        r = copy.deepcopy(routes[key])
        r["spec"]["rules"][0]["backendRefs"][0]["weight"] = rng.randrange(0, 4)
        routes[key] = r
    elif what == "route-gone":
        routes = rng.choice((snap.tcp_routes, snap.udp_routes))
        if routes:
            del routes[rng.choice(sorted(routes))]
    elif what == "grant-gone" and snap.reference_grants:
        del snap.reference_grants[rng.choice(sorted(snap.reference_grants))]
    return rng.choice(("node-0", "node-1", None)) if what == "node" else None


@pytest.mark.parametrize("seed", range(5))
def test_random_changes_give_what_a_translation_without_the_memo_gives(seed, counted):
    rng = random.Random(seed)
    snap = tb.build(6, 40)
    memo = translate.Memo()
    node = "node-1"
    for step in range(60):
        node = mutate(snap, rng) or node
        counted.clear()
        with_memo = run(snap, memo, node)
        redone = len(counted)
        assert with_memo == run(snap, node=node), f"seed {seed}, step {step}"
        assert redone <= len(counted), "the memo worked out more than a translation without it"
