"""metav1.LabelSelector matching, for allowedRoutes.namespaces.selector."""

from __future__ import annotations


def matches(selector: dict | None, labels: dict) -> bool:
    """An empty selector matches everything; an unknown operator or a
    malformed expression matches nothing, as the API server's would fail."""
    selector = selector or {}
    for k, v in (selector.get("matchLabels") or {}).items():
        if labels.get(k) != v:
            return False
    for e in selector.get("matchExpressions") or ():
        key, op, values = e.get("key"), e.get("operator"), e.get("values") or ()
        if op == "In":
            if not values or labels.get(key) not in values:
                return False
        elif op == "NotIn":
            if not values or (key in labels and labels[key] in values):
                return False
        elif op == "Exists":
            if values or key not in labels:
                return False
        elif op == "DoesNotExist":
            if values or key in labels:
                return False
        else:
            return False
    return True
