"""parametersRef of a GatewayClass or Gateway: the ConfigMap holding the
address pool (format in pool.py). Every failure is a message for an
InvalidParameters condition."""

from __future__ import annotations

from .model import meta
from .pool import Pool, PoolError, pool_from_config_map


class ParamsError(ValueError):
    pass


def _config_map(ref: dict, namespace: str, config_maps) -> Pool:
    group, kind, name = ref.get("group") or "", ref.get("kind") or "", ref.get("name") or ""
    if group != "" or kind != "ConfigMap":
        raise ParamsError(f"parametersRef must be a core/v1 ConfigMap, not {kind or '?'} in group {group!r}")
    cm = config_maps.get((namespace, name))
    if cm is None:
        raise ParamsError(f"ConfigMap {namespace}/{name} not found")
    try:
        return pool_from_config_map(cm)
    except PoolError as e:
        raise ParamsError(f"ConfigMap {namespace}/{name}: {e}") from None


def class_pool(gwc: dict, config_maps) -> Pool | None:
    ref = (gwc.get("spec") or {}).get("parametersRef")
    if not ref:
        return None
    if not ref.get("namespace"):
        raise ParamsError("parametersRef.namespace is required: a ConfigMap is namespaced")
    return _config_map(ref, ref["namespace"], config_maps)


def gateway_pool(gw: dict, config_maps) -> Pool | None:
    ref = ((gw.get("spec") or {}).get("infrastructure") or {}).get("parametersRef")
    if not ref:
        return None
    return _config_map(ref, meta(gw).get("namespace") or "", config_maps)
