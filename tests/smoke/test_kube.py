import json

import pytest

GATEWAY_KINDS = ("gatewayclasses", "gateways", "tcproutes", "udproutes")


def test_version_reports_the_built_release(kube):
    out = json.loads(kube.kubectl("version", "-o", "json").stdout)
    assert out["serverVersion"]["gitVersion"].startswith("v1.35.")
    assert out["clientVersion"]["gitVersion"] == out["serverVersion"]["gitVersion"]


@pytest.mark.parametrize("plural", GATEWAY_KINDS)
def test_gateway_api_served_at_v1(kube, plural):
    from kubernetes import client
    api = client.CustomObjectsApi(kube.api_client())
    if plural == "gatewayclasses":
        result = api.list_cluster_custom_object("gateway.networking.k8s.io", "v1", plural)
    else:
        result = api.list_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", plural)
    assert result["items"] == []


def test_crd_bundle_version(kube):
    out = json.loads(kube.kubectl("get", "crd", "tcproutes.gateway.networking.k8s.io", "-o", "json").stdout)
    assert out["metadata"]["annotations"]["gateway.networking.k8s.io/bundle-version"] == "v1.6.1"
    assert out["metadata"]["annotations"]["gateway.networking.k8s.io/channel"] == "standard"


def test_invalid_tcproute_is_rejected_by_crd_validation(kube):
    from kubernetes import client
    from kubernetes.client.rest import ApiException
    api = client.CustomObjectsApi(kube.api_client())
    route = {
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "TCPRoute",
        "metadata": {"name": "bad"},
        # A Service backendRef without a port breaks the CRD's CEL rule.
        "spec": {"parentRefs": [{"name": "gw"}],
                 "rules": [{"backendRefs": [{"name": "svc"}]}]},
    }
    with pytest.raises(ApiException) as exc:
        api.create_namespaced_custom_object("gateway.networking.k8s.io", "v1", "default", "tcproutes", route)
    assert exc.value.status == 422
    body = json.loads(exc.value.body)
    assert body["reason"] == "Invalid"
    assert "Must have port for Service reference" in body["message"], body["message"]


def test_rbac_denies_an_unprivileged_identity(kube):
    res = kube.kubectl("auth", "can-i", "list", "tcproutes.gateway.networking.k8s.io",
                       "--as=system:serviceaccount:default:nobody", check=False)
    assert res.stdout.strip() == "no"
