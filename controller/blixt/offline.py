"""`blixt translate`: the controller's and agent's translation, run on
objects read from files instead of a cluster. It shows the statuses the
controller would write and the dataplane an agent would program.

Objects are filed into a translate.Snapshot exactly as the watch cache files
them: by the DEFAULT_RESOURCES entry of their kind (its name is the Snapshot
field, its key() the key), so what is shown here is what the processes see.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime
import io
import json
import sys
from typing import Iterable, TextIO

import yaml

from blixt import shapes, translate
from blixt.kube.resources import DEFAULT_RESOURCES, Resource
from blixt.oneline import yaml_error

# (API group, kind) -> where the watch cache keeps that kind. The version is
# not compared: the API server serves every version of a kind alike.
RESOURCES: dict[tuple[str, str], Resource] = {(r.group, r.kind): r for r in DEFAULT_RESOURCES}
# Status kinds in the order a reader follows them: class, gateway, routes.
KIND_ORDER = {"GatewayClass": 0, "Gateway": 1, "TCPRoute": 2, "UDPRoute": 3}


class InputError(Exception):
    """An input cannot be read, parsed or filed; the command exits 2."""


class _Loader(yaml.SafeLoader):
    """YAML as the API server reads it: timestamps stay strings (PyYAML
    would make datetimes of them, which the translation compares as text),
    and a key given twice is an error (PyYAML would keep the last silently,
    so two files pasted together without `---` would become one object)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, collections.abc.Hashable):
                break  # super() names that error
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping", node.start_mark, f"found key {key!r} twice", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclasses.dataclass
class Loaded:
    snapshot: translate.Snapshot
    skipped: list[str]  # objects of kinds blixt does not read, described
    duplicates: list[str]  # objects given more than once; the last one counts


