"""The committed gRPC stubs must be exactly what `make proto` generates."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]
GENERATED = ("bpfman_pb2.py", "bpfman_pb2.pyi", "bpfman_pb2_grpc.py")


def test_stubs_match_a_fresh_generation(tmp_path):
    res = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-Iblixt/bpfman/v1=proto",
         f"--python_out={tmp_path}", f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}",
         "proto/bpfman.proto"],
        cwd=REPO, capture_output=True, text=True,
    )
    assert res.returncode == 0, res.stderr
    committed = REPO / "controller" / "blixt" / "bpfman" / "v1"
    for name in GENERATED:
        fresh = (tmp_path / "blixt" / "bpfman" / "v1" / name).read_text()
        assert (committed / name).read_text() == fresh, f"{name} is stale: run `make proto`"


def test_service_path_is_bpfmans():
    from blixt.bpfman.v1 import bpfman_pb2
    service = bpfman_pb2.DESCRIPTOR.services_by_name["Bpfman"]
    assert service.full_name == "bpfman.v1.Bpfman"
    assert {m.name for m in service.methods} == {
        "Load", "Unload", "Attach", "Detach", "List", "PullBytecode", "Get"}
