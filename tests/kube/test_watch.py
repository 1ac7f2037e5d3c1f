"""The watch cache against the real apiserver: every type, resumed and cut
watches, 410 relists and periodic resyncs."""

from __future__ import annotations

import logging

import pytest

import apiobjects as k
from harness.proc import wait_for
from blixt.kube import metrics, resources as R
from blixt.kube.watch import Cache

pytestmark = pytest.mark.kube


def _restarts(resource: str, reason: str) -> float:
    return metrics.REGISTRY.get_sample_value(
        "blixt_watch_restarts_total", {"resource": resource, "reason": reason}) or 0.0


@pytest.fixture
def start_cache():
    """start_cache(api, **kw) -> a started Cache, stopped after the test."""
    caches: list[Cache] = []

    def start(api, **kw) -> Cache:
        cache = Cache(api, **kw).start()
        caches.append(cache)
        assert cache.wait_synced(30), "cache did not sync within 30s"
        return cache

    yield start
    for c in caches:
        c.stop()


def _manifests(name: str, ns: str) -> dict[R.Resource, dict]:
    return {
        R.SERVICES: k.service(name, ns),
        R.NAMESPACES: k.namespace(name),
        R.CONFIG_MAPS: k.config_map(name, ns, a="1"),
        R.ENDPOINT_SLICES: k.endpoint_slice(name, ns),
        R.GATEWAY_CLASSES: k.gateway_class(name),
        R.GATEWAYS: k.gateway(name, ns),
        R.TCP_ROUTES: k.tcp_route(name, ns),
        R.UDP_ROUTES: k.udp_route(name, ns),
        R.REFERENCE_GRANTS: k.reference_grant(name, ns),
    }


def test_sees_creates_updates_and_deletes_of_every_type(api, objects, unique, start_cache):
    assert {r for r in R.DEFAULT_RESOURCES} == set(_manifests("x", "default"))
    cache = start_cache(api)
    events: list[tuple[str, str, str]] = []
    cache.add_listener(lambda res, typ, obj: events.append((res, typ, obj["metadata"]["name"])))
    name = unique("w")
    manifests = _manifests(name, "default")

    for res, obj in manifests.items():
        objects.create(res, obj)
    for res, obj in manifests.items():
        key = res.key(obj)
        wait_for(lambda: key in cache.snapshot()[res.name], 10, f"{res.name} {key} in the cache")
        cached = cache.get(res.name, key)
        assert cached["kind"] == res.kind and cached["apiVersion"] == res.api_version

    for res, obj in manifests.items():
        objects.patch(res, obj["metadata"].get("namespace"), name, {"metadata": {"labels": {"step": "2"}}})
    for res, obj in manifests.items():
        key = res.key(obj)
        wait_for(lambda: (cache.get(res.name, key) or {}).get("metadata", {}).get("labels", {}).get("step") == "2",
                 10, f"the update of {res.name} {key} in the cache")

    for res, obj in manifests.items():
        objects.delete(res, obj["metadata"].get("namespace"), name)
    for res, obj in manifests.items():
        key = res.key(obj)
        wait_for(lambda: key not in cache.snapshot()[res.name], 10, f"{res.name} {key} gone from the cache")

    for res in manifests:
        mine = [typ for r, typ, n in events if r == res.name and n == name]
        assert mine[0] == "ADDED" and "MODIFIED" in mine and mine[-1] == "DELETED", (res.name, mine)


def test_snapshot_keys_and_changed_event(api, objects, unique, start_cache):
    cache = start_cache(api, resources=(R.CONFIG_MAPS, R.GATEWAY_CLASSES))
    assert cache.synced()
    snap = cache.snapshot()
    assert set(snap) == {"config_maps", "gateway_classes"}
    assert ("kube-system", "extension-apiserver-authentication") in snap["config_maps"]

    cache.changed.clear()
    name = unique("gc")
    objects.create(R.GATEWAY_CLASSES, k.gateway_class(name))
    assert cache.changed.wait(10), "changed was not set by a create"
    wait_for(lambda: name in cache.snapshot()["gateway_classes"], 10, "the GatewayClass keyed by name")
    # A snapshot is a copy: later changes do not show in it.
    before = cache.snapshot()
    objects.create(R.CONFIG_MAPS, k.config_map(unique("cm")))
    wait_for(lambda: len(cache.snapshot()["config_maps"]) == len(before["config_maps"]) + 1, 10, "the ConfigMap")
    assert len(before["config_maps"]) == len(cache.snapshot()["config_maps"]) - 1


def test_wait_synced_is_false_until_listed(api):
    cache = Cache(api, resources=(R.CONFIG_MAPS,))
    assert not cache.wait_synced(0.2)
    assert cache.unsynced() == ["config_maps"]
    cache.start()
    try:
        assert cache.wait_synced(30)
        assert cache.unsynced() == [] and cache.changed.is_set()
    finally:
        cache.stop()


