"""The agent's UDP conntrack flushes: one `conntrack -R` batch per apply,
however many filters (a process per filter made an apply under endpoint
churn wait seconds for them; tests/reliability/test_churn.py)."""

from __future__ import annotations

import ipaddress
import pathlib
import subprocess

import pytest

from blixt.node import conntrack

pytestmark = pytest.mark.unit


def test_every_filter_goes_to_one_conntrack_batch(monkeypatch):
    calls = []

    def run(argv, **kw):
        calls.append((argv, pathlib.Path(argv[-1]).read_text()))
        out = "udp      17 20 src=198.18.0.2 dst=10.96.0.1 sport=1 dport=80 src=10.244.0.5 dst=198.18.0.2\n"
        return subprocess.CompletedProcess(argv, 0, stdout=out, stderr="")
    monkeypatch.setattr(conntrack.subprocess, "run", run)
    vip = ipaddress.IPv4Address("10.96.0.1")
    gone = conntrack.flush_udp("node-ns", [
        (vip, 80, (ipaddress.IPv4Address("10.244.0.5"), 8080)),
        (vip, 53, None),
        (None, 30080, (ipaddress.IPv4Address("10.244.0.6"), 9000)),
    ])
    assert len(calls) == 1
    argv, batch = calls[0]
    assert argv[:5] == ["ip", "netns", "exec", "node-ns", "conntrack"] and argv[5] == "-R"
    assert batch.splitlines() == [
        "-D -p udp --orig-port-dst 80 --orig-dst 10.96.0.1 --reply-src 10.244.0.5 --reply-port-src 8080",
        "-D -p udp --orig-port-dst 53 --orig-dst 10.96.0.1",
        "-D -p udp --orig-port-dst 30080 --reply-src 10.244.0.6 --reply-port-src 9000",
    ]
    assert gone == 1


def test_nothing_to_flush_runs_nothing(monkeypatch):
    monkeypatch.setattr(conntrack.subprocess, "run", lambda *a, **k: pytest.fail("ran conntrack"))
    assert conntrack.flush_udp(None, []) == 0
