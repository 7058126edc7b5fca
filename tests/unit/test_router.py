"""router.py: gin's matching, redirects, 405/404 and registration crashes (spec §2.3, §4)."""

import pytest

from krakend_mitm.errors import ConfigError
from krakend_mitm.router import Match, MethodNotAllowed, NotFound, Redirect, Route, RouteTable

ROUTES = [
    ("GET", "/users/:id"),
    ("GET", "/users/new"),
    ("GET", "/users/:id/posts/:post"),
    ("POST", "/users/:id"),
    ("GET", "/static"),
    ("GET", "/static/merge"),
    ("GET", "/foo/"),
    ("GET", "/"),
    ("GET", "/__debug/*param"),
    ("PUT", "/__debug/*param"),
]


@pytest.fixture(scope="module")
def table():
    return RouteTable([Route(m, p, target=f"{m} {p}") for m, p in ROUTES])


@pytest.mark.parametrize("method,path,target,params", [
    ("GET", "/users/42", "GET /users/:id", {"id": "42"}),
    ("GET", "/users/new", "GET /users/new", {}),  # static beats param
    ("GET", "/users/newer", "GET /users/:id", {"id": "newer"}),
    ("GET", "/users/7/posts/9", "GET /users/:id/posts/:post", {"id": "7", "post": "9"}),
    ("POST", "/users/42", "POST /users/:id", {"id": "42"}),
    ("GET", "/", "GET /", {}),
    ("GET", "/foo/", "GET /foo/", {}),
    ("GET", "/__debug/", "GET /__debug/*param", {"param": "/"}),
    ("PUT", "/__debug/a/b", "PUT /__debug/*param", {"param": "/a/b"}),
    ("GET", "/users/a b", "GET /users/:id", {"id": "a b"}),
])
def test_matches(table, method, path, target, params):
    result = table.lookup(method, path)
    assert isinstance(result, Match)
    assert result.route.target == target and result.params == params


@pytest.mark.parametrize("method,path,location,status", [
    ("GET", "/static/", "/static", 301),  # trailing slash removed
    ("GET", "/foo", "/foo/", 301),  # trailing slash added
    ("GET", "/StAtic", "/static", 301),  # fixed path: case
    ("GET", "/a/../static", "/static", 301),  # fixed path: ..
    ("GET", "//static", "/static", 301),  # fixed path: //
    ("GET", "/USERS/Abc", "/users/Abc", 301),  # params keep their case
    ("POST", "/users/42/", "/users/42", 307),  # 307 for everything but GET
    ("GET", "/__debug", "/__debug/", 301),
])
def test_redirects(table, method, path, location, status):
    assert table.lookup(method, path) == Redirect(location, status, table.lookup(method, path).why)


@pytest.mark.parametrize("method,path,allow", [
    ("DELETE", "/users/42", ("GET", "POST")),
    ("HEAD", "/static", ("GET",)),  # no implicit HEAD
    ("POST", "/static", ("GET",)),
])
def test_method_not_allowed(table, method, path, allow):
    assert table.lookup(method, path) == MethodNotAllowed(allow)


@pytest.mark.parametrize("method,path", [("GET", "/unknown"), ("GET", "/users"), ("GET", "/users//"), ("PATCH", "/nope")])
def test_not_found(table, method, path):
    assert isinstance(table.lookup(method, path), NotFound)


def test_root_never_redirects():
    table = RouteTable([Route("GET", "/a", "a")])
    assert isinstance(table.lookup("GET", "/"), NotFound)


def test_empty_segment_never_matches_a_param():
    table = RouteTable([Route("GET", "/users/:id", "x")])
    assert isinstance(table.lookup("GET", "/users/"), NotFound)


@pytest.mark.parametrize("flag,method,path,expected", [
    ("redirect_trailing_slash", "GET", "/static/", NotFound),
    ("redirect_fixed_path", "GET", "/STATIC", NotFound),
    ("handle_method_not_allowed", "POST", "/static", NotFound),
])
def test_router_switches(flag, method, path, expected):
    table = RouteTable([Route("GET", "/static", "s")], **{flag: False})
    assert isinstance(table.lookup(method, path), expected)


