"""Gateway API objects -> statuses and the desired dataplane. Pure: plain
dicts in, plain values out; the caller does all I/O.

Route statuses hold only blixt's parents[] entries; the status writer
(blixt.kube.status) merges them with other controllers' entries.

Public API:
    translate(snapshot, *, now, controller_name=CONTROLLER_NAME, node_name=None,
              services=None, budget=None, memo=None) -> Translation
    Memo()     kept between translate() calls: unchanged objects not redone
    parse_pool(text) -> Pool   (ConfigMap pool format: see blixt.translate.pool)
"""

from .model import CONTROLLER_NAME, ObjectRef, Snapshot, Translation
from .pool import Pool, PoolError, parse_pool
from .core import translate
from .memo import Memo

__all__ = ["CONTROLLER_NAME", "ObjectRef", "Pool", "PoolError", "Snapshot", "Translation",
           "Memo", "parse_pool", "translate"]
