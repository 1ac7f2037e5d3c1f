"""Traffic endpoints run inside network namespaces (`ip netns exec NS python -m
harness.traffic ...`): an echo server that names itself and its peer, and
clients that report who answered, as JSON on stdout.

    serve NAME --port P              TCP and UDP: reply "NAME PEER_IP:PEER_PORT"
    tcp ADDR PORT --count N          one connection each (the server closes first)
    udp ADDR PORT --count N          one flow (fresh source port) each
        (--interval S: pause between exchanges, to spread them over time)
    hold ADDR PORT --seconds S       one TCP connection kept open, echoing every 0.1 s
    udp-wait ADDR PORT --sport P     one UDP socket: a datagram now, then on a
                                     line on stdin, one every 0.1 s until an
                                     answer or --seconds
"""

from __future__ import annotations

import argparse
import json
import socket
import socketserver
import sys
import threading
import time

# Where the dataplane tests put their service: routed to the node by the client.
VIP = "198.18.100.10"
PORT = 8080


class _TCP(socketserver.ThreadingTCPServer):
    allow_reuse_address = True
    daemon_threads = True


class _UDP(socketserver.ThreadingUDPServer):
    allow_reuse_address = True
    daemon_threads = True


def serve(name: str, port: int) -> None:
    class TCPHandler(socketserver.BaseRequestHandler):
        def handle(self):
            peer = "%s:%d" % self.client_address
            self.request.sendall(f"{name} {peer}\n".encode())
            # Echo each line until the client says "bye", then close first so
            # TIME_WAIT stays on this side and clients can reuse their ports.
            self.request.settimeout(30)
            try:
                for line in self.request.makefile("rb"):
                    if line.strip() == b"bye":
                        break
                    self.request.sendall(f"{name} {line.decode().strip()}\n".encode())
            except OSError:
                pass

    class UDPHandler(socketserver.BaseRequestHandler):
        def handle(self):
            _, sock = self.request
            peer = "%s:%d" % self.client_address
            sock.sendto(f"{name} {peer}\n".encode(), self.client_address)

    tcp = _TCP(("0.0.0.0", port), TCPHandler)
    udp = _UDP(("0.0.0.0", port), UDPHandler)
    threading.Thread(target=udp.serve_forever, daemon=True).start()
    print("ready", flush=True)
    tcp.serve_forever()


def _result(answers: list, errors: list, durations: list) -> None:
    json.dump({"answers": answers, "errors": errors, "max_ms": max(durations, default=0) * 1000,
               "durations_ms": [round(d * 1000, 3) for d in durations]}, sys.stdout)


def _clients(count: int, sock_type: int, timeout: float, sport, exchange, interval: float = 0.0) -> None:
    """`count` exchanges, each on a fresh socket bound to sport(i) (0: any)."""
    answers, errors, durations = [], [], []
    for i in range(count):
        if i and interval:
            time.sleep(interval)
        start = time.monotonic()
        s = socket.socket(socket.AF_INET, sock_type)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.settimeout(timeout)
        try:
            if sport(i):
                s.bind(("0.0.0.0", sport(i)))
            answers.append(exchange(s))
        except OSError as e:
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            s.close()
        durations.append(time.monotonic() - start)
    _result(answers, errors, durations)


def tcp_clients(addr: str, port: int, count: int, sport_base: int, sport_range: int,
                timeout: float, interval: float = 0.0) -> None:
    def exchange(s: socket.socket) -> str:
        s.connect((addr, port))
        s.sendall(b"bye\n")
        data = b""
        while True:  # until the server's FIN
            chunk = s.recv(4096)
            if not chunk:
                return data.decode().strip()
            data += chunk
    _clients(count, socket.SOCK_STREAM, timeout, lambda i: sport_base and sport_base + i % sport_range, exchange,
             interval)


def udp_clients(addr: str, port: int, count: int, sport_base: int, timeout: float, interval: float = 0.0) -> None:
    def exchange(s: socket.socket) -> str:
        # Connected: a reply from any address but the VIP would be dropped.
        s.connect((addr, port))
        s.send(b"hello\n")
        return s.recv(4096).decode().strip()
    _clients(count, socket.SOCK_DGRAM, timeout, lambda i: sport_base and sport_base + i, exchange, interval)


