"""A TCP forwarder to the apiserver: whose connections a test can cut (the
network failing between a client and the apiserver, without touching the
apiserver), or that listens inside a network namespace (so a process there,
kube-proxy, reaches the test apiserver on 127.0.0.1 of the host)."""

from __future__ import annotations

import socket
import threading

from blixt.node.netns import entered


class CuttableProxy:
    """A TCP forwarder to the apiserver whose connections a test can cut, and
    which refuses new ones (accept, then close) while blocked. listen_netns:
    listen on 127.0.0.1 of that namespace; connections go out from ours."""

    def __init__(self, target: tuple[str, int], listen_netns: str | None = None):
        self.target = target
        with entered(listen_netns):
            self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.blocked = threading.Event()
        self.lock = threading.Lock()
        self.socks: set[socket.socket] = set()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            if self.blocked.is_set():
                conn.close()
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                conn.close()
                continue
            with self.lock:
                self.socks |= {conn, upstream}
            for a, b in ((conn, upstream), (upstream, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        """Block new connections and kill the open ones."""
        self.blocked.set()
        with self.lock:
            socks, self.socks = self.socks, set()
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def resume(self) -> None:
        self.blocked.clear()

    def close(self) -> None:
        self.cut()
        self.listener.close()
