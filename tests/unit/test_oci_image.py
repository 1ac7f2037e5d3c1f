import gzip
import io
import json
import tarfile

import pytest

from blixt import oci_image


def build():
    return oci_image.build_image(b"\x7fELF-object", "blixt.bpf.o",
                                 programs={"blixt_tc": "tc"}, maps={"m": "hash"})


def test_build_is_deterministic():
    a, b = build(), build()
    assert a.manifest.data == b.manifest.data
    assert a.manifest.digest == b.manifest.digest


def test_layer_holds_only_the_object_at_root():
    img = build()
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(img.layer.data))) as tar:
        members = tar.getmembers()
        assert [m.name for m in members] == ["blixt.bpf.o"]
        assert tar.extractfile(members[0]).read() == b"\x7fELF-object"


def test_labels_are_json_strings():
    config = json.loads(build().config.data)
    labels = config["config"]["Labels"]
    assert json.loads(labels["io.ebpf.programs"]) == {"blixt_tc": "tc"}
    assert json.loads(labels["io.ebpf.maps"]) == {"m": "hash"}


def test_manifest_references_config_and_layer():
    img = build()
    manifest = json.loads(img.manifest.data)
    assert manifest["config"]["digest"] == img.config.digest
    assert manifest["layers"] == [img.layer.descriptor()]
    assert manifest["layers"][0]["mediaType"] == oci_image.MEDIA_LAYER


def test_filename_must_be_at_root():
    with pytest.raises(ValueError):
        oci_image.build_image(b"x", "dir/obj.o", programs={}, maps={})


def test_push_rejects_reference_without_tag():
    with pytest.raises(ValueError):
        oci_image.push(build(), "localhost:5000/repo")
