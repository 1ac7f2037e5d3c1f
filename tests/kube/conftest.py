"""Fixtures for the tests of blixt.kube against the real apiserver."""

from __future__ import annotations

import urllib.parse
import uuid

import pytest
from kubernetes import client as kclient, config as kconfig

from apiobjects import Objects
from harness.forward import CuttableProxy


@pytest.fixture
def api(kube):
    client = kube.api_client()
    yield client
    client.close()


@pytest.fixture
def unique():
    """unique("gw") -> "gw-3f2a9c1b": names no other test (or rerun) uses."""
    return lambda prefix: f"{prefix}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def objects(api):
    made = Objects(api)
    yield made
    made.cleanup()


@pytest.fixture
def proxied_api(kube):
    """(ApiClient through a CuttableProxy, the proxy)."""
    cfg = kclient.Configuration()
    kconfig.load_kube_config(config_file=str(kube.kubeconfig), client_configuration=cfg, persist_config=False)
    target = urllib.parse.urlsplit(cfg.host)
    proxy = CuttableProxy((target.hostname, target.port))
    cfg.host = f"https://127.0.0.1:{proxy.port}"  # the serving certificate names 127.0.0.1
    cfg.retries = False
    api = kclient.ApiClient(cfg)
    yield api, proxy
    proxy.close()
    api.close()
