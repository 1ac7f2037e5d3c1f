"""GatewayClass acceptance and status."""

from __future__ import annotations

import dataclasses

from .conditions import Cond, render
from .model import generation
from .params import ParamsError, class_pool
from .pool import Pool

# Conformance feature names we claim; the API wants them sorted by name.
SUPPORTED_FEATURES = tuple(sorted(("Gateway", "ReferenceGrant", "TCPRoute", "UDPRoute")))


@dataclasses.dataclass
class ClassState:
    accepted: bool
    message: str
    pool: Pool | None


def evaluate(gwc: dict, config_maps) -> ClassState:
    try:
        return ClassState(True, "", class_pool(gwc, config_maps))
    except ParamsError as e:
        return ClassState(False, str(e), None)


def status(gwc: dict, state: ClassState, now: str) -> dict:
    if state.accepted:
        cond = Cond("Accepted", True, "Accepted", "accepted by blixt")
    else:
        cond = Cond("Accepted", False, "InvalidParameters", state.message)
    old = gwc.get("status") or {}
    return {
        "conditions": render([cond], old.get("conditions"), generation(gwc), now, keep_foreign=True),
        "supportedFeatures": [{"name": f} for f in SUPPORTED_FEATURES],
    }
