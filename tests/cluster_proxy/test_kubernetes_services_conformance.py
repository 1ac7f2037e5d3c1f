"""Kubernetes' own `[sig-network] Services ... [Conformance]` e2e tests (the
cluster's release, unmodified) pass on the cluster whose only Service proxy
is blixt: the subset of `make conformance-services` that `make test` runs, on
this tier's cluster."""

from __future__ import annotations

import importlib.util
import sys

from harness import paths

_spec = importlib.util.spec_from_file_location("conformance_services",
                                               paths.REPO / "tests" / "conformance" / "services.py")
services = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = services  # dataclasses look their module up there
_spec.loader.exec_module(services)

# Kubernetes v1.35.4 tags 15 Services tests [Conformance]; a new release must be looked at again.
CONFORMANCE = 15


def test_services_conformance(proxied, tmp_path):
    results = services.run_e2e(proxied.cluster, tmp_path, "30m",
                               focus=r"\[sig-network\] Services .*\[Conformance\]")
    table = services.table({"blixt": results})
    print(table)
    assert len(results) == CONFORMANCE, sorted(results)
    assert {n: r.status for n, r in results.items() if r.status != "passed"} == {}, table
