"""Where `make deps` leaves each component, and how a test asks for one."""

from __future__ import annotations

import contextlib
import os
import pathlib
import shutil

REPO = pathlib.Path(__file__).resolve().parents[2]
CACHE = pathlib.Path(os.environ.get("BLIXT_CACHE", "/var/cache/blixt"))
BUILD = REPO / "build"

BPFMAN_VERSION = "0.6.0"
BPFMAN_RPC = CACHE / f"bpfman-{BPFMAN_VERSION}" / "bin" / "bpfman-rpc"
BPFMAN_CLI = CACHE / f"bpfman-{BPFMAN_VERSION}" / "bin" / "bpfman"
KUBE_BIN = CACHE / "kube"
KUBE_APISERVER = KUBE_BIN / "kube-apiserver"
KUBECTL = KUBE_BIN / "kubectl"
ETCD = KUBE_BIN / "etcd"
CLUSTER_BIN = CACHE / "cluster" / "bin"  # make deps-cluster
KUBE_PROXY = CLUSTER_BIN / "kube-proxy"
GATEWAY_API_CRDS = CACHE / "gateway-api"
BYTECODE_OBJECT = BUILD / "blixt.bpf.o"


class MissingComponent(Exception):
    """A real component the test needs is not installed."""


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_file(path: pathlib.Path, what: str) -> pathlib.Path:
    if not path.exists():
        raise MissingComponent(f"{what} not found at {path}: run `make deps`")
    return path


def require_tool(name: str, what: str | None = None) -> str:
    found = shutil.which(name)
    if not found:
        raise MissingComponent(f"{what or name} not found on PATH ({name}): run `make deps`")
    return found


def require_root(what: str) -> None:
    if os.geteuid() != 0:
        raise MissingComponent(f"{what} needs root (CAP_NET_ADMIN, CAP_BPF, CAP_SYS_ADMIN)")


@contextlib.contextmanager
def component():
    """Turn MissingComponent into a test failure under CI=true (naming the
    component) and a skip elsewhere, so unit tests run without `make deps`."""
    import pytest
    try:
        yield
    except MissingComponent as e:
        if in_ci():
            pytest.fail(f"missing component under CI: {e}", pytrace=False)
        pytest.skip(str(e))


def variant_object(variant: str) -> pathlib.Path:
    """The TC object of another build ("small", "large": the Makefile's
    SMALL_MAPS, LARGE_MAPS), made if needed."""
    from .proc import run
    path = BUILD / f"blixt-{variant}.bpf.o"
    run(["make", "-s", "-C", str(REPO), str(path.relative_to(REPO))])
    return path
