"""The agent's UDP conntrack flushes: one listing of the UDP table, matched
in Python, then one `conntrack -R` batch of exact deletions for the entries
that exist. (Hundreds of filtered deletions, each a dump of the table to
conntrack, held every apply for seconds under endpoint churn;
tests/reliability/test_churn.py.)"""

from __future__ import annotations

import ipaddress
import pathlib
import subprocess

import pytest

from blixt.node import conntrack

pytestmark = pytest.mark.unit

VIP = ipaddress.IPv4Address("10.96.0.1")
LISTING = """\
udp      17 20 src=198.18.0.2 dst=10.96.0.1 sport=1000 dport=80 src=10.244.0.5 dst=198.18.0.2 sport=8080 dport=1000 [ASSURED] mark=0 use=1
udp      17 20 src=198.18.0.2 dst=10.96.0.1 sport=1001 dport=80 src=10.244.0.6 dst=198.18.0.2 sport=8080 dport=1001 mark=0 use=1
udp      17 20 src=198.18.0.3 dst=10.96.0.1 sport=53 dport=53 src=10.244.0.7 dst=198.18.0.3 sport=53 dport=53 mark=0 use=1
udp      17 20 src=198.18.0.3 dst=192.0.2.10 sport=7 dport=30080 src=10.244.0.6 dst=198.18.0.3 sport=9000 dport=7 mark=0 use=1
udp      17 20 src=198.18.0.3 dst=192.0.2.10 sport=8 dport=30080 src=10.244.0.9 dst=198.18.0.3 sport=9000 dport=8 mark=0 use=1
conntrack v1.4.7 (conntrack-tools): 5 flow entries have been shown.
"""
FLUSHES = [
    (VIP, 80, (ipaddress.IPv4Address("10.244.0.5"), 8080)),      # one backend of a frontend
    (VIP, 53, None),                                              # a whole frontend
    (None, 30080, (ipaddress.IPv4Address("10.244.0.6"), 9000)),  # a NodePort's backend, any address
]


def test_parse_reads_both_directions_and_skips_other_lines():
    entries = conntrack.parse(LISTING)
    assert len(entries) == 5
    assert entries[0] == conntrack.UdpEntry("198.18.0.2", "10.96.0.1", 1000, 80, "10.244.0.5", 8080)


def test_matching_follows_port_address_and_backend():
    got = conntrack.matching(conntrack.parse(LISTING), FLUSHES)
    assert [(e.sport, e.dport) for e in got] == [(1000, 80), (53, 53), (7, 30080)]


def test_one_listing_and_one_batch_of_exact_deletions(monkeypatch):
    calls = []

    def run(argv, **kw):
        if "-L" in argv:
            calls.append((argv, None))
            return subprocess.CompletedProcess(argv, 0, stdout=LISTING, stderr="")
        calls.append((argv, pathlib.Path(argv[-1]).read_text()))
        out = "".join(f"udp 17 0 src=x dst=y sport={i} dport=1\n" for i in range(3))
        return subprocess.CompletedProcess(argv, 0, stdout=out, stderr="")
    monkeypatch.setattr(conntrack.subprocess, "run", run)
    assert conntrack.flush_udp("node-ns", FLUSHES) == 3
    (listing, _), (delete, batch) = calls
    assert listing == ["ip", "netns", "exec", "node-ns", "conntrack", "-L", "-p", "udp"]
    assert delete[:6] == ["ip", "netns", "exec", "node-ns", "conntrack", "-R"]
    assert batch.splitlines() == [
        "-D -p udp --orig-src 198.18.0.2 --orig-dst 10.96.0.1 --orig-port-src 1000 --orig-port-dst 80",
        "-D -p udp --orig-src 198.18.0.3 --orig-dst 10.96.0.1 --orig-port-src 53 --orig-port-dst 53",
        "-D -p udp --orig-src 198.18.0.3 --orig-dst 192.0.2.10 --orig-port-src 7 --orig-port-dst 30080",
    ]


def test_nothing_matching_runs_no_deletion(monkeypatch):
    calls = []

    def run(argv, **kw):
        calls.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=LISTING, stderr="")
    monkeypatch.setattr(conntrack.subprocess, "run", run)
    assert conntrack.flush_udp(None, [(VIP, 9999, None)]) == 0
    assert calls == [["conntrack", "-L", "-p", "udp"]]


def test_nothing_to_flush_runs_nothing(monkeypatch):
    monkeypatch.setattr(conntrack.subprocess, "run", lambda *a, **k: pytest.fail("ran conntrack"))
    assert conntrack.flush_udp(None, []) == 0
