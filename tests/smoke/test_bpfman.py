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


def test_load_from_image_attach_and_unload(bpfman, bytecode_image, netns, attach_mode):
    """Programs load from the image in one request and share the maps; the
    one for the mode attaches in a node netns; List finds them by metadata."""
    mode = attach_mode
    prog_type = bc.TC if mode == "tc" else bc.TCX
    programs = bpfman.load(bc.Image(bytecode_image), [(f"blixt_{mode}", prog_type)],
                           metadata={**META, "mode": mode})
    assert [p.name for p in programs] == [f"blixt_{mode}"]
    prog = programs[0]
    for name in ("blixt_services", "blixt_slots", "blixt_stats"):
        assert os.path.exists(os.path.join(prog.map_pin_path, name))

    topo = netns(pods=1)
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
    assert [p.id for p in found] == [prog.id]
    bpfman.detach(link)
    bpfman.unload(prog.id)
    assert not bpfman.list(match_metadata={**META, "mode": mode})
