"""`make cluster-down` runs tests/harness/node.py as a script, not as part of
the harness package: its teardown must work that way too, including the
bpfman clean-up (which imports the harness's bpfman module, and with it the
blixt package that harness/blixt.py could shadow)."""

from __future__ import annotations

import json
import subprocess
import sys

from harness import paths


def test_teardown_runs_as_a_script(tmp_path):
    state = {"procs": [], "netns": [], "sysctls": {}, "cgroups_before": {}, "propagation": None,
             "node_ns": "none", "client_ns": "none",
             # As if the cluster's bpfman had run: teardown starts a bpfman-rpc to unload blixt's programs.
             "host_dirs_before": {str(tmp_path / "made-by-bpfman"): False}, "bpffs_before": True}
    (tmp_path / "made-by-bpfman").mkdir()
    (tmp_path / "state.json").write_text(json.dumps(state))
    res = subprocess.run([sys.executable, str(paths.REPO / "tests" / "harness" / "node.py"), "down",
                          "--workdir", str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert not (tmp_path / "made-by-bpfman").exists()
    assert (tmp_path / "state.down.json").exists()
