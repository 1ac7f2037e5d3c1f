import json
import ssl
import urllib.request

from blixt import oci_image


def test_pushed_image_is_served_over_tls(registry):
    img = oci_image.build_image(b"\x7fELF", "x.o", programs={"p": "tc"}, maps={})
    ref = registry.ref("smoke/image", "v1")
    digest = oci_image.push(img, ref, cafile=str(registry.ca.cert))
    ctx = ssl.create_default_context(cafile=str(registry.ca.cert))
    req = urllib.request.Request(f"https://{registry.host}/v2/smoke/image/manifests/v1",
                                 headers={"Accept": oci_image.MEDIA_MANIFEST})
    with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest
        assert json.loads(resp.read())["layers"][0]["digest"] == img.layer.digest


def test_untrusted_client_is_refused(registry):
    import pytest
    ctx = ssl.create_default_context(cafile="/etc/ssl/certs/ca-certificates.crt")
    with pytest.raises(urllib.error.URLError) as exc:
        urllib.request.urlopen(f"https://{registry.host}/v2/", context=ctx, timeout=10)
    assert "CERTIFICATE_VERIFY_FAILED" in str(exc.value)
