"""Fixtures that start the real components. A missing component fails the
test under CI=true (naming it) and skips it elsewhere, so a developer without
`make deps` can still run the unit tests."""

from __future__ import annotations

import pathlib
import sys

import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from harness import paths  # noqa: E402
from harness.paths import component as _component  # noqa: E402


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> pathlib.Path:
    return tmp_path_factory.mktemp("blixt")


@pytest.fixture(scope="session")
def pki(workdir):
    from harness.pki import CA
    with _component():
        paths.require_tool("openssl")
    return CA(workdir / "pki", "blixt-test-ca")


@pytest.fixture(scope="session")
def registry(workdir, pki):
    from harness.registry import Registry
    with _component():
        reg = Registry(workdir / "registry", pki)
    yield reg
    reg.stop()


@pytest.fixture(scope="session")
def bpfman_server(workdir, pki):
    from harness.bpfman import BpfmanServer
    bundle = pki.bundle_with_system(workdir / "ca-bundle.crt")
    with _component():
        server = BpfmanServer(workdir / "bpfman", ssl_cert_file=bundle)
    yield server
    server.stop()


@pytest.fixture
def bpfman(bpfman_server):
    """A client; programs a test loads are unloaded afterwards, even when it fails."""
    client = bpfman_server.client()
    before = {p.id for p in client.list()}
    yield client
    errors = []
    for p in client.list():
        if p.id not in before:
            try:
                client.unload(p.id)
            except Exception as e:  # keep unloading the rest
                errors.append(str(e))
    client.close()
    assert not errors, f"could not unload test programs: {errors}"


@pytest.fixture(scope="session")
def kube(workdir):
    from harness.kube import Cluster
    with _component():
        cluster = Cluster(workdir / "kube")
    yield cluster
    cluster.stop()


@pytest.fixture
def netns():
    """A factory of topologies: netns(pods=N) -> Topology; all removed afterwards."""
    from harness.netns import Topology
    made: list[Topology] = []

    def make(pods: int = 2) -> Topology:
        with _component():
            t = Topology(pods=pods)
        made.append(t)
        return t

    yield make
    for t in made:
        t.close()


@pytest.fixture(scope="session")
def bytecode_object() -> pathlib.Path:
    """The compiled TC object, built by `make bytecode`."""
    from harness.proc import run
    with _component():
        paths.require_tool("clang")
    run(["make", "-s", "-C", str(paths.REPO), "bytecode"])
    return paths.BYTECODE_OBJECT


@pytest.fixture(scope="session")
def variant_object(bytecode_object):
    """variant_object("small" or "large"): the TC object built with other map
    capacities (the Makefile's SMALL_MAPS, LARGE_MAPS)."""
    return paths.variant_object


@pytest.fixture(scope="session")
def bytecode_image(bytecode_object, registry) -> str:
    """The bytecode image pushed to the test registry; returns its reference."""
    from blixt import oci_image
    from blixt.bytecode_image import image_for
    image = image_for(bytecode_object)
    ref = registry.ref("blixt/bytecode", "test")
    oci_image.push(image, ref, cafile=str(registry.ca.cert))
    return ref


@pytest.fixture(scope="session")
def legacy_tc_refusal(bpfman_server, bytecode_object) -> str | None:
    """Why this kernel cannot run legacy TC programs through bpfman, or None.

    bpfman loads legacy TC programs as freplace (BPF_PROG_TYPE_EXT) programs
    behind its dispatcher. Some kernels refuse every BTF-targeted load
    (freplace, fentry) with EPERM even for root while sched_cls loads fine;
    there the TC mode cannot run at all, and the tests say so as xfail.
    Only that exact refusal (harness/legacy_tc.py) does: any other load
    failure fails the probe, and with it every legacy TC test."""
    from blixt.bpfman import client as bc
    from harness import legacy_tc
    with bpfman_server.client() as c:
        try:
            progs = c.load(bc.File(str(bytecode_object)), [("blixt_tc", bc.TC)],
                           metadata={"blixt.io/probe": "legacy-tc"})
        except bc.BpfmanError as e:
            return legacy_tc.refusal_reason(e.message, legacy_tc.TEST_TC_DISPATCHER_PIN.exists())
        for p in progs:
            c.unload(p.id)
    return None


@pytest.fixture(params=["tc", "tcx"])
def attach_mode(request) -> str:
    """Both attach modes; legacy TC is an explicit xfail where the kernel refuses it."""
    if request.param == "tc":
        reason = request.getfixturevalue("legacy_tc_refusal")
        if reason:
            pytest.xfail(reason)
    return request.param


@pytest.fixture
def blixt(kube, bpfman, bpfman_server, bytecode_image, workdir, request):
    """A node (harness.blixt.Node) with blixt's agent and controller running
    as processes against the real kube-apiserver and bpfman-rpc, with netns
    pods (tests/e2e, tests/reliability); objects the test creates are
    deleted afterwards."""
    from harness.blixt import running
    with running(kube, bpfman_server.socket, bytecode_image, workdir / f"e2e-{request.node.name}") as node:
        yield node
