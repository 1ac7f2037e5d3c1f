import gzip
import io
import json
import subprocess
import sys
import tarfile

import pytest

from blixt import bytecode_image


def test_labels_come_from_the_object(bytecode_object):
    programs, maps = bytecode_image.labels(bytecode_object)
    assert programs == {"blixt_tc": "tc", "blixt_tcx": "tcx"}
    assert maps["blixt_services"] == "hash"
    assert maps["blixt_stats"] == "percpu_hash"
    assert maps["blixt_affinity"] == "lru_hash"


def test_image_layer_is_the_object(bytecode_object):
    img = bytecode_image.image_for(bytecode_object)
    with tarfile.open(fileobj=io.BytesIO(gzip.decompress(img.layer.data))) as tar:
        (member,) = tar.getmembers()
        assert tar.extractfile(member).read() == bytecode_object.read_bytes()
    labels = json.loads(img.config.data)["config"]["Labels"]
    assert json.loads(labels["io.ebpf.programs"])["blixt_tcx"] == "tcx"


def test_object_without_our_programs_is_refused(tmp_path):
    src = tmp_path / "other.c"
    src.write_text('#include <linux/bpf.h>\n#include <bpf/bpf_helpers.h>\n'
                   'SEC("classifier/x") int other(struct __sk_buff *s) { return 0; }\n'
                   'char LICENSE[] SEC("license") = "GPL";\n')
    obj = tmp_path / "other.o"
    subprocess.run(["clang", "-O2", "-g", "-target", "bpf", "-I/usr/include/x86_64-linux-gnu",
                    "-c", str(src), "-o", str(obj)], check=True)
    with pytest.raises(ValueError, match="no program blixt_tc"):
        bytecode_image.labels(obj)


def test_cli_reports_push_failure(bytecode_object):
    res = subprocess.run([sys.executable, "-m", "blixt.bytecode_image", "--object", str(bytecode_object),
                          "--push", "127.0.0.1:9/blixt/x:y"], capture_output=True, text=True)
    assert res.returncode == 1
    assert "127.0.0.1:9" in res.stderr