def test_resumes_after_the_server_ends_the_watch(api, objects, unique, start_cache):
    """A watch_timeout of 1s makes the apiserver end each watch after a
    second; events after several such ends are still seen."""
    before = _restarts("config_maps", "closed")
    cache = start_cache(api, resources=(R.CONFIG_MAPS,), watch_timeout=1)
    wait_for(lambda: _restarts("config_maps", "closed") >= before + 2, 10, "two server-side watch ends")
    name = unique("cm")
    objects.create(R.CONFIG_MAPS, k.config_map(name, a="1"))
    wait_for(lambda: cache.get("config_maps", ("default", name)), 10, "the ConfigMap after the watch resumed")
    objects.patch(R.CONFIG_MAPS, "default", name, {"data": {"a": "2"}})
    wait_for(lambda: cache.get("config_maps", ("default", name))["data"]["a"] == "2", 10, "the update")


def test_reconnects_after_the_connection_is_cut(proxied_api, objects, unique, start_cache, caplog):
    api, proxy = proxied_api
    cache = start_cache(api, resources=(R.CONFIG_MAPS,), backoff_max=1.0)
    caplog.set_level(logging.WARNING, logger="blixt.kube.watch")
    errors_before = _restarts("config_maps", "error")

    proxy.cut()
    name = unique("cm")
    objects.create(R.CONFIG_MAPS, k.config_map(name))  # `objects` talks to the apiserver directly
    wait_for(lambda: _restarts("config_maps", "error") >= errors_before + 2, 10, "failed reconnects")
    assert cache.get("config_maps", ("default", name)) is None, "seen through a cut connection?"
    assert "config_maps: watch from resourceVersion" in caplog.text and "retrying in" in caplog.text

    proxy.resume()
    wait_for(lambda: cache.get("config_maps", ("default", name)), 10, "the ConfigMap made while cut")
    objects.delete(R.CONFIG_MAPS, "default", name)
    wait_for(lambda: cache.get("config_maps", ("default", name)) is None, 10, "the delete after reconnecting")


def test_410_relists_and_replaces_stale_entries(proxied_api, objects, unique, start_cache):
    """A watch resumed from history the apiserver no longer has gets 410
    (here a real one: resourceVersion 1 predates the TCPRoute watch cache);
    the relist must drop what was deleted meanwhile and add what was made,
    emitting those changes."""
    api, proxy = proxied_api
    cache = start_cache(api, resources=(R.TCP_ROUTES,), backoff_max=1.0)
    events: list[tuple[str, str]] = []
    cache.add_listener(lambda res, typ, obj: events.append((typ, obj["metadata"]["name"])))
    kept, gone, made = unique("kept"), unique("gone"), unique("made")
    objects.create(R.TCP_ROUTES, k.tcp_route(kept))
    objects.create(R.TCP_ROUTES, k.tcp_route(gone))
    wait_for(lambda: {("default", kept), ("default", gone)} <= set(cache.snapshot()["tcp_routes"]), 10,
             "both routes in the cache")
    expired_before = _restarts("tcp_routes", "expired")

    proxy.cut()
    objects.delete(R.TCP_ROUTES, "default", gone)
    objects.create(R.TCP_ROUTES, k.tcp_route(made))
    objects.patch(R.TCP_ROUTES, "default", kept, {"metadata": {"labels": {"v": "2"}}})
    # While cut off, the history it would resume from was compacted away.
    cache._reflectors["tcp_routes"].resource_version = "1"
    proxy.resume()

    wait_for(lambda: _restarts("tcp_routes", "expired") > expired_before, 15, "a 410 and a relist")
    snap = wait_for(lambda: (s := cache.snapshot()["tcp_routes"]) and ("default", made) in s and s, 10,
                    "the relisted routes")
    assert ("default", gone) not in snap
    assert snap[("default", kept)]["metadata"]["labels"] == {"v": "2"}
    assert ("DELETED", gone) in events and ("ADDED", made) in events and ("MODIFIED", kept) in events
    # And the watch goes on from the relist.
    objects.delete(R.TCP_ROUTES, "default", made)
    wait_for(lambda: ("default", made) not in cache.snapshot()["tcp_routes"], 10, "a delete after the relist")


def test_periodic_resync_repairs_the_cache(api, start_cache):
    before = _restarts("config_maps", "resync")
    cache = start_cache(api, resources=(R.CONFIG_MAPS,), resync=1.5)
    # An entry the watch never delivered a delete for; only a relist finds out.
    phantom = k.config_map("phantom", "default")
    phantom["metadata"]["resourceVersion"] = "1"
    cache._apply(R.CONFIG_MAPS, "ADDED", phantom)
    assert cache.get("config_maps", ("default", "phantom"))
    wait_for(lambda: cache.get("config_maps", ("default", "phantom")) is None, 10, "the resync to drop it")
    assert _restarts("config_maps", "resync") > before
