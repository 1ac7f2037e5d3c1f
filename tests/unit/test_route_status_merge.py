"""The translation's route status, merged the way the status writer merges
it with the live object: other controllers' entries stay, ours for parents
no longer referenced go."""

from blixt.kube.status import merge_parents
from blixt.translate import CONTROLLER_NAME, ObjectRef

from gwbuilders import basic, gateway, parent, run, tcp_route

OTHER = "example.com/other"


def entry(name, controller):
    return {"parentRef": parent(name), "controllerName": controller,
            "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "",
                            "observedGeneration": 1, "lastTransitionTime": "2025-01-01T00:00:00Z"}]}


def test_translation_drops_entries_for_unreferenced_parents_and_keeps_foreign_ones():
    foreign = entry("theirs", OTHER)
    stale = entry("gone", CONTROLLER_NAME)
    route = tcp_route(status={"parents": [foreign, stale]})
    ours = run(*basic(gateway(), route)).statuses[ObjectRef("TCPRoute", "default", "r")]
    merged = merge_parents(ours, route["status"], CONTROLLER_NAME)
    assert sorted(p["parentRef"]["name"] for p in merged["parents"]) == ["gw", "theirs"]
    assert foreign in merged["parents"]