def udp_wait(addr: str, port: int, sport: int, seconds: float) -> None:
    """The client that was there first: one socket, a datagram before the
    service exists, then (on a line on stdin) one every 0.1 s until answered."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", sport))
    s.connect((addr, port))
    s.send(b"early\n")
    print("sent", flush=True)
    sys.stdin.readline()
    start = time.monotonic()
    s.settimeout(0.1)
    answer, errors = None, []
    while answer is None and time.monotonic() - start < seconds:
        try:
            s.send(b"again\n")
            answer = s.recv(4096).decode().strip()
        except socket.timeout:
            pass
        except OSError as e:  # an ICMP error from an earlier datagram
            errors.append(f"{type(e).__name__}: {e}")
    json.dump({"answer": answer, "after_ms": (time.monotonic() - start) * 1000, "errors": errors}, sys.stdout)


def _every_tenth_second(exchange, seconds: float, answers: list, stop_on_error: bool) -> list[str]:
    """Say "connected", then call exchange(n) every 0.1 s for `seconds`,
    appending what it returns to answers; returns the errors."""
    errors: list[str] = []
    print("connected", flush=True)
    end = time.monotonic() + seconds
    n = 0
    while time.monotonic() < end:
        n += 1
        try:
            answers.append(exchange(n))
        except OSError as e:  # TCP: the connection broke; UDP: a lost datagram or an ICMP error
            errors.append(f"#{n} {type(e).__name__}: {e}")
            if stop_on_error:
                break
        time.sleep(0.1)
    return errors


def hold_udp(addr: str, port: int, seconds: float) -> None:
    """One UDP flow (one source port) sending every 0.1 s; every answer
    (the pod that answered) and every datagram without one within 1 s."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((addr, port))
    s.settimeout(1)

    def exchange(n: int) -> str:
        s.send(f"ping{n}\n".encode())
        return s.recv(4096).decode().strip()
    answers: list[str] = []
    errors = _every_tenth_second(exchange, seconds, answers, stop_on_error=False)
    s.close()
    _result(answers, errors, [])


def hold(addr: str, port: int, seconds: float) -> None:
    """Keep one connection and echo through it; report every answer."""
    s = socket.create_connection((addr, port), timeout=5)
    f = s.makefile("rwb")

    def exchange(n: int) -> str:
        f.write(f"ping{n}\n".encode())
        f.flush()
        return f.readline().decode().strip()
    answers = [f.readline().decode().strip()]
    errors = _every_tenth_second(exchange, seconds, answers, stop_on_error=True)
    s.close()
    _result(answers, errors, [])


# -- used by the test process, outside the namespaces ---------------------


def start_echo(pods, port: int = PORT) -> list:
    """An echo server in each pod namespace, named pod0, pod1, ...; returns
    once each says it is ready."""
    import subprocess
    servers = []
    try:
        for i, pod in enumerate(pods):
            proc = pod.popen(sys.executable, "-m", "harness.traffic", "serve", f"pod{i}", "--port", str(port),
                             cwd=_TESTS, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            servers.append(proc)
            line = proc.stdout.readline().strip()
            if line != "ready":
                raise RuntimeError(f"echo server in {pod.netns} did not start: {line}")
    except BaseException:
        stop_echo(servers)
        raise
    return servers


def stop_echo(servers: list) -> None:
    for s in servers:
        s.kill()
        s.wait()


def run_client(host, *args, timeout: float = 120) -> dict:
    """Run one of the client commands in `host`'s namespace; its JSON result."""
    res = host.exec(sys.executable, "-m", "harness.traffic", *map(str, args), cwd=_TESTS, timeout=timeout)
    return json.loads(res.stdout)


_TESTS = str(__import__("pathlib").Path(__file__).resolve().parents[1])


def main(argv=None) -> None:
    p = argparse.ArgumentParser(prog="harness.traffic")
    sub = p.add_subparsers(dest="cmd", required=True)
    sv = sub.add_parser("serve")
    sv.add_argument("name")
    sv.add_argument("--port", type=int, required=True)
    for name in ("tcp", "udp"):
        c = sub.add_parser(name)
        c.add_argument("addr")
        c.add_argument("port", type=int)
        c.add_argument("--count", type=int, default=1)
        c.add_argument("--sport-base", type=int, default=0)
        c.add_argument("--sport-range", type=int, default=1 << 16)
        c.add_argument("--timeout", type=float, default=3.0)
        c.add_argument("--interval", type=float, default=0.0)
    h = sub.add_parser("hold")
    h.add_argument("addr")
    h.add_argument("port", type=int)
    h.add_argument("--seconds", type=float, default=5)
    h.add_argument("--udp", action="store_true", help="one UDP flow instead of a TCP connection")
    w = sub.add_parser("udp-wait")
    w.add_argument("addr")
    w.add_argument("port", type=int)
    w.add_argument("--sport", type=int, required=True)
    w.add_argument("--seconds", type=float, default=1.0)
    a = p.parse_args(argv)
    if a.cmd == "serve":
        serve(a.name, a.port)
    elif a.cmd == "tcp":
        tcp_clients(a.addr, a.port, a.count, a.sport_base, a.sport_range, a.timeout, a.interval)
    elif a.cmd == "udp":
        udp_clients(a.addr, a.port, a.count, a.sport_base, a.timeout, a.interval)
    elif a.cmd == "udp-wait":
        udp_wait(a.addr, a.port, a.sport, a.seconds)
    else:
        (hold_udp if a.udp else hold)(a.addr, a.port, a.seconds)


if __name__ == "__main__":
    main()
