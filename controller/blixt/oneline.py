"""Error messages fit for one line of a command's stderr.

Some libraries' messages span lines (PyYAML quotes the offending source
under the problem); a command's failure should be a single line that log
collectors and `kubectl logs | tail -1` show whole."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only read, duck-typed: commands that never parse YAML need not import it
    import yaml


def one_line(text: object) -> str:
    """str(text) with its line breaks (and the indentation after them) folded."""
    return "; ".join(part.strip() for part in str(text).splitlines() if part.strip())


def yaml_error(e: yaml.YAMLError) -> str:
    """Where and what, e.g. "line 2, column 1: expected ',' or ']', but got
    '<stream end>' (while parsing a flow sequence)"."""
    problem = getattr(e, "problem", None)
    mark = getattr(e, "problem_mark", None)
    if problem is None or mark is None:
        return one_line(str(e))
    context = getattr(e, "context", None)
    return one_line(f"line {mark.line + 1}, column {mark.column + 1}: {problem}" + (f" ({context})" if context else ""))