@pytest.mark.parametrize("routes,message", [
    ([("GET", "/a"), ("GET", "/a")], "handlers are already registered for path '/a'"),
    ([("GET", "/a/:x"), ("GET", "/a/:y")],
     "':y' in new path '/a/:y' conflicts with existing wildcard ':x' in existing prefix '/a/:x'"),
    ([("GET", "/a/:x/b"), ("GET", "/a/:y/c")],
     "':y' in new path '/a/:y/c' conflicts with existing wildcard ':x' in existing prefix '/a/:x'"),
    ([("GET", "/foo/*")], "wildcards must be named with a non-empty name in path '/foo/*'"),
])
def test_registration_crashes_become_config_errors(routes, message):
    with pytest.raises(ConfigError) as raised:
        RouteTable([Route(m, p, "t", json_path=f"endpoints[{i}]") for i, (m, p) in enumerate(routes)])
    assert raised.value.message == message
    assert raised.value.path == f"endpoints[{len(routes) - 1}]"


def test_same_path_other_method_and_param_names_per_method_are_fine():
    table = RouteTable([Route("GET", "/a/:x", "g"), Route("POST", "/a/:y", "p")])
    assert table.lookup("POST", "/a/1").params == {"y": "1"}


def test_lookup_on_a_large_table_is_by_segment():
    routes = [Route("GET", f"/svc{i}/items/:id", i) for i in range(5000)]
    routes += [Route("GET", f"/svc{i}/static", -i) for i in range(5000)]
    table = RouteTable(routes)
    assert table.lookup("GET", "/svc4999/items/7").route.target == 4999
    assert table.lookup("GET", "/SVC12/STATIC") == Redirect("/svc12/static", 301, "fixed path")


@pytest.mark.parametrize("paths,request_path,location", [
    # of several spellings of a segment, the first registered that leads to a route wins
    (["/users/a", "/Users/b", "/USERS/c"], "/uSeRs/C", "/USERS/c"),
    (["/Users/a", "/users/a"], "/USERS/A", "/Users/a"),
    (["/users/a", "/Users/a"], "/USERS/A", "/users/a"),
    (["/Users/x", "/users/y"], "/USERS/Y", "/users/y"),  # a lower-case spelling registered after
    (["/users/x", "/Users/y", "/USERS/y"], "/users/Y", "/Users/y"),
    (["/straße/a"], "/STRASSE/A", None),  # str.lower: "STRASSE" is not "straße"
    (["/K/a"], "/k/A", "/K/a"),  # the Kelvin sign lower-cases to "k"
])
def test_fixed_path_redirect_tries_spellings_in_registration_order(paths, request_path, location):
    table = RouteTable([Route("GET", p, p) for p in paths])
    result = table.lookup("GET", request_path)
    if location is None:
        assert isinstance(result, NotFound)
    else:
        assert result == Redirect(location, 301, "fixed path")


def test_leaf_nodes_hold_no_child_tables():
    from krakend_mitm.router import _Node

    table = RouteTable([Route("GET", "/api/v1/items", "s"), Route("GET", "/api/v1/items/:id", "p"),
                        Route("GET", "/api/v1/Items/:id/tags", "t")])
    root = table._trees["GET"]
    assert not hasattr(root, "__dict__") and "__slots__" in vars(_Node)
    v1 = root.static["api"].static["v1"]
    assert v1.lowered == {"items": ["items", "Items"]}  # only the forms some child spells otherwise
    assert root.lowered is None and root.static["api"].lowered is None
    leaf = v1.static["items"].param
    assert leaf.route.target == "p" and leaf.static is None and leaf.lowered is None
    assert table.lookup("GET", "/API/V1/ITEMS/7/TAGS") == Redirect("/api/v1/Items/7/tags", 301, "fixed path")
