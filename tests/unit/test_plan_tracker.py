"""The Tracker plans only what changed; its plans must be `plan`'s, field for
field, and NftView.after must make NftView.of's view, through random
sequences of changes (a defect in either shows as a difference). The
Tracker falls back to the full comparison when the kernel's state is not
the one it last applied."""

import dataclasses
import ipaddress
import random

import pytest

from blixt.dataplane.marks import MarkConfig
from blixt.dataplane.model import Backend, Dataplane, Service
from blixt.dataplane.plan import Current, NftView, Tracker, advance, after, nft_changes, plan

MARKS = MarkConfig()
ORDERED = ("services_put",)  # insertion order matters: scope "pod" entries first


def canon(p) -> dict:
    out = {}
    for f in dataclasses.fields(p):
        v = getattr(p, f.name)
        if f.name in ORDERED:
            out[f.name] = list(v.items())
        elif isinstance(v, dict):
            out[f.name] = sorted(v.items(), key=repr)
        elif isinstance(v, (list, set, frozenset)):
            out[f.name] = sorted(v, key=repr)
        else:
            out[f.name] = v
    return out


def random_service(rng: random.Random, addr: int, port: int, proto: str, scope: str = "any") -> Service:
    backends = tuple(Backend(f"10.200.0.{i}", 8080, rng.choice([0, 1, 1, 2, 5]), rng.random() < 0.2)
                     for i in rng.sample(range(1, 30), rng.randint(0, 6)))
    return Service(
        f"10.96.0.{addr}" if addr else None, port, proto, backends,
        affinity_timeout=rng.choice([0, 0, 30]), affinity_group=rng.choice(["", "g1", "g2"]),
        name=f"s{addr}-{port}", scope=scope, masquerade=rng.choice(["", "all", "off-pod"]),
        drop_when_empty=rng.random() < 0.2,
        source_ranges=tuple(rng.sample(["1.0.0.0/8", "2.2.0.0/16", "3.3.3.0/24"], rng.randint(0, 2))))


def mutate(rng: random.Random, services: dict) -> None:
    for _ in range(rng.randint(1, 4)):
        roll = rng.random()
        key = (rng.randint(0, 6), rng.choice([80, 53]), rng.choice(["tcp", "udp"]))
        if roll < 0.5:
            services[key + ("any",)] = random_service(rng, *key)
        elif roll < 0.65:
            if key + ("any",) in services:
                services[key + ("pod",)] = random_service(rng, *key, scope="pod")
        elif roll < 0.85:
            for k in [k for k in services if k[:3] == key]:
                del services[k]
        elif services:  # an equal Service, but a new object (as a Gateway's each pass)
            k = rng.choice(sorted(services, key=repr))
            services[k] = dataclasses.replace(services[k])


def copy(state: Current) -> Current:
    return after(state, plan(Dataplane.of([]), Current(), MARKS))  # an empty plan: a copy


@pytest.mark.parametrize("in_place", [False, True], ids=["after", "advance"])
@pytest.mark.parametrize("seed", range(40))
def test_tracker_plans_what_plan_plans(seed, in_place):
    """in_place: the state advanced as the manager does (`advance`), so the
    view and changes must come from the plan, not from the old state."""
    rng = random.Random(seed)
    services: dict = {}
    tracker = Tracker()
    state = Current()
    view = NftView.of(state)
    incremental = 0
    for step in range(60):
        mutate(rng, services)
        local = {"10.96.0.1"} if rng.random() < 0.8 else set()
        desired = Dataplane.of(services.values(), local, {"10.244.0.0/16"} if rng.random() < 0.8 else ())
        full = plan(desired, state, MARKS)
        trusted = tracker._state is state
        got = tracker.plan(desired, state, MARKS)
        incremental += trusted
        assert canon(got) == canon(full), f"step {step}"
        kept = copy(state) if in_place else state  # what the kernel holds if the write fails
        expected = after(state, got)
        old_view = NftView.of(state) if in_place else view  # a view of its own, to compare with
        new_state = advance(state, got) if in_place else expected
        assert new_state == expected, f"step {step}"
        # The nft view and changes made from the plan are the ones made by comparing everything.
        new_view = view.after(new_state, got)
        assert new_view == NftView.of(new_state), f"step {step}"
        assert nft_changes(view, new_view, got) == nft_changes(old_view, NftView.of(expected)), f"step {step}"
        roll = rng.random()
        if roll < 0.1:
            state = kept
            continue  # not applied (a failed write): the next plan compares everything
        view = new_view
        tracker.applied(got, new_state)
        # Now and then the agent reads the maps again: a new Current, same content.
        state = dataclasses.replace(new_state) if roll < 0.2 else new_state
    assert incremental > 20  # the tracker's own path was exercised


def test_unchanged_services_are_not_planned_again(monkeypatch):
    from blixt.dataplane import plan as plan_mod
    services = [Service(f"10.96.0.{i}", 80, "tcp", (Backend("10.200.0.1", 80),)) for i in range(1, 50)]
    tracker = Tracker()
    p = tracker.plan(Dataplane.of(services), Current(), MARKS)
    state = after(Current(), p)
    tracker.applied(p, state)
    seen = []
    real = plan_mod._part
    monkeypatch.setattr(plan_mod, "_part", lambda svc, *a: seen.append(svc) or real(svc, *a))
    services[7] = Service("10.96.0.8", 80, "tcp", (Backend("10.200.0.2", 80),))
    p = tracker.plan(Dataplane.of(services), state, MARKS)
    assert seen == [services[7]]
    assert list(p.nft_put.values()) == [(ipaddress.IPv4Address("10.200.0.2"), 80)]
    assert len(p.service_ids) == 49
