"""The apiserver connection: loading a client and waiting for the apiserver."""

from __future__ import annotations

import logging
import socket

import pytest

from blixt.kube import config

pytestmark = pytest.mark.kube


def test_load_client_from_a_kubeconfig_reaches_the_apiserver(kube):
    api = config.load_client(str(kube.kubeconfig))
    try:
        version = config.wait_for_apiserver(api, 10, logging.getLogger("test"))
        assert version["gitVersion"].startswith("v1.35.")
        assert api.configuration.connection_pool_maxsize >= config.MIN_POOL_SIZE
    finally:
        api.close()


def test_missing_kubeconfig_is_named(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(config.ConfigError, match=str(missing)):
        config.load_client(str(missing))
    broken = tmp_path / "broken"
    broken.write_text("apiVersion: v1\nkind: Config\n")
    with pytest.raises(config.ConfigError, match="is not usable"):
        config.load_client(str(broken))


def test_not_in_a_cluster_names_what_is_missing(monkeypatch):
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_PORT", raising=False)
    with pytest.raises(config.ConfigError) as e:
        config.load_client(None)
    assert "$KUBERNETES_SERVICE_HOST" in str(e.value) and "--kubeconfig" in str(e.value)


def test_an_unreachable_apiserver_is_logged_then_reported(kube):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    api = config.load_client(str(kube.kubeconfig))
    api.configuration.host = f"https://127.0.0.1:{port}"
    said: list[str] = []
    try:
        with pytest.raises(config.ApiServerUnreachable, match="Connection refused"):
            config.wait_for_apiserver(api, 4.0, said.append)
    finally:
        api.close()
    assert len(said) >= 2
    assert all(f"kube-apiserver at https://127.0.0.1:{port} is unreachable" in m for m in said)
    assert "Connection refused" in said[0] and "retrying in" in said[0]
