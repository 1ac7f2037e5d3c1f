"""`make bench-proxies` in miniature: the benchmark that puts blixt beside
real kube-proxy (nftables and iptables) still runs end to end, and its
report and plots come out of what it measured. Not a performance test: the
figures of a run this small say nothing; tests/bench/README.md holds a real
run."""

from __future__ import annotations

import json
import math
import sys

import pytest

from harness import paths
from harness.blixt import Node

sys.path.insert(0, str(paths.REPO / "tests" / "bench"))
import proxies  # noqa: E402

pytestmark = [pytest.mark.kube, pytest.mark.bpfman, pytest.mark.netns]


@pytest.fixture
def node(kube, bpfman_server, bytecode_image, workdir):
    paths.require_file(proxies.RRBENCH, "rrbench (make build/rrbench)")
    paths.require_file(paths.KUBE_PROXY, "kube-proxy (make deps-cluster)")
    n = Node(workdir / "bench-proxies", kube, bpfman_server.socket, bytecode_image, name="bench-node",
             pod_net=proxies.POD_NET)
    n.workdir.mkdir(parents=True, exist_ok=True)
    try:
        yield n
    finally:
        n.close()
        # What a failed run left: the other tiers' agents serve every Service.
        kube.kubectl("delete", "services,endpointslices", "--all", "-n", proxies.NS, check=False)
        with bpfman_server.client() as c:
            for p in c.list(match_metadata={"blixt.io/node": n.name}):
                c.unload(p.id)


def test_the_benchmark_runs_and_reports_what_it_measured(node, tmp_path):
    args = proxies.parser().parse_args(["--sizes", "10,150", "--change-size", "150", "--rounds", "1",
                                        "--seconds", "0.5", "--changes", "2", "--convergence", "2"])
    res = proxies.measure(node, args, tmp_path)
    for size in ("10", "150"):
        row = res["sizes"][size]
        assert not row.get("errors"), row["errors"]  # every proxy finished every step
        for key in ("programming", "ready", "rss", "crr"):
            for proxy in proxies.PROXIES:
                (value,) = row[key][proxy]
                assert value > 0 and math.isfinite(value), (size, key, proxy, value)
        assert row["direct_crr"][0] > 0
        (memory,) = row["map_memory"]
        assert 1 < memory < 1000, memory  # MiB: the maps' bucket arrays at least
    for proxy in proxies.PROXIES:
        assert len(res["sizes"]["150"]["change"][proxy]) == 2
        assert len(res["small"]["convergence"][proxy]) == 2
    for mode in ("rr", "urr", "stream"):
        assert set(res["small"][mode]) == {*proxies.PROXIES, "direct"}
    text = proxies.report(res, args)
    assert len(res["translation"]["seconds"]) >= 3 and min(res["translation"]["seconds"]) > 0
    for row in ("programming 150 x 10", "one endpoint change", "agent RSS", "TCP_CRR at 10 frontends",
                "translation of 10,000 routes", "kernel memory of the maps at 150 x 10",
                "TCP_CRR flat", "TCP_RR", "UDP_RR", "TCP_STREAM", "EndpointSlice write"):
        assert row in text, row
    # The report is made again from the JSON alone (--report-only).
    (tmp_path / "res.json").write_text(json.dumps(res))
    again = proxies.parser().parse_args(["--report-only", str(tmp_path / "res.json"), "--change-size", "150"])
    assert proxies.report(json.loads((tmp_path / "res.json").read_text()), again) == text
    made = proxies.plots(res, tmp_path / "plots")
    assert sorted(made) == ["convergence.png", "crr.png", "programming.png"]
    for name in made:
        assert (tmp_path / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_size_past_the_default_maps_is_added_on_the_large_build(node, tmp_path, registry, variant_object):
    """--add-to with a size past --large-maps-above: blixt alone on the large
    build (its maps lock more memory), kube-proxy said not run, the earlier
    rows kept and the report saying which row came later; the smallest size
    measured again in the later run is what TCP_CRR flat compares with."""
    from blixt import oci_image
    from blixt.bytecode_image import image_for
    node.variant_images["large"] = registry.ref("blixt/bytecode", "large")
    oci_image.push(image_for(variant_object("large")), node.variant_images["large"], cafile=str(registry.ca.cert))
    first = proxies.parser().parse_args(["--sizes", "10", "--change-size", "10", "--rounds", "1", "--seconds", "0.5",
                                         "--changes", "1", "--convergence", "1", "--proxies", "blixt"])
    base = proxies.measure(node, first, tmp_path)
    args = proxies.parser().parse_args(["--sizes", "10,40", "--large-maps-above", "20", "--kube-proxy-up-to", "10",
                                        "--change-size", "10", "--rounds", "1", "--seconds", "0.5",
                                        "--proxies", "blixt", "--add-to", "unused.json"])
    res = proxies.merged(base, proxies.measure(node, args, tmp_path), args.proxies)
    assert res["sizes"]["10"] == base["sizes"]["10"] and res["reference"]["10"]["run"] == 1
    row = res["sizes"]["40"]
    assert row["bytecode"] == "large" and res["sizes"]["10"]["bytecode"] == "default"
    assert row["errors"] == {k: ["not run above 10 frontends (--kube-proxy-up-to)"]
                             for k in ("kube-proxy-iptables", "kube-proxy-nft")}
    (crr,) = row["crr"]["blixt"]
    assert crr > 0 and not row["crr"]["kube-proxy-nft"]
    # The large build's empty bucket arrays: several MiB more than the default's.
    assert row["map_memory"][0] > res["sizes"]["10"]["map_memory"][0] + 4
    assert res["small"] == base["small"] and res["translation"] == base["translation"]
    text = proxies.report(res, args)
    assert "The 40-frontend row(s) come from a later run" in text and "At 40 frontends blixt ran" in text
    assert "(both from the later run)" in text