def read_documents(path: str, stdin: TextIO | None = None) -> list[dict]:
    """The objects in one file ("-": stdin): multi-document YAML, or JSON.
    Lists (kind List or *List, as `kubectl get -o yaml` prints) are flattened."""
    name = "stdin" if path == "-" else path
    try:
        if path == "-":
            text = (stdin or sys.stdin).read()
        else:
            with open(path, encoding="utf-8") as f:
                text = f.read()
    except OSError as e:
        raise InputError(f"cannot read {name}: {e.strerror or e}") from None
    except UnicodeDecodeError as e:
        raise InputError(f"cannot read {name}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    try:
        stream = io.StringIO(text)
        stream.name = name  # PyYAML's error marks name the stream
        docs = list(yaml.load_all(stream, Loader=_Loader))  # JSON is YAML too
    except yaml.YAMLError as e:
        raise InputError(f"{name}: not valid YAML or JSON: {yaml_error(e)}") from None
    if all(doc is None for doc in docs):
        # Translating nothing would print empty tables and exit 0, which
        # hides a wrong path or a truncated file.
        raise InputError(f"{name}: no objects (the file is empty or holds only comments)")
    out = []
    for i, doc in enumerate(docs, 1):
        if doc is None:  # an empty document, e.g. after a trailing ---
            continue
        if not isinstance(doc, dict):
            raise InputError(f"{name}: document {i} is a {type(doc).__name__}, not an object")
        if "kind" not in doc and "apiVersion" not in doc:
            # Not a Kubernetes object at all (a values file, say), rather
            # than an object of a kind blixt does not read, which is skipped.
            raise InputError(f"{name}: document {i} has neither kind nor apiVersion: not a Kubernetes object")
        out.extend(_flatten(doc, f"{name}: document {i}"))
    return out


def _flatten(doc: dict, where: str) -> list[dict]:
    kind = doc.get("kind")
    if not (isinstance(kind, str) and kind.endswith("List") and isinstance(doc.get("items"), list)):
        return [doc]
    items = []
    for j, item in enumerate(doc["items"], 1):
        if not isinstance(item, dict):
            raise InputError(f"{where}: item {j} of the {kind} is not an object")
        item = dict(item)
        # Items of a typed list (GatewayList) may omit their kind and apiVersion.
        if kind != "List":
            item.setdefault("kind", kind[:-len("List")])
            item.setdefault("apiVersion", doc.get("apiVersion"))
        items.append(item)
    return items


def _group(api_version) -> str | None:
    if not isinstance(api_version, str) or not api_version:
        return None
    return api_version.rpartition("/")[0]  # "v1" -> "" (core)


def describe(obj: dict) -> str:
    m = obj.get("metadata")
    m = m if isinstance(m, dict) else {}
    name = f"{m['namespace']}/{m.get('name')}" if m.get("namespace") else str(m.get("name"))
    return f"{obj.get('kind') or '(no kind)'} {name} ({obj.get('apiVersion') or 'no apiVersion'})"


def _named(obj: dict, res: Resource) -> str:
    """Kind namespace/name as the object would be filed (an unset namespace
    is default), for a message about a field of it; what is missing or not
    a string is left out, and anything unprintable in a name is escaped."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        return res.kind
    name, ns = m.get("name"), m.get("namespace") or "default"
    name = name if isinstance(name, str) and name else "(no name)"
    if res.namespaced and isinstance(ns, str):
        name = f"{ns}/{name}"
    return f"{res.kind} {name if name.isprintable() else repr(name)}"


def load(paths: Iterable[str], stdin: TextIO | None = None) -> Loaded:
    stores: dict[str, dict] = {r.name: {} for r in DEFAULT_RESOURCES}
    skipped, duplicates = [], []
    for path in paths:
        for obj in read_documents(path, stdin):
            kind = obj.get("kind")
            res = RESOURCES.get((_group(obj.get("apiVersion")), kind)) if isinstance(kind, str) else None
            if res is None:
                skipped.append(describe(obj))
                continue
            wrong = shapes.problems(kind, obj)
            if wrong:
                more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
                raise InputError(f"{'stdin' if path == '-' else path}: {_named(obj, res)}: {wrong[0]}{more}")
            meta = obj.get("metadata")
            if not isinstance(meta, dict) or not isinstance(meta.get("name"), str) or not meta["name"]:
                raise InputError(f"{'stdin' if path == '-' else path}: {describe(obj)} has no metadata.name")
            if res.namespaced and not meta.get("namespace"):
                # As `kubectl apply` without -n would file it.
                obj = {**obj, "metadata": {**meta, "namespace": "default"}}
            key = res.key(obj)
            if key in stores[res.name]:
                duplicates.append(describe(obj))
            stores[res.name][key] = obj
    return Loaded(translate.Snapshot(**stores), skipped, duplicates)


def utc_now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


# Output.

def _ref_text(ref: translate.ObjectRef) -> str:
    return f"{ref.kind} {ref.namespace}/{ref.name}" if ref.namespace else f"{ref.kind} {ref.name}"


def _parent_text(ref: dict, route_ns: str) -> str:
    kind = ref.get("kind") or "Gateway"
    text = ("" if kind == "Gateway" else f"{kind} ") + f"{ref.get('namespace') or route_ns}/{ref.get('name')}"
    if ref.get("sectionName"):
        text += f" section {ref['sectionName']}"
    if ref.get("port"):
        text += f" port {ref['port']}"
    return text


def condition_rows(statuses) -> list[tuple[str, str, dict]]:
    """(object, where in its status, condition), in reading order."""
    rows = []
    for ref in sorted(statuses, key=lambda r: (KIND_ORDER.get(r.kind, 9), r.kind, r.namespace or "", r.name)):
        status, obj = statuses[ref], _ref_text(ref)
        for c in status.get("conditions") or ():
            rows.append((obj, "", c))
        for listener in status.get("listeners") or ():
            for c in listener.get("conditions") or ():
                rows.append((obj, f"listener {listener.get('name')}", c))
        for parent in status.get("parents") or ():
            where = "parent " + _parent_text(parent.get("parentRef") or {}, ref.namespace or "")
            for c in parent.get("conditions") or ():
                rows.append((obj, where, c))
    return rows


def service_dict(s) -> dict:
    return {
        "name": s.name,
        "address": str(s.address) if s.address is not None else None,
        "port": s.port,
        "protocol": s.protocol,
        "affinity_timeout": s.affinity_timeout,
        "backends": [{"address": str(b.address), "port": b.port, "weight": b.weight, "masquerade": b.masquerade}
                     for b in s.backends],
    }


def as_json(result: translate.Translation, loaded: Loaded, node: str | None) -> dict:
    return {
        "statuses": [{"kind": ref.kind, "namespace": ref.namespace, "name": ref.name, "status": status}
                     for ref, status in sorted(result.statuses.items(), key=lambda kv: (
                         KIND_ORDER.get(kv[0].kind, 9), kv[0].kind, kv[0].namespace or "", kv[0].name))],
        "addresses": {f"{ns}/{name}": addrs for (ns, name), addrs in sorted(result.addresses.items())},
        "dataplane": {"node": node, "services": [service_dict(s) for s in _sorted_services(result)]},
        "skipped": loaded.skipped,
    }


def _sorted_services(result: translate.Translation) -> list:
    return sorted(result.dataplane.services, key=lambda s: (s.address is None, s.address or 0, s.port, s.protocol))


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    return ["  ".join([*(cell.ljust(w) for cell, w in zip(r, widths)), r[-1]]).rstrip() for r in [header, *rows]]


def as_text(result: translate.Translation, node: str | None) -> str:
    lines = ["Statuses (what the controller would write):", ""]
    rows = [(obj, where, c.get("type") or "", c.get("status") or "", c.get("reason") or "", c.get("message") or "")
            for obj, where, c in condition_rows(result.statuses)]
    if rows:
        lines += _table(("OBJECT", "WHERE", "TYPE", "STATUS", "REASON", "MESSAGE"), rows)
    else:
        lines.append("(none: no GatewayClass with this controllerName)")
    if result.addresses:
        lines += ["", "Gateway addresses:"]
        for (ns, name), addrs in sorted(result.addresses.items()):
            lines.append(f"  Gateway {ns}/{name}: {', '.join(addrs) or '(none)'}")
    scope = f"node {node}" if node else "no --node: every backend counts as remote and is masqueraded"
    lines += ["", f"Dataplane ({scope}):"]
    services = _sorted_services(result)
    if not services:
        lines.append("  (no services)")
    for s in services:
        lines.append(f"  {s.key_text}  {s.name}")
        if not any(b.weight for b in s.backends):
            lines.append("    no backend with weight > 0: new connections are rejected")
        for b in s.backends:
            lines.append(f"    -> {b.address}:{b.port}  weight {b.weight}  masquerade {'yes' if b.masquerade else 'no'}")
    return "\n".join(lines) + "\n"


def foreign_classes(snapshot: translate.Snapshot, controller_name: str) -> list[str]:
    """GatewayClasses left alone because another controller serves them."""
    return [f"GatewayClass {name} has controllerName {(gwc.get('spec') or {}).get('controllerName')!r}, "
            f"not {controller_name!r}: it and its Gateways are left alone"
            for name, gwc in sorted(snapshot.gateway_classes.items())
            if (gwc.get("spec") or {}).get("controllerName") != controller_name]


def run(paths: list[str], *, node: str | None = None, controller_name: str = translate.CONTROLLER_NAME,
        json_output: bool = False, now: str | None = None,
        stdin: TextIO | None = None, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        loaded = load(paths, stdin)
    except InputError as e:
        print(f"blixt translate: {e}", file=stderr)
        return 2
    for what in loaded.skipped:
        print(f"blixt translate: warning: skipped {what}: not a kind blixt reads", file=stderr)
    for what in loaded.duplicates:
        print(f"blixt translate: warning: {what} is given more than once; the last one counts", file=stderr)
    for note in foreign_classes(loaded.snapshot, controller_name):
        print(f"blixt translate: note: {note}", file=stderr)
    result = translate.translate(loaded.snapshot, now=now or utc_now(), controller_name=controller_name,
                                 node_name=node)
    if json_output:
        json.dump(as_json(result, loaded, node), stdout, indent=2)
        stdout.write("\n")
    else:
        stdout.write(as_text(result, node))
    return 0
