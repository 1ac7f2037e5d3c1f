"""The cyclic garbage collector paused around work that allocates hundreds
of thousands of small objects and makes no cycles (a translation, an
agent's pass), and kept off long-lived state (`freeze_heap`).

Left on, the collector's full passes walk the whole heap, the watch cache's
millions of dicts included, and find nothing: at 10,000 routes over 1,000
Gateways that was about half of a translation (tests/bench/README.md), and
at 10,000 services x 10 backends an unchanged plan took 1.5 s with it and
1.1 s without. Reference counting still frees everything as usual."""

from __future__ import annotations

import contextlib
import gc


@contextlib.contextmanager
def paused():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:  # nested (or another thread's): the outermost turns it back on
            gc.enable()


def freeze_heap() -> None:
    """Collect once, then keep every object alive now out of later collections
    (gc.freeze): the agent's long-lived state (watch cache, memos, the
    planner's parts) is millions of objects that form no cycles, and a full
    collection walking them took about 0.3 s at 10,000 frontends, landing in
    whatever pass happened to trigger it. They are still freed by reference
    counting when replaced; only a cycle among them would outlive its use,
    hence the collection first. Called after the first full sync and at each
    periodic re-read of the maps, so objects made since are frozen too."""
    gc.collect()
    gc.freeze()
