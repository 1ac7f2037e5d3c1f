"""The apiserver connection: a client from a kubeconfig or the in-cluster
service account, and a wait that says plainly when the apiserver is away."""

from __future__ import annotations

import logging
import os
import time
from typing import Any, Callable

import tenacity
import yaml
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration
from kubernetes.config import incluster_config

from blixt.oneline import one_line, yaml_error

from . import rest

# One long-lived connection per watched type, plus status writes and leader
# election: the default pool (5 per CPU) would otherwise discard and reopen
# connections on small nodes.
MIN_POOL_SIZE = 32


class ConfigError(RuntimeError):
    """No usable apiserver configuration; the message names what is missing."""


class ApiServerUnreachable(RuntimeError):
    pass


def load_client(kubeconfig: str | None = None) -> ApiClient:
    """A client from `kubeconfig` when given, else from the in-cluster
    service account."""
    cfg = Configuration()
    if kubeconfig:
        if not os.path.isfile(kubeconfig):
            raise ConfigError(f"kubeconfig {kubeconfig} does not exist or is not a file")
        _check_kubeconfig(kubeconfig)
        try:
            kube_config.load_kube_config(config_file=kubeconfig, client_configuration=cfg, persist_config=False)
        except Exception as e:  # ConfigException, YAML errors, unreadable key files
            raise ConfigError(f"kubeconfig {kubeconfig} is not usable: {one_line(e)}") from e
    else:
        missing = _in_cluster_missing()
        if missing:
            raise ConfigError("no --kubeconfig given and not running in a cluster: missing "
                              + ", ".join(missing))
        try:
            kube_config.load_incluster_config(client_configuration=cfg)
        except Exception as e:
            raise ConfigError(f"in-cluster configuration is not usable: {one_line(e)}") from e
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize or 0, MIN_POOL_SIZE)
    # Every caller retries with its own backoff and logs each failure once;
    # urllib3's silent-then-noisy internal retries would only add to both.
    cfg.retries = False
    return ApiClient(cfg)


def _check_kubeconfig(path: str) -> None:
    """Read and parse the file first: the kubernetes library reports a file
    that is not YAML with PyYAML's multi-line message, and one that is YAML
    but not a mapping with an unrelated TypeError."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"kubeconfig {path} cannot be read: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"kubeconfig {path} is not UTF-8 text ({e.reason} at byte {e.start})") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"kubeconfig {path} is not valid YAML: {yaml_error(e)}") from e
    if doc is None:
        raise ConfigError(f"kubeconfig {path} is empty")
    if not isinstance(doc, dict):
        raise ConfigError(f"kubeconfig {path} is not a kubeconfig: it holds a {type(doc).__name__}, not a mapping")


def _in_cluster_missing() -> list[str]:
    missing = [f"${name}" for name in (incluster_config.SERVICE_HOST_ENV_NAME,
                                       incluster_config.SERVICE_PORT_ENV_NAME)
               if not os.environ.get(name)]
    missing += [f"the service account {what} {path}"
                for what, path in (("token", incluster_config.SERVICE_TOKEN_FILENAME),
                                   ("CA certificate", incluster_config.SERVICE_CERT_FILENAME))
                if not os.path.isfile(path)]
    return missing


def wait_for_apiserver(api_client: ApiClient, timeout: float,
                       log: logging.Logger | Callable[[str], Any]) -> dict:
    """GET /version until it answers; returns it. Each failure is logged
    with the apiserver's address and the reason; after `timeout` seconds
    raises ApiServerUnreachable."""
    host = api_client.configuration.host
    say = log.warning if isinstance(log, logging.Logger) else log
    deadline = time.monotonic() + timeout

    def pause(wanted: float) -> float:
        return max(0.0, min(wanted, deadline - time.monotonic()))  # one last try at the deadline

    def before_sleep(state: tenacity.RetryCallState) -> None:
        say(f"kube-apiserver at {host} is unreachable ({rest.describe_error(state.outcome.exception())}); "
            f"retrying in {pause(state.next_action.sleep):.1f}s")

    def get_version() -> dict:
        left = max(1.0, min(10.0, deadline - time.monotonic()))
        return rest.request(api_client, "GET", "/version", timeout=left)

    try:
        return tenacity.Retrying(
            stop=tenacity.stop_after_delay(timeout),
            wait=tenacity.wait_exponential(multiplier=0.5, max=5.0) + tenacity.wait_random(0, 0.5),
            sleep=lambda wanted: time.sleep(pause(wanted)),
            before_sleep=before_sleep,
            reraise=True,
        )(get_version)
    except Exception as e:
        raise ApiServerUnreachable(
            f"kube-apiserver at {host} unreachable for {timeout:.0f}s: {rest.describe_error(e)}") from e
