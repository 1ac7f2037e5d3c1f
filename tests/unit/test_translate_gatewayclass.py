import pytest

from blixt.translate import CONTROLLER_NAME, ObjectRef

from gwbuilders import NOW, EARLIER, config_map, cond, csr, gateway_class, pool_ref, run

pytestmark = pytest.mark.unit

REF = ObjectRef("GatewayClass", None, "blixt")


def test_controller_name_constant():
    assert CONTROLLER_NAME == "gateway.networking.k8s.io/blixt"


def test_our_class_is_accepted_with_observed_generation_and_features():
    t = run(gateway_class(generation=3))
    st = t.statuses[REF]
    c = cond(st["conditions"], "Accepted")
    assert (c["status"], c["reason"], c["observedGeneration"], c["lastTransitionTime"]) == ("True", "Accepted", 3, NOW)
    names = [f["name"] for f in st["supportedFeatures"]]
    assert {"Gateway", "TCPRoute", "UDPRoute", "ReferenceGrant"} <= set(names)
    assert names == sorted(names)  # the API requires ascending order


def test_other_controllers_classes_get_no_status():
    t = run(gateway_class(name="other", controller="example.com/other"))
    assert t.statuses == {}


def test_custom_controller_name():
    t = run(gateway_class(name="x", controller="example.com/lb"), controller_name="example.com/lb")
    assert csr(t.statuses[ObjectRef("GatewayClass", None, "x")]["conditions"], "Accepted") == ("True", "Accepted")


def test_valid_config_map_parameters_are_accepted():
    t = run(gateway_class(params=pool_ref()), config_map())
    assert csr(t.statuses[REF]["conditions"], "Accepted") == ("True", "Accepted")


@pytest.mark.parametrize("params, objs, fragment", [
    (pool_ref(group="example.com", kind="Params"), [], "core/v1 ConfigMap"),
    (pool_ref(kind="Secret"), [], "core/v1 ConfigMap"),
    (pool_ref(ns=None), [config_map()], "namespace"),
    (pool_ref(name="missing"), [config_map()], "blixt-system/missing not found"),
    (pool_ref(), [config_map(addresses="10.0.0.0/33")], "10.0.0.0/33"),
    (pool_ref(), [config_map(data={"pool": "10.0.0.1"})], "'addresses'"),
])
def test_invalid_parameters(params, objs, fragment):
    t = run(gateway_class(params=params), *objs)
    c = cond(t.statuses[REF]["conditions"], "Accepted")
    assert (c["status"], c["reason"]) == ("False", "InvalidParameters")
    assert fragment in c["message"]


def test_observed_generation_follows_spec_changes_and_transition_time_holds():
    first = run(gateway_class(generation=1), now=EARLIER).statuses[REF]
    second = run(gateway_class(generation=2, status=first), now=NOW).statuses[REF]
    c = cond(second["conditions"], "Accepted")
    assert c["observedGeneration"] == 2
    assert c["lastTransitionTime"] == EARLIER  # status did not change


def test_transition_time_moves_when_status_changes():
    first = run(gateway_class(), config_map(), now=EARLIER).statuses[REF]
    broken = run(gateway_class(params=pool_ref(name="missing"), status=first), now=NOW).statuses[REF]
    assert cond(broken["conditions"], "Accepted")["lastTransitionTime"] == NOW


def test_foreign_conditions_are_kept_in_place():
    other = {"type": "example.com/Audited", "status": "True", "reason": "Done", "message": "",
             "observedGeneration": 1, "lastTransitionTime": EARLIER}
    st = run(gateway_class(status={"conditions": [other]})).statuses[REF]
    assert st["conditions"][0] == other
    assert [c["type"] for c in st["conditions"]] == ["example.com/Audited", "Accepted"]


def test_a_condition_type_repeated_in_the_previous_status_is_written_once():
    # The API server keeps conditions as a map by type; a status carrying our
    # type twice (found by tests/reliability) must not be written back so.
    stale = [{"type": "Accepted", "status": "False", "reason": "InvalidParameters", "message": "",
              "observedGeneration": 1, "lastTransitionTime": EARLIER}] * 2
    st = run(gateway_class(status={"conditions": stale})).statuses[REF]
    assert [(c["type"], c["status"], c["reason"]) for c in st["conditions"]] == [("Accepted", "True", "Accepted")]
