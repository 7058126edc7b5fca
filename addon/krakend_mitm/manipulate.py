"""Per-backend data manipulation, flatmap and static data, over plain dicts.

Matches lura `proxy/formatter.go` (target, allow, deny, mapping, group), github.com/krakend/flatmap
`tree` (flatmap_filter) and lura `proxy/static.go`. Like lura, the functions work on the data they
are given: a backend's freshly decoded data is owned by its request and may be changed in place.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

WILDCARD = "*"
FLATMAP_TYPES = ("move", "del", "append")
TWO_ARGUMENT_TYPES = ("move", "append")
STATIC_STRATEGIES = ("always", "success", "errored", "complete", "incomplete")


# ============================================================================================
# target / allow / deny / mapping / group (lura entityFormatter)
# ============================================================================================


def apply_backend(
    data: dict,
    *,
    target: str = "",
    allow: Iterable[str] = (),
    deny: Iterable[str] = (),
    mapping: Mapping[str, str] | None = None,
    group: str = "",
    flatmap: list[dict] | None = None,
) -> dict:
    """One backend's manipulation in lura's order: target, allow (or deny), mapping, group.

    A non-empty `flatmap` with at least one usable operation replaces allow/deny/mapping
    (lura newFlatmapFormatter: target -> flatmap -> group). `data` may be modified in place."""
    operations = _parse_operations(flatmap) if flatmap else []
    if target:
        data = extract_target(data, target)
    if operations:
        data = _run_flatmap(data, operations)
    else:
        if data:
            allow = list(allow)
            if allow:
                _apply_allow(data, allow)
            else:
                _apply_deny(data, deny)
        if data and mapping:
            _apply_mapping(data, mapping)
    if group:
        data = {group: data}
    return data


def extract_target(data: dict, target: str) -> dict:
    """lura extractTarget: walk the dotted path; a missing step or a non-object gives {}."""
    for part in target.split("."):
        if part not in data:
            return {}
        data = data[part]
        if not isinstance(data, dict):
            return {}
    return data


def _allow_tree(paths: Iterable[str]) -> dict:
    """lura newAllowlistingFilter: a tree of allowed keys with True at the leaves. A later path
    can turn a leaf into a branch ("a" then "a.b" allows only a.b), as buildDictPath does."""
    tree: dict = {}
    for path in paths:
        fields = path.split(".")
        node = tree
        depth = 0
        while depth < len(fields) - 1 and isinstance(node.get(fields[depth]), dict):
            node = node[fields[depth]]
            depth += 1
        for field in fields[depth:-1]:
            branch: dict = {}
            node[field] = branch  # replaces a leaf, as buildDictPath does
            node = branch
        node[fields[-1]] = True
    return tree


def _prune(allowed: dict, data: dict) -> bool:
    """lura AllowlistPrune: drop what is not allowed; True when nothing is left. An allowed
    path that continues below a non-object (e.g. an array) drops the whole key."""
    nothing_left = True
    for key in list(data):
        rule = allowed.get(key)
        if rule is None:
            keep = False
        elif isinstance(rule, dict):
            value = data[key]
            keep = isinstance(value, dict) and not _prune(rule, value)
        else:
            keep = True
        if keep:
            nothing_left = False
        else:
            del data[key]
    return nothing_left


def _apply_allow(data: dict, paths: Iterable[str]) -> None:
    if _prune(_allow_tree(paths), data):
        data.clear()


def _deny_rules(paths: Iterable[str]) -> dict[str, list[str]]:
    """lura newDenylistingFilter: only two levels. "a.b.c" denies a.b; a plain "a" after "a.b"
    denies all of a, but "a.b" after "a" narrows it back to a.b."""
    rules: dict[str, list[str]] = {}
    for path in paths:
        keys = path.split(".")
        if len(keys) > 1:
            rules.setdefault(keys[0], []).append(keys[1])
        else:
            rules[keys[0]] = []
    return rules


def _apply_deny(data: dict, paths: Iterable[str]) -> None:
    for key, nested in _deny_rules(paths).items():
        if not nested:
            data.pop(key, None)
            continue
        value = data.get(key)
        if isinstance(value, dict):  # a non-object is left alone
            for name in nested:
                value.pop(name, None)


def _apply_mapping(data: dict, mapping: Mapping[str, str]) -> None:
    """lura: rename top-level keys; the new name is cut at its first dot. Renaming a key to
    itself deletes it (lura sets the new key, then deletes the old one)."""
    for old, new in mapping.items():
        if old in data:
            value = data[old]
            data[new.split(".")[0]] = value
            del data[old]


# ============================================================================================
# flatmap_filter (github.com/krakend/flatmap tree)
# ============================================================================================


class _Edge:
    __slots__ = ("label", "node")

    def __init__(self, label: str, node: _Node) -> None:
        self.label, self.node = label, node


class _Node:
    """A flattened value: children as labelled edges (array items labelled "0", "1", ...),
    or a leaf value. Empty objects/arrays and scalars are leaves."""

    __slots__ = ("value", "is_collection", "edges")

    def __init__(self) -> None:
        self.value: Any = None
        self.is_collection = False
        self.edges: list[_Edge] = []

    def child(self, label: str) -> _Node | None:
        for edge in self.edges:
            if edge.label == label:
                return edge.node
        return None


def _add(node: _Node, keys: list[str], value: Any) -> None:
    """node.Add: find or create the path, then flatten the value into the last node."""
    for key in keys:
        found = node.child(key)
        if found is None:
            found = _Node()
            node.edges.append(_Edge(key, found))
        node = found
    _flatten(node, value)


def _flatten(node: _Node, value: Any) -> None:
    if isinstance(value, dict):
        node.is_collection = False
        if not value:
            node.value = value
        for key, item in value.items():
            _add(node, [key], item)
    elif isinstance(value, list):
        node.is_collection = True
        if not value:
            node.value = value
        for index, item in enumerate(value):
            _add(node, [str(index)], item)
    else:
        node.is_collection = False
        node.value = value


def _get(node: _Node, keys: list[str]) -> Any:
    if not node.edges and keys:
        return None
    if not keys:
        return _expand(node)
    if keys[0] == WILDCARD:
        return [_get(edge.node, keys[1:]) for edge in node.edges]
    found = node.child(keys[0])
    return None if found is None else _get(found, keys[1:])


def _expand(node: _Node) -> Any:
    """A node that lost all its children expands to its leaf value: None (null) unless it was
    empty from the start."""
    if not node.edges:
        return node.value
    if node.is_collection:
        return [_expand(edge.node) for edge in node.edges]
    return {edge.label: _expand(edge.node) for edge in node.edges}


def _delete(node: _Node, keys: list[str]) -> None:
    if not keys or not node.edges:
        return
    if keys[0] == WILDCARD:
        if len(keys) > 1:
            for edge in node.edges:
                _delete(edge.node, keys[1:])
        else:
            node.edges.clear()
        return
    for index, edge in enumerate(node.edges):
        if edge.label == keys[0]:
            if len(keys) == 1:
                del node.edges[index]
            else:
                _delete(edge.node, keys[1:])
            return


def _move(root: _Node, source: list[str], destination: list[str]) -> None:
    """tree.Move: same length -> relabel the last segment in place; shorter destination ->
    promote (attach under the deepest existing prefix); longer -> embed below the source's
    parent (the destination's leading segments are not used)."""
    if not source or not destination:
        raise ValueError("flatmap move needs a source and a destination")  # lura panics here
    candidates = [(root, [])]
    if len(source) > 1:
        candidates = _collect_candidates(source[:-1], candidates)
    relabel = len(source) == len(destination)
    moved: list[tuple[_Node, list[str], _Edge]] = []
    for parent, path in candidates:
        for index, edge in enumerate(parent.edges):
            if edge.label != source[-1]:
                continue
            if relabel:
                edge.label = destination[-1]
            else:
                moved.append((parent, path, edge))
                del parent.edges[index]
            break
    if relabel:
        return
    if len(source) > len(destination):
        _promote(root, moved, destination)
    else:
        _embed(moved, destination[len(source) - 1 :])


NodeAndPath = tuple[_Node, list[str]]


def _collect_candidates(steps: list[str], current: list[NodeAndPath]) -> list[NodeAndPath]:
    for step in steps:
        reached = []
        for node, path in current:
            for edge in node.edges:
                if step == WILDCARD or edge.label == step:
                    reached.append((edge.node, [*path, edge.label]))
                    if step != WILDCARD:
                        break
        current = reached
    return current


def _promote(root: _Node, moved: list, destination: list[str]) -> None:
    for _parent, path, edge in moved:
        target = root
        for index, step in enumerate(destination[:-1]):
            found = target.child(path[index] if step == WILDCARD else step)
            if found is None:
                break
            target = found
        edge.label = destination[-1]
        target.edges.append(edge)


def _embed(moved: list, relative: list[str]) -> None:
    for parent, _path, edge in moved:
        target = parent
        for step in relative[:-1]:
            found = target.child(step)
            if found is None:
                found = _Node()
                target.edges.append(_Edge(step, found))
            target = found
        edge.label = relative[-1]
        target.edges.append(edge)


def _append(root: _Node, source: list[str], destination: list[str]) -> None:
    """tree.Append: both paths must hold arrays; the source items go to the end of the
    destination array and the source is deleted."""
    items = _get(root, source)
    existing = _get(root, destination)
    if not isinstance(items, list) or not isinstance(existing, list):
        return
    _add(root, destination, existing + items)
    _delete(root, source)


def _parse_operations(operations: list) -> list[tuple[str, list[list[str]]]]:
    """lura newFlatmapFormatter: entries that are not objects or lack a string "type" are
    skipped; each string argument is split on dots, other arguments become empty paths."""
    parsed = []
    for operation in operations:
        if not isinstance(operation, dict) or not isinstance(operation.get("type"), str):
            continue
        arguments = operation.get("args")
        if not isinstance(arguments, list):
            arguments = []
        paths = [arg.split(".") if isinstance(arg, str) else [] for arg in arguments]
        parsed.append((operation["type"], paths))
    return parsed


def _run_flatmap(data: dict | None, operations: list[tuple[str, list[list[str]]]]) -> dict:
    if data is None:
        return {}  # tree.New(nil) fails and lura leaves the data alone
    root = _Node()
    _flatten(root, data)
    for kind, paths in operations:
        if kind in TWO_ARGUMENT_TYPES and len(paths) < 2:
            raise ValueError(f"flatmap {kind} needs two arguments")  # lura indexes Args[1]: panic
        if kind == "move":
            _move(root, paths[0], paths[1])
        elif kind == "append":
            _append(root, paths[0], paths[1])
        elif kind == "del":
            for path in paths:
                _delete(root, path)
    result = _expand(root)
    return result if isinstance(result, dict) else {}


def apply_flatmap(data: dict, ops: list[dict]) -> dict:
    """Run `flatmap_filter` operations (`move`, `del`, `append` over dotted paths, `*` for every
    element) the way lura's flatmap formatter does; returns the new data."""
    return _run_flatmap(data, _parse_operations(ops))


def validate_flatmap(ops: Any) -> list[str]:
    """Config-time check of a `flatmap_filter`; returns the problems found (empty when valid).
    lura would skip malformed entries silently or panic on a missing argument at request time."""
    if not isinstance(ops, list):
        return ["flatmap_filter must be a list of operations"]
    problems = []
    for index, operation in enumerate(ops):
        problems.extend(_operation_problems(f"flatmap_filter[{index}]", operation))
    return problems


def _operation_problems(where: str, operation: Any) -> list[str]:
    if not isinstance(operation, dict):
        return [f"{where}: must be an object with 'type' and 'args'"]
    problems = []
    kind = operation.get("type")
    if kind not in FLATMAP_TYPES:
        problems.append(f"{where}.type: must be one of {', '.join(FLATMAP_TYPES)}, got {kind!r}")
    arguments = operation.get("args")
    if not isinstance(arguments, list) or not all(isinstance(arg, str) and arg for arg in arguments):
        problems.append(f"{where}.args: must be a list of non-empty dotted paths")
    elif kind in TWO_ARGUMENT_TYPES and len(arguments) != 2:
        problems.append(f"{where}.args: {kind} takes exactly 2 paths, got {len(arguments)}")
    elif kind == "del" and not arguments:
        problems.append(f"{where}.args: del takes at least 1 path")
    return problems


# ============================================================================================
# Static data (lura proxy/static.go) and merging (proxy/merging.go)
# ============================================================================================


def static_applies(strategy: Any, data: dict | None, *, errored: bool, complete: bool) -> bool:
    """lura's static strategies. `data is None` stands for a nil response. A missing or
    unknown strategy keeps lura's initial matcher, which is `always`."""
    if strategy == "success":
        return not errored
    if strategy == "errored":
        return errored
    if strategy == "complete":
        return not errored and data is not None and complete
    if strategy == "incomplete":
        return data is None or not complete
    return True


def apply_static(
    static_data: dict, strategy: str, data: dict | None, *, errored: bool, complete: bool
) -> tuple[dict | None, bool]:
    """Merge static data over the response when the strategy matches; static keys win.
    Returns (data, applied). With no data a new dict made of the static data is returned."""
    if not static_applies(strategy, data, errored=errored, complete=complete):
        return data, False
    merged = {} if data is None else dict(data)
    merged.update(static_data)
    return merged, True


def merge_shallow(into: dict, other: dict | None) -> dict:
    """lura combineData: a later part's top-level keys overwrite earlier ones; nil data is skipped."""
    if other:
        into.update(other)
    return into
