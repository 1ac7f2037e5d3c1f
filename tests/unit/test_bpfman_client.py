import socket

import pytest

from blixt.bpfman import client


def test_missing_socket_names_path(tmp_path):
    path = tmp_path / "bpfman.sock"
    with pytest.raises(client.BpfmanSocketMissing) as exc:
        client.BpfmanClient(str(path))
    assert str(path) in str(exc.value)
    assert exc.value.call == "connect"


def test_regular_file_is_not_a_socket(tmp_path):
    path = tmp_path / "bpfman.sock"
    path.write_text("")
    with pytest.raises(client.BpfmanSocketMissing):
        client.BpfmanClient(str(path))


def test_unavailable_is_retried_then_raised(tmp_path):
    # A socket nobody accepts on: every List attempt fails UNAVAILABLE.
    path = tmp_path / "dead.sock"
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(path))
    s.close()
    c = client.BpfmanClient(str(path), timeout=1, retry_attempts=2)
    with pytest.raises(client.BpfmanError) as exc:
        c.list()
    assert exc.value.call == "List"
    assert exc.value.code.name == "UNAVAILABLE"
    assert c._retrying.statistics["attempt_number"] == 2
    c.close()


def test_bytecode_location_rejects_other_types():
    with pytest.raises(TypeError):
        client._bytecode_location("/some/path.o")


def test_image_to_proto_sets_credentials_only_when_given():
    bare = client.Image("reg/x:1").to_proto()
    assert not bare.HasField("username")
    full = client.Image("reg/x:1", pull_policy=client.PULL_ALWAYS, username="u", password="p").to_proto()
    assert (full.username, full.password, full.image_pull_policy) == ("u", "p", 0)


@pytest.mark.parametrize("ref,policy", [
    ("localhost:5443/blixt/bytecode:latest", client.PULL_ALWAYS),
    ("localhost:5443/blixt/bytecode", client.PULL_ALWAYS),
    ("quay.io/blixt/bytecode:v0.1.0", client.PULL_IF_NOT_PRESENT),
    ("quay.io/blixt/bytecode@sha256:" + "0" * 64, client.PULL_IF_NOT_PRESENT),
])
def test_latest_or_untagged_images_are_pulled_every_load(ref, policy):
    # A cached `:latest` once loaded the previous build's bytecode, without
    # the maps this agent opens (found by the cluster tier).
    assert client.default_pull_policy(ref) == policy
