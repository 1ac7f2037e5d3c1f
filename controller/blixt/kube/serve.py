"""The processes' HTTP endpoint: /healthz, /readyz and /metrics, in a thread.

/healthz answers 200 while the process serves at all (liveness); /readyz asks
the caller's `ready` callable, so a probe fails until, say, the cache has
synced (readiness); /metrics exposes a prometheus_client registry, or
only the samples named by `name[]` query parameters (Prometheus' own
convention; a histogram's are NAME_count, NAME_sum, NAME_bucket): a poller
of one metric then does not make the agent read every frontend's counters
from the kernel."""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import urllib.parse
from typing import Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from . import metrics

log = logging.getLogger(__name__)


def parse_bind(bind: str) -> tuple[str, int]:
    """"HOST:PORT", "[V6]:PORT" or ":PORT" (all addresses)."""
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"bind address must be HOST:PORT, got {bind!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class Server:
    def __init__(self, bind: str = "127.0.0.1:0", ready: Callable[[], bool] = lambda: True,
                 registry: CollectorRegistry = metrics.REGISTRY):
        host, port = parse_bind(bind)
        handler = _handler(ready, registry)
        server_class = _V6Server if ":" in host else http.server.ThreadingHTTPServer
        self._httpd = server_class((host, port), handler)
        self._httpd.daemon_threads = True
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http-server", daemon=True)
        self._thread.start()
        log.info("serving /healthz, /readyz and /metrics on %s:%d", host, self.port)

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)


class _V6Server(http.server.ThreadingHTTPServer):
    address_family = socket.AF_INET6


def _handler(ready: Callable[[], bool], registry: CollectorRegistry):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            path, _, query = self.path.partition("?")
            if path == "/healthz":
                self._reply(200, b"ok\n")
            elif path == "/readyz":
                try:
                    ok, why = bool(ready()), "not ready"
                except Exception as e:  # a failing check means not ready, not a crash
                    ok, why = False, f"readiness check failed: {e}"
                self._reply(200, b"ok\n") if ok else self._reply(503, why.encode() + b"\n")
            elif path == "/metrics":
                names = urllib.parse.parse_qs(query).get("name[]")
                self._reply(200, generate_latest(registry.restricted_registry(names) if names else registry),
                            CONTENT_TYPE_LATEST)
            else:
                self._reply(404, b"not found\n")

        def _reply(self, code: int, body: bytes, content_type: str = "text/plain; charset=utf-8"):
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format, *args):  # probes every few seconds: keep them out of the logs
            log.debug("%s %s", self.address_string(), format % args)

    return Handler
