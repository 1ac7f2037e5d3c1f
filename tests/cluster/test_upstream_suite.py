"""The upstream Gateway API v1.6.1 conformance suite, profiles GATEWAY-TCP and
GATEWAY-UDP, unmodified tests, against blixt on the cluster: every TCPRoute
and UDPRoute test passes (one documented exception, see
tests/conformance/upstream.py SKIPS) and nothing fails. The same run as
`make conformance`; its report and table are kept in the test's directory."""

from __future__ import annotations

import importlib.util
import re

from harness import paths

_spec = importlib.util.spec_from_file_location("upstream", paths.REPO / "tests" / "conformance" / "upstream.py")
upstream = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(upstream)


def test_upstream_l4_conformance(deployed, tmp_path):
    # After test_samples_on_real_pods: the suite makes its own Gateways and namespaces.
    report = tmp_path / "conformance-report.yaml"
    results = upstream.run(deployed.cluster.workdir, report, tmp_path / "conformance.log")
    table = upstream.table(results)
    print(table)
    l4 = {n: r for n, (r, _, _) in results.items() if re.match(r"(TCP|UDP)Route", n)}
    # v1.6.1 has 8 TCPRoute and 9 UDPRoute tests; a new release must be looked at again.
    assert len(l4) == 17, sorted(l4)
    assert upstream.l4_failures(results) == [], table
    assert {n for n, r in l4.items() if r != "PASS"} == {"TCPRouteInvalidNonTCPListener"}
    text = report.read_text()
    assert "kind: ConformanceReport" in text and "gatewayAPIVersion: v1.6.1" in text
