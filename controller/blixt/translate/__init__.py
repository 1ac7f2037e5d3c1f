"""Gateway API objects -> statuses and the desired dataplane. Pure: plain
dicts in, plain values out; the caller does all I/O.

Public API:
    translate(snapshot, *, now, controller_name=CONTROLLER_NAME, node_name=None) -> Translation
    merge_route_parents(existing_status, ours, controller_name) -> dict
    parse_pool(text) -> Pool   (ConfigMap pool format: see blixt.translate.pool)
"""

from .model import CONTROLLER_NAME, ObjectRef, Snapshot, Translation
from .pool import Pool, PoolError, parse_pool
from .routes import merge_route_parents
from .core import translate

__all__ = ["CONTROLLER_NAME", "ObjectRef", "Pool", "PoolError", "Snapshot", "Translation",
           "merge_route_parents", "parse_pool", "translate"]
