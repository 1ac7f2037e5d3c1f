"""blixt.node.operator_program.loaded_program: when bpfman-operator's
ClusterBpfApplicationState lets the --maps-dir agent program its maps; and
the globalData value a mark layout needs."""

import pytest

from blixt.dataplane.marks import MarkConfig
from blixt.node.operator_program import loaded_program
from blixt.node.pinned_maps import global_data, marks_problem
from harness import paths

pytestmark = pytest.mark.unit


def state(app="blixt", node="n1", load="LoadSuccess", link_status="Success", prog_id=7, links=(("eth0", "Attached"),)):
    return {"metadata": {"name": f"{app}-x", "labels": {"bpfman.io/ownedByProgram": app,
                                                        "kubernetes.io/hostname": node}},
            "status": {"node": node, "appLoadStatus": load, "programs": [
                {"name": "blixt_tcx", "type": "TCX", "programLinkStatus": link_status, "programId": prog_id,
                 "tcx": {"links": [{"shouldAttach": True, "interfaceName": i, "linkStatus": s}
                                   for i, s in links]}}]}}


def test_loaded_and_attached_gives_the_program_id():
    assert loaded_program([state(node="n2"), state()], "blixt", "n1", "blixt_tcx") == (7, "")


@pytest.mark.parametrize("states, fragment", [
    ([], "no ClusterBpfApplicationState"),
    ([state(app="other")], "no ClusterBpfApplicationState"),
    ([state(), state()], "2 ClusterBpfApplicationStates"),
    ([state(load="NotLoaded")], "appLoadStatus 'NotLoaded'"),
    ([state(link_status="Pending")], "programLinkStatus 'Pending'"),
    ([state(prog_id=None)], "programId None"),
    ([state(links=(("eth0", "Attached"), ("eth1", "AttachError")))], "eth1: AttachError"),
    ([state(links=())], "no link to attach"),
])
def test_anything_short_of_loaded_and_attached_says_why(states, fragment):
    prog_id, why = loaded_program(states, "blixt", "n1", "blixt_tcx")
    assert prog_id is None and fragment in why


def test_global_data_of_the_default_layout_is_the_overlays():
    """deploy/kustomize/overlays/bpfman-operator's ClusterBpfApplication carries it."""
    assert global_data(MarkConfig()) == "EAAAAAAA//8AEAAAACAAAA=="
    overlay = (paths.REPO / "deploy/kustomize/overlays/bpfman-operator/clusterbpfapplication.yaml").read_text()
    assert f"blixt_cfg: {global_data(MarkConfig())}" in overlay


def test_marks_problem_names_both_layouts_and_the_fix():
    assert marks_problem(MarkConfig(), MarkConfig()) is None
    msg = marks_problem(MarkConfig(), MarkConfig(id_shift=16, id_mask=0x00FF0000))
    assert "0xffff0000" in msg and "0xff0000" in msg and global_data(MarkConfig(16, 0x00FF0000)) in msg
