"""The HTTP health checks a Service proxy serves on its node, as kube-proxy
v1.35 does, so that load balancers in front of the cluster keep working:

* each healthCheckNodePort (LoadBalancer Services with
  externalTrafficPolicy Local), on every NodePort address: 200 while the
  node has a local endpoint and the proxy is healthy, else 503, with
  kube-proxy's JSON body and X-Load-Balancing-Endpoint-Weight header
  (translate/health.py);
* the proxy's own /healthz and /livez (kube-proxy: port 10256): 200 while
  no cluster change has waited longer than the timeout to be programmed.

The sockets are made inside the node's network namespace (node/netns.py).
"""

from __future__ import annotations

import datetime
import http.server
import ipaddress
import json
import logging
import threading
import time
from typing import Callable, Iterable

from blixt.translate import health
from blixt.translate.proxy import HealthCheck

from . import netns as nsutil

log = logging.getLogger(__name__)


class _Http(http.server.ThreadingHTTPServer):
    """An HTTP server on a socket made elsewhere (in another namespace)."""

    daemon_threads = True

    def __init__(self, sock, handler):
        super().__init__(sock.getsockname()[:2], handler, bind_and_activate=False)
        self.socket.close()
        self.socket = sock
        self.thread = threading.Thread(target=self.serve_forever, name=f"http-{sock.getsockname()[1]}",
                                       daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.shutdown()
        self.server_close()


class _Quiet(http.server.BaseHTTPRequestHandler):
    def log_message(self, format, *args):  # load balancers probe every few seconds
        log.debug("%s %s", self.address_string(), format % args)

    def reply(self, code: int, headers: dict[str, str], body: bytes) -> None:
        self.send_response(code)
        for k, v in headers.items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class ProxyHealth:
    """Whether the proxy keeps up: a change seen and not yet programmed for
    longer than `timeout` makes it unhealthy (kube-proxy's rule; its timeout
    is twice its 30 s sync period)."""

    def __init__(self, timeout: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self.timeout = timeout
        self.clock = clock
        self._lock = threading.Lock()
        self._pending_since: float | None = None
        self.last_updated: datetime.datetime | None = None

    def queued(self) -> None:
        """A change arrived (called from the watch threads)."""
        with self._lock:
            if self._pending_since is None:
                self._pending_since = self.clock()

    def updated(self, started: float) -> None:
        """A pass that began at `started` (clock time) programmed the dataplane."""
        with self._lock:
            if self._pending_since is not None and self._pending_since <= started:
                self._pending_since = None
            self.last_updated = datetime.datetime.now(datetime.timezone.utc)

    def healthy(self) -> bool:
        with self._lock:
            return self._pending_since is None or self.clock() - self._pending_since < self.timeout


def _rfc3339(t: datetime.datetime | None) -> str:
    return (t or datetime.datetime(1, 1, 1, tzinfo=datetime.timezone.utc)).isoformat().replace("+00:00", "Z")


def serve_proxy_health(netns: str | None, bind: tuple[str, int], state: ProxyHealth) -> _Http:
    """/healthz and /livez with kube-proxy's JSON (no nodeEligible: the agent
    does not read Node objects)."""

    class Handler(_Quiet):
        def do_GET(self):
            path = self.path.split("?", 1)[0]
            if path not in ("/healthz", "/livez"):
                self.reply(404, {"Content-Type": "text/plain"}, b"404 page not found\n")
                return
            ok = state.healthy()
            now = datetime.datetime.now(datetime.timezone.utc)
            body = {"lastUpdated": _rfc3339(now if ok else state.last_updated), "currentTime": _rfc3339(now),
                    "healthy": ok}
            self.reply(200 if ok else 503, {"Content-Type": "application/json", "X-Content-Type-Options": "nosniff"},
                       json.dumps(body).encode())

    server = _Http(nsutil.listen(netns, *bind), Handler)
    log.info("serving the proxy's /healthz and /livez on %s:%d%s", bind[0], bind[1],
             f" in netns {netns}" if netns else "")
    return server


class ServiceHealth:
    """The healthCheckNodePort servers, kept in step with the translation."""

    def __init__(self, netns: str | None, addresses: Callable[[], Iterable[ipaddress.IPv4Address]],
                 healthy: Callable[[], bool]):
        self.netns = netns
        self.addresses = addresses
        self.healthy = healthy
        self._lock = threading.Lock()
        self._checks: dict[int, HealthCheck] = {}
        self._servers: dict[int, list[_Http]] = {}

    def sync(self, checks: Iterable[HealthCheck]) -> None:
        wanted = {c.port: c for c in checks}
        with self._lock:
            self._checks = wanted
        for port in [p for p in self._servers if p not in wanted]:
            for s in self._servers.pop(port):
                s.stop()
            log.info("stopped the health check server on port %d", port)
        for port, check in wanted.items():
            if port in self._servers:
                continue
            servers: list[_Http] = []
            try:
                for a in sorted(self.addresses()):
                    servers.append(_Http(nsutil.listen(self.netns, str(a), port), self._handler(port)))
            except OSError as e:  # retried at the next pass
                for s in servers:
                    s.stop()
                log.warning("cannot serve health checks of Service %s/%s on port %d: %s",
                            check.namespace, check.name, port, e)
                continue
            self._servers[port] = servers
            log.info("serving health checks of Service %s/%s on port %d", check.namespace, check.name, port)

    def _handler(self, port: int):
        owner = self

        class Handler(_Quiet):
            def do_GET(self):
                with owner._lock:
                    check = owner._checks.get(port)
                if check is None:
                    self.reply(503, {"Content-Type": "text/plain"}, b"no such service\n")
                    return
                self.reply(*health.response(check.namespace, check.name, check.local_endpoints, owner.healthy()))
        return Handler

    def stop(self) -> None:
        for servers in self._servers.values():
            for s in servers:
                s.stop()
        self._servers.clear()
