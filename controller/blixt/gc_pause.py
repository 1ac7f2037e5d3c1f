"""The cyclic garbage collector paused around work that allocates hundreds
of thousands of small objects and makes no cycles (a translation, a plan).

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
