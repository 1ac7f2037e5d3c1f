import os

import pytest

from blixt.bpfman import client as bc

META = {"blixt.io/test": "smoke"}


def test_list_answers(bpfman):
    programs = bpfman.list()
    assert isinstance(programs, list)


def test_error_carries_call_and_bpfman_message(bpfman):
    with pytest.raises(bc.BpfmanError) as exc:
        bpfman.get(0xFFFFFF)
    assert exc.value.call == "Get"
    assert exc.value.message  # bpfman's own words, not empty


def test_pull_bytecode_from_tls_registry(bpfman, bytecode_image):
    bpfman.pull_bytecode(bc.Image(bytecode_image, pull_policy=bc.PULL_ALWAYS))


def test_pull_from_unknown_repository_fails_with_bpfman_message(bpfman, registry):
    with pytest.raises(bc.BpfmanError) as exc:
        bpfman.pull_bytecode(bc.Image(registry.ref("no/such", "tag"), pull_policy=bc.PULL_ALWAYS))
    assert exc.value.call == "PullBytecode"


@pytest.mark.parametrize("mode", ["tc", "tcx"])
def test_load_from_image_attach_and_unload(bpfman, bytecode_image, netns, mode):
    """Both programs load from the image in one request and share the map;
    the one for the mode attaches in a pod-facing netns; List finds them by metadata."""
    programs = bpfman.load(bc.Image(bytecode_image), [("blixt_tc", bc.TC), ("blixt_tcx", bc.TCX)],
                           metadata={**META, "mode": mode})
    assert sorted(p.name for p in programs) == ["blixt_tc", "blixt_tcx"]
    pin_paths = {p.map_pin_path for p in programs}
    assert len(pin_paths) == 1, f"programs do not share maps: {pin_paths}"
    assert os.path.exists(os.path.join(pin_paths.pop(), "blixt_counters"))

    topo = netns(pods=1)
    prog = next(p for p in programs if p.name == f"blixt_{mode}")
    netns_path = f"/var/run/netns/{topo.node.netns}"
    if mode == "tc":
        link = bpfman.attach_tc(prog.id, "eth-client", "ingress", priority=50, netns=netns_path)
    else:
        link = bpfman.attach_tcx(prog.id, "eth-client", "ingress", priority=50, netns=netns_path)
    assert link > 0
    assert link in bpfman.get(prog.id).links
    # Traffic still crosses: the program passes what it does not own.
    res = topo.client.exec("ping", "-c", "1", "-W", "2", topo.pods[0].address, check=False)
    assert res.returncode == 0, res.stdout + res.stderr

    found = bpfman.list(match_metadata={**META, "mode": mode})
    assert {p.id for p in found} == {p.id for p in programs}
    bpfman.detach(link)
    for p in programs:
        bpfman.unload(p.id)
    assert not bpfman.list(match_metadata={**META, "mode": mode})
