"""tests/images checks the tarballs `make images` writes; it is not part of
`make test` (whose pytest run collects tests/ through testpaths). Its tests
are collected only when tests/images, or a file in it, is named on the
command line: `make test-images` does that after `make images`."""

from __future__ import annotations

import pathlib

HERE = pathlib.Path(__file__).resolve().parent


def pytest_ignore_collect(collection_path, config):
    if collection_path.parent != HERE or collection_path.suffix != ".py" or collection_path.name == "conftest.py":
        return None
    root = config.invocation_params.dir
    for arg in config.args:
        p = (root / arg.split("::", 1)[0]).resolve()
        if p == HERE or p == collection_path or HERE in p.parents:
            return None
    return True
