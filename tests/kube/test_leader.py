"""Leader election on a real Lease, with short durations (lease 3 s)."""

from __future__ import annotations

import threading
import time

import pytest

from harness.proc import wait_for
from blixt.kube import metrics, rest, resources as R
from blixt.kube.leader import LeaderElector

pytestmark = pytest.mark.kube

LEASE, DEADLINE, RETRY = 3.0, 2.0, 0.5


class Candidate:
    """An elector plus a record of its callbacks."""

    def __init__(self, api, lease: str, identity: str, **kw):
        self.identity = identity
        self.elector = LeaderElector(api, "default", lease, identity, lease_duration=LEASE,
                                     renew_deadline=DEADLINE, retry_period=RETRY, **kw)
        self.started = threading.Event()
        self.stopped = threading.Event()
        self.starts = 0

    def run(self) -> "Candidate":
        def on_started():
            self.starts += 1
            self.started.set()
        self.elector.run(on_started, self.stopped.set)
        return self


@pytest.fixture
def candidates(api, unique):
    """candidates(n, **kw) -> n Candidates on one fresh Lease; all stopped and
    the Lease deleted afterwards."""
    made: list[Candidate] = []
    lease = unique("lease")

    def make(n: int, **kw) -> list[Candidate]:
        new = [Candidate(api, lease, unique(f"id{i}"), **kw) for i in range(n)]
        made.extend(new)
        return new

    make.lease = lease
    yield make
    for c in made:
        c.elector.stop()
    try:
        rest.request(api, "DELETE", R.LEASES.path("default", lease))
    except rest.ApiError as e:
        if e.status != 404:
            raise


def _holder(api, lease: str) -> str:
    return rest.request(api, "GET", R.LEASES.path("default", lease))["spec"].get("holderIdentity") or ""


def _leaders(cands: list[Candidate]) -> list[Candidate]:
    return [c for c in cands if c.elector.is_leader()]


def test_exactly_one_of_several_leads(api, candidates):
    cands = [c.run() for c in candidates(3)]
    leader = wait_for(lambda: _leaders(cands), 10, "a leader")[0]
    # For several renewals, never two leaders, and the Lease names the one.
    deadline = time.monotonic() + 2 * LEASE
    while time.monotonic() < deadline:
        assert [c.identity for c in _leaders(cands)] == [leader.identity]
        time.sleep(0.05)
    assert _holder(api, candidates.lease) == leader.identity
    assert leader.started.is_set() and leader.starts == 1
    assert not any(c.started.is_set() for c in cands if c is not leader)
    assert metrics.REGISTRY.get_sample_value("blixt_leader", {"lease": f"default/{candidates.lease}"}) == 1.0


def test_a_stopped_leader_releases_and_another_takes_over(api, candidates):
    cands = [c.run() for c in candidates(2)]
    leader = wait_for(lambda: _leaders(cands), 10, "a leader")[0]
    other = next(c for c in cands if c is not leader)

    stopped_at = time.monotonic()
    leader.elector.stop()
    assert leader.stopped.is_set() and not leader.elector.is_leader()
    wait_for(lambda: other.elector.is_leader(), LEASE + 2 * RETRY, "the other to take over")
    # Released, so no wait for expiry: within about one retry period.
    assert time.monotonic() - stopped_at < LEASE
    assert _holder(api, candidates.lease) == other.identity


def test_a_crashed_leader_is_replaced_after_the_lease_expires(api, candidates):
    cands = [c.run() for c in candidates(2, release_on_stop=False)]
    leader = wait_for(lambda: _leaders(cands), 10, "a leader")[0]
    other = next(c for c in cands if c is not leader)

    stopped_at = time.monotonic()
    leader.elector.stop()  # stops renewing and leaves the Lease held, like a crash
    assert _holder(api, candidates.lease) == leader.identity
    wait_for(lambda: other.elector.is_leader(), LEASE + 2 * RETRY + 1, "the other to take over")
    elapsed = time.monotonic() - stopped_at
    # It waited for the Lease to expire: lease_duration from its last renewal.
    assert elapsed > LEASE - 2 * RETRY, elapsed


def test_a_leader_whose_lease_is_taken_steps_down(api, candidates):
    (cand,) = [c.run() for c in candidates(1)]
    wait_for(lambda: cand.elector.is_leader(), 10, "the leader")

    lease = rest.request(api, "GET", R.LEASES.path("default", candidates.lease))
    lease["spec"]["holderIdentity"] = "intruder"
    rest.request(api, "PUT", R.LEASES.path("default", candidates.lease), body=lease)

    assert cand.stopped.wait(2 * RETRY + 1), "on_stopped was not called"
    assert not cand.elector.is_leader()
    # The intruder never renews: after its lease expires the candidate leads again.
    wait_for(lambda: cand.starts == 2 and cand.elector.is_leader(), LEASE + 2 * RETRY + 1, "leading again")


def test_a_leader_cut_off_from_the_apiserver_steps_down_before_its_lease_expires(api, proxied_api, unique):
    """Renewals fail (the network is cut): by renew_deadline the leader steps
    down, which is before anyone else may take the Lease over."""
    cut_api, proxy = proxied_api
    lease = unique("lease")
    cand = Candidate(cut_api, lease, unique("cut")).run()
    try:
        wait_for(lambda: cand.elector.is_leader(), 10, "the leader")
        proxy.cut()
        cut_at = time.monotonic()
        assert cand.stopped.wait(DEADLINE + 2 * RETRY + 1), "on_stopped was not called"
        stepped_down_after = time.monotonic() - cut_at
        assert not cand.elector.is_leader()
        # It retried rather than quit at the first failure, and quit by the deadline.
        assert RETRY < stepped_down_after <= DEADLINE + 0.3, stepped_down_after
        proxy.resume()
        wait_for(lambda: cand.starts == 2, LEASE + 2 * RETRY + 1, "leading again once reconnected")
    finally:
        cand.elector.stop()
        rest.request(api, "DELETE", R.LEASES.path("default", lease))


def test_durations_are_checked(api):
    with pytest.raises(ValueError):
        LeaderElector(api, "default", "x", "me", lease_duration=2, renew_deadline=3, retry_period=1)
    with pytest.raises(ValueError):
        LeaderElector(api, "default", "x", "", lease_duration=3, renew_deadline=2, retry_period=1)
