"""Build a bytecode OCI image as bpfman pulls it, and push it to a registry.

bpfman v0.6.0 reads the image config's Labels `io.ebpf.programs` and
`io.ebpf.maps` (JSON objects encoded as strings) and takes the first file of
the first tar+gzip layer as the object. Building is pure and deterministic
(fixed timestamps, sorted JSON) so the same object gives the same digest;
pushing speaks the OCI distribution API over HTTPS.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import io
import json
import ssl
import tarfile
import urllib.error
import urllib.parse
import urllib.request

MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"


@dataclasses.dataclass(frozen=True)
class Blob:
    media_type: str
    data: bytes

    @property
    def digest(self) -> str:
        return "sha256:" + hashlib.sha256(self.data).hexdigest()

    def descriptor(self) -> dict:
        return {"mediaType": self.media_type, "digest": self.digest, "size": len(self.data)}


@dataclasses.dataclass(frozen=True)
class BytecodeImage:
    config: Blob
    layer: Blob
    manifest: Blob


def _canonical_json(value) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def _layer(object_bytes: bytes, filename: str) -> bytes:
    tar_buf = io.BytesIO()
    with tarfile.open(fileobj=tar_buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(filename)
        info.size = len(object_bytes)
        info.mode = 0o644
        info.mtime = 0
        tar.addfile(info, io.BytesIO(object_bytes))
    return gzip.compress(tar_buf.getvalue(), mtime=0)


def build_image(
    object_bytes: bytes,
    filename: str,
    programs: dict[str, str],
    maps: dict[str, str],
) -> BytecodeImage:
    """An image holding one object file.

    programs: C function name -> bpfman program type ("tc", "tcx", ...).
    maps: map name -> map type name ("hash", "array", ...).
    """
    if "/" in filename or not filename:
        raise ValueError(f"object filename must be a plain name at the layer root, got {filename!r}")
    layer = Blob(MEDIA_LAYER, _layer(object_bytes, filename))
    diff_id = "sha256:" + hashlib.sha256(gzip.decompress(layer.data)).hexdigest()
    config = Blob(MEDIA_CONFIG, _canonical_json({
        "architecture": "amd64",
        "os": "linux",
        "created": "1970-01-01T00:00:00Z",
        "config": {
            "Labels": {
                "io.ebpf.programs": json.dumps(programs, sort_keys=True),
                "io.ebpf.maps": json.dumps(maps, sort_keys=True),
            },
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    manifest = Blob(MEDIA_MANIFEST, _canonical_json({
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }))
    return BytecodeImage(config=config, layer=layer, manifest=manifest)


class PushError(Exception):
    pass


def _request(ctx: ssl.SSLContext, method: str, url: str, data: bytes | None = None,
             headers: dict[str, str] | None = None, timeout: float = 30.0):
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    try:
        return urllib.request.urlopen(req, context=ctx, timeout=timeout)
    except urllib.error.HTTPError as e:
        if method == "HEAD" and e.code == 404:
            return None
        body = e.read().decode(errors="replace")[:500]
        raise PushError(f"{method} {url}: HTTP {e.code}: {body}") from None
    except urllib.error.URLError as e:
        raise PushError(f"{method} {url}: {e.reason}") from None


def push(image: BytecodeImage, reference: str, cafile: str | None = None) -> str:
    """Push to reference "host[:port]/repository:tag" over HTTPS; returns the manifest digest."""
    host, _, rest = reference.partition("/")
    repo, _, tag = rest.rpartition(":")
    if not host or not repo or not tag:
        raise ValueError(f"reference must be host[:port]/repository:tag, got {reference!r}")
    ctx = ssl.create_default_context(cafile=cafile)
    base = f"https://{host}/v2/{repo}"
    for blob in (image.layer, image.config):
        if _request(ctx, "HEAD", f"{base}/blobs/{blob.digest}") is not None:
            continue  # the registry has it already
        resp = _request(ctx, "POST", f"{base}/blobs/uploads/", data=b"")
        location = urllib.parse.urljoin(f"https://{host}/", resp.headers["Location"])
        sep = "&" if "?" in location else "?"
        _request(ctx, "PUT", f"{location}{sep}digest={urllib.parse.quote(blob.digest)}",
                 data=blob.data, headers={"Content-Type": "application/octet-stream"})
    _request(ctx, "PUT", f"{base}/manifests/{tag}", data=image.manifest.data,
             headers={"Content-Type": MEDIA_MANIFEST})
    return image.manifest.digest
