"""Stage 2: a compiled gin-style route table -> a match object (spec §4).

One segment trie per method, as gin keeps one radix tree per method: a static segment beats a
parameter, the lookup backtracks, and a miss is resolved in gin's order (`handleHTTPRequest`):
trailing-slash redirect, fixed-path redirect, 405 with `Allow`, 404. Lookup cost depends on the
path's depth, not on the number of endpoints; misses use a per-node lower-cased index.
gin's registration panics (duplicate routes, conflicting wildcards) are raised as ConfigError
when the table is compiled, so a config KrakenD would crash on never starts here.
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Any

from krakend_mitm.errors import ConfigError

# gin's Any(): the order in which it creates method trees, which is the order of `Allow`.
ANY_METHODS = ("GET", "POST", "PUT", "PATCH", "HEAD", "OPTIONS", "DELETE", "CONNECT", "TRACE")


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str  # gin form, e.g. /users/:id or /__debug/*param
    target: Any  # what the pipeline serves: an Endpoint, or a built-in marker
    json_path: str = ""


@dataclass(frozen=True)
class Match:
    route: Route
    params: dict[str, str]


@dataclass(frozen=True)
class Redirect:
    location_path: str  # the corrected path; the caller appends the original query
    status: int
    why: str  # "trailing slash" | "fixed path"


@dataclass(frozen=True)
class MethodNotAllowed:
    allow: tuple[str, ...]


@dataclass(frozen=True)
class NotFound:
    pass


@dataclass(slots=True)
class _Node:
    # Most nodes are leaves: the dicts are created with the first static child.
    static: dict[str, "_Node"] | None = None
    # lower-case segment -> its spellings in insertion order, only for the lower-case forms that
    # some child is spelled otherwise than (a child spelled in lower case alone is found in
    # `static`): see `_walk_case_insensitive`
    lowered: dict[str, list[str]] | None = None
    param_name: str | None = None
    param: "_Node | None" = None
    catch_all: Route | None = None
    route: Route | None = None


def _segments(path: str) -> list[str]:
    """/a/b/ -> ["a", "b", ""]; / -> [""]: a trailing slash is a segment of its own."""
    return path.split("/")[1:]


class RouteTable:
    def __init__(self, routes: list[Route], *, redirect_trailing_slash: bool = True,
                 redirect_fixed_path: bool = True, handle_method_not_allowed: bool = True):
        self._trees: dict[str, _Node] = {}
        self.redirect_trailing_slash = redirect_trailing_slash
        self.redirect_fixed_path = redirect_fixed_path
        self.handle_method_not_allowed = handle_method_not_allowed
        names: dict[str, str] = {}  # one string object per segment or parameter name, table-wide
        for route in routes:
            self._insert(route, names)

    # ------------------------------------------------------------------ compile

    def _insert(self, route: Route, names: dict[str, str] | None = None) -> None:
        names = {} if names is None else names
        node = self._trees.setdefault(route.method, _Node())
        segments = _segments(route.path)
        for depth, segment in enumerate(segments):
            if segment.startswith("*"):
                node = self._insert_catch_all(node, route, segment)
                return
            if segment.startswith(":"):
                node = self._insert_param(node, route, segments, depth, names)
            else:
                node = self._insert_static(node, names.setdefault(segment, segment))
        if node.route is not None:
            raise ConfigError(route.json_path, f"handlers are already registered for path '{route.path}'")
        node.route = route

    @staticmethod
    def _insert_static(node: _Node, segment: str) -> _Node:
        static = node.static
        if static is None:
            static = node.static = {}
        child = static.get(segment)
        if child is None:
            lowered = segment.lower()
            if segment != lowered or (node.lowered is not None and lowered in node.lowered):
                # a spelling the lower-case form alone cannot find: record every spelling of
                # this form, in order (a lower-case one inserted earlier comes first)
                if node.lowered is None:
                    node.lowered = {}
                spellings = node.lowered.get(lowered)
                if spellings is None:
                    spellings = node.lowered[lowered] = [lowered] if lowered in static else []
                spellings.append(segment)
            child = static[segment] = _Node()
        return child

    @staticmethod
    def _insert_param(node: _Node, route: Route, segments: list[str], depth: int,
                      names: dict[str, str] | None = None) -> _Node:
        name = segments[depth][1:]
        if node.param is None:
            node.param_name, node.param = (name if names is None else names.setdefault(name, name)), _Node()
        elif node.param_name != name:
            prefix = "/" + "/".join(segments[:depth] + [":" + node.param_name])
            raise ConfigError(route.json_path,
                              f"':{name}' in new path '{route.path}' conflicts with existing wildcard "
                              f"':{node.param_name}' in existing prefix '{prefix}'")
        return node.param

    @staticmethod
    def _insert_catch_all(node: _Node, route: Route, segment: str) -> _Node:
        if segment == "*":
            raise ConfigError(route.json_path, f"wildcards must be named with a non-empty name in path '{route.path}'")
        if node.catch_all is not None:
            raise ConfigError(route.json_path, f"handlers are already registered for path '{route.path}'")
        node.catch_all = route
        return node

    # ------------------------------------------------------------------ lookup

    def lookup(self, method: str, path: str) -> Match | Redirect | MethodNotAllowed | NotFound:
        """`path` is the percent-decoded request path."""
        tree = self._trees.get(method)
        if tree is not None:
            found = _find(tree, _segments(path), 0, [])
            if found is not None:
                return found
            if method != "CONNECT" and path != "/":
                redirect = self._redirect(tree, method, path)
                if redirect is not None:
                    return redirect
        if self.handle_method_not_allowed:
            allow = tuple(m for m, t in self._trees.items() if m != method and _find(t, _segments(path), 0, []))
            if allow:
                return MethodNotAllowed(allow)
        return NotFound()

    def _redirect(self, tree: _Node, method: str, path: str) -> Redirect | None:
        status = 301 if method == "GET" else 307
        if self.redirect_trailing_slash:
            toggled = path[:-1] if path.endswith("/") else path + "/"
            if toggled and _find(tree, _segments(toggled), 0, []) is not None:
                return Redirect(toggled, status, "trailing slash")
        if self.redirect_fixed_path:
            fixed = _find_case_insensitive(tree, _clean_path(path), self.redirect_trailing_slash)
            if fixed is not None:
                return Redirect(fixed, status, "fixed path")
        return None

    def methods_for(self, path: str) -> tuple[str, ...]:
        return tuple(m for m, t in self._trees.items() if _find(t, _segments(path), 0, []))


def _find(node: _Node, segments: list[str], depth: int, values: list[str]) -> Match | None:
    if depth == len(segments):
        if node.route is None:
            return None
        return Match(node.route, _bind(node.route.path, values))
    segment = segments[depth]
    static = node.static
    if static is not None:
        child = static.get(segment)
        if child is not None:
            found = _find(child, segments, depth + 1, values)
            if found is not None:
                return found
    if node.param is not None and segment:
        values.append(segment)
        found = _find(node.param, segments, depth + 1, values)
        if found is not None:
            return found
        values.pop()
    if node.catch_all is not None:
        rest = "/" + "/".join(segments[depth:])
        return Match(node.catch_all, _bind(node.catch_all.path, values + [rest]))
    return None


def _bind(route_path: str, values: list[str]) -> dict[str, str]:
    names = [s[1:] for s in _segments(route_path) if s[:1] in (":", "*")]
    return dict(zip(names, values))


def _clean_path(path: str) -> str:
    """gin's cleanPath: resolve `.`, `..` and `//`, keep a trailing slash."""
    cleaned = posixpath.normpath("/" + path)
    if cleaned.startswith("//"):
        cleaned = "/" + cleaned.lstrip("/")
    if path.endswith("/") and cleaned != "/":
        cleaned += "/"
    return cleaned


def _find_case_insensitive(tree: _Node, path: str, fix_trailing_slash: bool) -> str | None:
    candidates = [path]
    if fix_trailing_slash and path != "/":
        candidates.append(path[:-1] if path.endswith("/") else path + "/")
    for candidate in candidates:
        fixed = _walk_case_insensitive(tree, _segments(candidate), 0)
        if fixed is not None:
            return "/" + "/".join(fixed)
    return None


def _walk_case_insensitive(node: _Node, segments: list[str], depth: int) -> list[str] | None:
    if depth == len(segments):
        return [] if node.route is not None else None
    segment = segments[depth]
    lowered = segment.lower()
    # the static children whose segment lower-cases to this one's, in insertion order
    spellings = node.lowered.get(lowered) if node.lowered is not None else None
    if spellings is None:
        spellings = (lowered,) if node.static is not None and lowered in node.static else ()
    for spelling in spellings:
        rest = _walk_case_insensitive(node.static[spelling], segments, depth + 1)
        if rest is not None:
            return [spelling] + rest
    if node.param is not None and segment:
        rest = _walk_case_insensitive(node.param, segments, depth + 1)
        if rest is not None:
            return [segment] + rest
    if node.catch_all is not None:
        return segments[depth:]
    return None
