"""A real bpfman-rpc 0.6.0 for tests.

bpfman keeps its state in fixed places (/run/bpfman, /etc/bpfman/bpfman.toml),
so one server runs per machine. Signature verification is turned off because
it needs the network; the previous config file is restored afterwards.
"""

from __future__ import annotations

import os
import pathlib
import resource
import signal
import subprocess
import time

from blixt.bpfman.client import BpfmanClient

from . import paths
from .proc import Process, run

CONFIG_PATH = pathlib.Path("/etc/bpfman/bpfman.toml")
CONFIG = """\
# Written by the blixt test harness; the previous file is restored afterwards.
[signing]
allow_unsigned = true
verify_enabled = false
"""


def memlock_is_capped() -> bool:
    """Whether this process cannot raise RLIMIT_MEMLOCK to infinity (no
    CAP_SYS_RESOURCE and a finite hard limit): bpfman 0.6.0 then refuses
    every request unless the shim is preloaded."""
    soft, hard = resource.getrlimit(resource.RLIMIT_MEMLOCK)
    if hard == resource.RLIM_INFINITY:
        return False
    try:
        resource.setrlimit(resource.RLIMIT_MEMLOCK, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        return False
    except (ValueError, OSError):
        return True


def memlock_shim() -> pathlib.Path | None:
    """The LD_PRELOAD shim where the limit is capped; None when it can be
    raised for real."""
    if not memlock_is_capped():
        return None
    target = paths.BUILD / "memlock_shim.so"
    run(["make", "-s", "-C", str(paths.REPO), str(target.relative_to(paths.REPO))])
    return target


def _running_bpfman_pids() -> list[int]:
    res = subprocess.run(["pgrep", "-x", "bpfman-rpc"], capture_output=True, text=True)
    return [int(p) for p in res.stdout.split()]


class BpfmanServer:
    def __init__(self, workdir: pathlib.Path, ssl_cert_file: pathlib.Path | None = None):
        paths.require_root("bpfman-rpc")
        binary = paths.require_file(paths.BPFMAN_RPC, f"bpfman-rpc {paths.BPFMAN_VERSION}")
        others = _running_bpfman_pids()
        if others:
            raise RuntimeError(
                f"another bpfman-rpc is running (pids {others}); bpfman state in /run/bpfman is "
                "per machine, so stop it before running these tests")
        workdir.mkdir(parents=True, exist_ok=True)
        self.socket = workdir / "bpfman.sock"
        self._saved_config = CONFIG_PATH.read_bytes() if CONFIG_PATH.exists() else None
        CONFIG_PATH.parent.mkdir(parents=True, exist_ok=True)
        CONFIG_PATH.write_text(CONFIG)
        self._env = {"RUST_LOG": os.environ.get("BPFMAN_LOG", "info")}
        shim = memlock_shim()
        if shim is not None:
            self._env["LD_PRELOAD"] = str(shim)
        if ssl_cert_file is not None:
            # bpfman pulls images through OpenSSL, which honours SSL_CERT_FILE.
            self._env["SSL_CERT_FILE"] = str(ssl_cert_file)
        self._argv = [binary, "--timeout=0", f"--socket-path={self.socket}"]
        self._log = workdir / "bpfman-rpc.log"
        self._start()
        self.unloaded_stale = self._unload_stale()

    def _start(self) -> None:
        self.proc = Process("bpfman-rpc", self._argv, self._log, env=self._env)
        self.proc.wait_until(self._answers, timeout=60, what="bpfman-rpc on " + str(self.socket))

    def restart(self, down: float = 0.0) -> None:
        """SIGKILL bpfman-rpc (no clean-up), stay down `down` seconds, start it
        again on the same socket and state (/run/bpfman)."""
        os.killpg(self.proc.popen.pid, signal.SIGKILL)
        self.proc.popen.wait()
        self.proc.stop()  # closes its log
        time.sleep(down)
        self._start()

    def _unload_stale(self) -> list[int]:
        """bpfman keeps its programs across restarts (/run/bpfman/db). Ours
        left by an earlier run that died belong to namespaces that are gone,
        and bpfman would order new TCX links after them in a namespace that
        reuses the old one's inode, which the kernel refuses. This server
        owns the machine's bpfman state while it runs, so unload them, and
        those bpfman-operator loaded for a ClusterBpfApplication named blixt
        (tests/cluster_operator, tests/e2e/test_operator_mode.py)."""
        gone = []
        with self.client() as c:
            for p in c.list():
                if any(k.startswith("blixt.io/") for k in p.metadata) or \
                        p.metadata.get("bpfman.io/ProgramName") == "blixt":
                    c.unload(p.id)
                    gone.append(p.id)
        return gone

    def _answers(self) -> bool:
        if not self.socket.exists():
            return False
        with BpfmanClient(str(self.socket), timeout=5) as c:
            c.list()
        return True

    def client(self, timeout: float = 60.0) -> BpfmanClient:
        return BpfmanClient(str(self.socket), timeout=timeout)

    def stop(self) -> None:
        try:
            self.proc.stop()
        finally:
            if self._saved_config is None:
                CONFIG_PATH.unlink(missing_ok=True)
            else:
                CONFIG_PATH.write_bytes(self._saved_config)
