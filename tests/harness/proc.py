"""Background processes with logs, readiness waits and sure teardown."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import time
from typing import Callable, Sequence


def tail(path: pathlib.Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


class Process:
    """A child process whose stdout and stderr go to a log file."""

    def __init__(self, name: str, argv: Sequence[str], log: pathlib.Path,
                 env: dict[str, str] | None = None, cwd: str | None = None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log
        self._logf = open(log, "ab")
        self.popen = subprocess.Popen(
            self.argv, stdout=self._logf, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})}, cwd=cwd, start_new_session=True,
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def describe_exit(self) -> str:
        return f"{self.name} exited with {self.popen.returncode}; last log lines ({self.log}):\n{tail(self.log)}"

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ready() until it is true; fail early, with the log, if the process dies."""
        deadline = time.monotonic() + timeout
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{what}: {self.describe_exit()}")
            try:
                if ready():
                    return
            except Exception as e:  # not ready yet; keep the reason for the timeout message
                last_error = e
            time.sleep(0.1)
        raise TimeoutError(
            f"{what}: not ready after {timeout:.0f}s (last error: {last_error}); "
            f"last log lines ({self.log}):\n{tail(self.log)}"
        )

    def stop(self, timeout: float = 10.0) -> None:
        if self.alive():
            try:
                os.killpg(self.popen.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait()
        self._logf.close()


def run(argv: Sequence[str], **kw) -> subprocess.CompletedProcess:
    """Run a command; on failure raise with its output in the message."""
    res = subprocess.run([str(a) for a in argv], capture_output=True, text=True, **kw)
    if res.returncode != 0:
        raise RuntimeError(
            f"command failed ({res.returncode}): {' '.join(map(str, argv))}\n"
            f"stdout: {res.stdout[-2000:]}\nstderr: {res.stderr[-2000:]}"
        )
    return res


def wait_for(predicate, timeout: float = 10.0, what: str = "condition", interval: float = 0.05):
    """Poll until predicate() is truthy; return its value, or fail naming `what`."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
