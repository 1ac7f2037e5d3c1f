import copy

import pytest

from blixt.translate import CONTROLLER_NAME, ObjectRef, merge_route_parents

from gwbuilders import basic, gateway, parent, run, tcp_route

pytestmark = pytest.mark.unit

OTHER = "example.com/other"


def entry(name, controller, section=None):
    return {"parentRef": parent(name, section=section), "controllerName": controller,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                            "observedGeneration": 1, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}


def test_keeps_foreign_entries_and_replaces_ours():
    existing = {"parents": [entry("theirs", OTHER), entry("gw", CONTROLLER_NAME), entry("old", CONTROLLER_NAME)]}
    before = copy.deepcopy(existing)
    ours = {"parents": [entry("gw", CONTROLLER_NAME, section="tcp")]}
    merged = merge_route_parents(existing, ours, CONTROLLER_NAME)
    assert merged["parents"] == [entry("theirs", OTHER), entry("gw", CONTROLLER_NAME, section="tcp")]
    assert existing == before  # inputs are not modified


def test_accepts_a_bare_list_and_missing_status():
    assert merge_route_parents(None, [entry("gw", CONTROLLER_NAME)], CONTROLLER_NAME) == \
        {"parents": [entry("gw", CONTROLLER_NAME)]}
    assert merge_route_parents({}, {"parents": []}, CONTROLLER_NAME) == {"parents": []}


def test_keeps_other_status_fields():
    merged = merge_route_parents({"parents": [], "extra": 1}, {"parents": []}, CONTROLLER_NAME)
    assert merged == {"parents": [], "extra": 1}


def test_round_trip_with_translation_drops_entries_for_unreferenced_parents():
    foreign = entry("theirs", OTHER)
    stale = entry("gone", CONTROLLER_NAME)
    route = tcp_route(status={"parents": [foreign, stale]})
    t = run(*basic(gateway(), route))
    merged = merge_route_parents(route["status"], t.statuses[ObjectRef("TCPRoute", "default", "r")], CONTROLLER_NAME)
    assert [p["parentRef"]["name"] for p in merged["parents"]] == ["theirs", "gw"]
    assert merged["parents"][0] == foreign
