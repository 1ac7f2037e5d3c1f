"""The real OCI distribution registry (Debian's docker-registry) serving HTTPS."""

from __future__ import annotations

import pathlib
import ssl
import urllib.request

from . import paths
from .pki import CA
from .proc import Process, free_port

CONFIG = """\
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: {root}
  delete:
    enabled: true
http:
  addr: 127.0.0.1:{port}
  tls:
    certificate: {cert}
    key: {key}
"""


class Registry:
    def __init__(self, workdir: pathlib.Path, ca: CA):
        binary = paths.require_tool("docker-registry", "the OCI registry (Debian package docker-registry)")
        self.ca = ca
        self.port = free_port()
        self.host = f"127.0.0.1:{self.port}"
        workdir.mkdir(parents=True, exist_ok=True)
        pair = ca.issue("registry", "localhost", sans=("localhost", "127.0.0.1"))
        config = workdir / "config.yml"
        config.write_text(CONFIG.format(root=workdir / "data", port=self.port,
                                        cert=pair.cert, key=pair.key))
        self.proc = Process("docker-registry", [binary, "serve", config], workdir / "registry.log")
        ctx = ssl.create_default_context(cafile=str(ca.cert))
        self.proc.wait_until(
            lambda: urllib.request.urlopen(f"https://{self.host}/v2/", context=ctx, timeout=2).status == 200,
            timeout=30, what="docker-registry on " + self.host,
        )

    def ref(self, repository: str, tag: str) -> str:
        return f"{self.host}/{repository}:{tag}"

    def stop(self) -> None:
        self.proc.stop()
