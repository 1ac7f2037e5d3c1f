"""A throw-away certificate authority made with the openssl command line."""

from __future__ import annotations

import dataclasses
import ipaddress
import pathlib

from .proc import run


@dataclasses.dataclass(frozen=True)
class KeyPair:
    cert: pathlib.Path
    key: pathlib.Path


class CA:
    def __init__(self, directory: pathlib.Path, name: str = "blixt-test-ca"):
        self.dir = directory
        self.dir.mkdir(parents=True, exist_ok=True)
        self.pair = KeyPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", self.pair.key, "-out", self.pair.cert,
             "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign"])

    @property
    def cert(self) -> pathlib.Path:
        return self.pair.cert

    def issue(self, name: str, cn: str, org: str | None = None,
              sans: tuple[str, ...] = (), client: bool = False) -> KeyPair:
        """A leaf certificate; sans are DNS names or IP addresses."""
        pair = KeyPair(self.dir / f"{name}.crt", self.dir / f"{name}.key")
        csr = self.dir / f"{name}.csr"
        ext = self.dir / f"{name}.ext"
        subject = f"/CN={cn}" + (f"/O={org}" if org else "")
        run(["openssl", "req", "-new", "-newkey", "rsa:2048", "-nodes", "-subj", subject,
             "-keyout", pair.key, "-out", csr])
        lines = ["basicConstraints=CA:FALSE",
                 "keyUsage=critical,digitalSignature,keyEncipherment",
                 f"extendedKeyUsage={'clientAuth' if client else 'serverAuth,clientAuth'}"]
        if sans:
            entries = []
            for s in sans:
                try:
                    ipaddress.ip_address(s)
                    entries.append(f"IP:{s}")
                except ValueError:
                    entries.append(f"DNS:{s}")
            lines.append("subjectAltName=" + ",".join(entries))
        ext.write_text("\n".join(lines) + "\n")
        run(["openssl", "x509", "-req", "-in", csr, "-CA", self.pair.cert, "-CAkey", self.pair.key,
             "-CAcreateserial", "-days", "2", "-extfile", ext, "-out", pair.cert])
        return pair

    def bundle_with_system(self, path: pathlib.Path) -> pathlib.Path:
        """The system CA store plus this CA, for programs that take one SSL_CERT_FILE."""
        system = pathlib.Path("/etc/ssl/certs/ca-certificates.crt")
        parts = [system.read_text()] if system.exists() else []
        parts.append(self.pair.cert.read_text())
        path.write_text("".join(parts))
        return path
