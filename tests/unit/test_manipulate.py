"""manipulate: target/allow/deny/mapping/group (spec §7.1), flatmap (§7.4), static data (§7.5)."""

import copy

import pytest

from krakend_mitm.codec import decode, render
from krakend_mitm.gojson import GoNumber
from krakend_mitm.manipulate import (
    apply_backend,
    apply_flatmap,
    apply_static,
    extract_target,
    merge_shallow,
    validate_flatmap,
)

SAMPLE = {
    "a": {"b": {"c": 1, "d": 2}, "e": 3},
    "list": [{"x": 1, "y": 2}],
    "s": "text",
    "n": None,
}


def sample():
    return copy.deepcopy(SAMPLE)


def collection_of_ten():
    """The mock's /collection/2 answer, decoded with is_collection (specs collection, flatmap_1)."""
    items = ",".join(f'{{"i":{i},"path":"/collection/2"}}' for i in range(10))
    return decode("json", f"[{items}]\n".encode(), True)


# --------------------------------------------------------------------------------------------
# target
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("a", {"b": {"c": 1, "d": 2}, "e": 3}),
        ("a.b", {"c": 1, "d": 2}),
        ("a.e", {}),  # not an object
        ("list", {}),  # arrays are not objects either
        ("missing", {}),
        ("a.missing", {}),
        ("n", {}),
    ],
)
def test_target(target, expected):
    assert extract_target(sample(), target) == expected
    assert apply_backend(sample(), target=target) == expected


# --------------------------------------------------------------------------------------------
# allow / deny
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "expected"),
    [
        (["s"], {"s": "text"}),
        (["a.b.c"], {"a": {"b": {"c": 1}}}),
        (["a.b.c", "a.e", "s"], {"a": {"b": {"c": 1}, "e": 3}, "s": "text"}),
        (["a"], {"a": {"b": {"c": 1, "d": 2}, "e": 3}}),
        (["list.x"], {}),  # an allowed path below an array drops the whole key; nothing left -> {}
        (["list.x", "s"], {"s": "text"}),
        (["s.x"], {}),  # below a scalar: dropped too
        (["a.b.missing"], {}),  # an object emptied by the filter goes as well
        (["n"], {"n": None}),
        (["missing"], {}),
        (["a", "a.e"], {"a": {"e": 3}}),  # a later dotted path narrows an earlier leaf (buildDictPath)
        (["a.e", "a"], {"a": {"b": {"c": 1, "d": 2}, "e": 3}}),
    ],
)
def test_allow(allow, expected):
    assert apply_backend(sample(), allow=allow) == expected


@pytest.mark.parametrize(
    ("deny", "expected"),
    [
        (["s"], {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "list": [{"x": 1, "y": 2}], "n": None}),
        (["a.e", "s", "n", "list"], {"a": {"b": {"c": 1, "d": 2}}}),
        (["a.b.c"], {"a": {"e": 3}, "list": [{"x": 1, "y": 2}], "s": "text", "n": None}),  # only 2 levels: denies a.b
        (["list.x"], {"a": {"b": {"c": 1, "d": 2}, "e": 3}, "list": [{"x": 1, "y": 2}], "s": "text", "n": None}),  # objects only
        (["a.b", "a.e"], {"a": {}, "list": [{"x": 1, "y": 2}], "s": "text", "n": None}),  # emptied object stays
        (["a.e", "a"], {"list": [{"x": 1, "y": 2}], "s": "text", "n": None}),  # a plain key after a dotted one wins
        (["a", "a.e"], {"a": {"b": {"c": 1, "d": 2}}, "list": [{"x": 1, "y": 2}], "s": "text", "n": None}),
        (["missing", "missing.x"], SAMPLE),
    ],
)
def test_deny(deny, expected):
    assert apply_backend(sample(), deny=deny) == expected


def test_allow_wins_over_deny():
    assert apply_backend(sample(), allow=["s"], deny=["s"]) == {"s": "text"}


# --------------------------------------------------------------------------------------------
# mapping / group / order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("mapping", "expected_keys"),
    [
        ({"s": "renamed"}, {"a", "list", "renamed", "n"}),
        ({"s": "new.name"}, {"a", "list", "new", "n"}),  # cut at the first dot
        ({"missing": "x"}, {"a", "list", "s", "n"}),
        ({"a.b": "x"}, {"a", "list", "s", "n"}),  # top-level keys only
        ({"s": "s"}, {"a", "list", "n"}),  # lura sets then deletes: a self-rename removes the key
    ],
)
def test_mapping(mapping, expected_keys):
    assert set(apply_backend(sample(), mapping=mapping)) == expected_keys


def test_mapping_moves_the_value():
    assert apply_backend({"s": "text"}, mapping={"s": "t"}) == {"t": "text"}


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({"group": "g"}, {"g": SAMPLE}),
        ({"target": "a", "allow": ["b.c"], "mapping": {"b": "B"}, "group": "g"}, {"g": {"B": {"c": 1}}}),
        ({"target": "a", "deny": ["b"], "group": "g"}, {"g": {"e": 3}}),
        # mapping runs after the filter: the allow list names the original keys
        ({"allow": ["s"], "mapping": {"s": "t"}}, {"t": "text"}),
        ({"target": "missing", "group": "g"}, {"g": {}}),
        ({"allow": ["missing"], "mapping": {"s": "t"}, "group": "g"}, {"g": {}}),
    ],
)
def test_steps_run_in_lura_order(options, expected):
    assert apply_backend(sample(), **options) == expected


def test_collection_mapping_matches_the_combination_spec():
    # specs/collection.json: is_collection + mapping {"collection": "posts"}, merged with {"foo": 42}
    posts = apply_backend(collection_of_ten(), mapping={"collection": "posts"})
    merged = merge_shallow(posts, apply_backend({"foo": GoNumber("42"), "path": "/p"}, allow=["foo"]))
    items = ",".join(f'{{"i":{i},"path":"/collection/2"}}' for i in range(10))
    assert render("json", merged, None)[1] == f'{{"foo":42,"posts":[{items}]}}'.encode()


# --------------------------------------------------------------------------------------------
# flatmap
# --------------------------------------------------------------------------------------------

FLATMAP_1 = [
    {"type": "move", "args": ["collection", "paths"]},
    {"type": "del", "args": ["paths.*.i"]},
    {"type": "move", "args": ["paths.*.path", "paths.*.url"]},
]


def test_flatmap_matches_the_flatmap_1_spec():
    data = apply_backend(collection_of_ten(), flatmap=FLATMAP_1)
    items = ",".join(['{"url":"/collection/2"}'] * 10)
    assert render("json", data, None)[1] == f'{{"paths":[{items}]}}'.encode()


def test_flatmap_replaces_allow_deny_and_mapping_but_keeps_target_and_group():
    data = {"wrap": {"a": 1, "b": 2}}
    result = apply_backend(data, target="wrap", allow=["a"], deny=["a"], mapping={"a": "z"}, group="g",
                           flatmap=[{"type": "del", "args": ["b"]}])
    assert result == {"g": {"a": 1}}


@pytest.mark.parametrize("flatmap", [[], [{"args": ["a"]}], ["not an object"]])
def test_flatmap_without_usable_operations_falls_back_to_the_filters(flatmap):
    assert apply_backend({"a": 1, "b": 2}, allow=["a"], flatmap=flatmap) == {"a": 1}


@pytest.mark.parametrize(
    ("data", "ops", "expected"),
    [
        # move: same length relabels in place
        ({"a": 42}, [("move", "a", "b")], {"b": 42}),
        ({"a": 1, "b": {"a": 42}}, [("move", "b.a", "b.c")], {"a": 1, "b": {"c": 42}}),
        ({"b": [{"c": 42}, {"c": {"d": 42}}]}, [("move", "b.*.c", "b.*.x")], {"b": [{"x": 42}, {"x": {"d": 42}}]}),
        # move: a shorter destination promotes; the emptied parent becomes null
        ({"a": 1, "b": {"a": 42}}, [("move", "b.a", "c")], {"a": 1, "b": None, "c": 42}),
        ({"b": {"a": 1, "b": {"x": 2}}}, [("move", "b.b", "c")], {"b": {"a": 1}, "c": {"x": 2}}),
        # move: a longer destination embeds below the source's parent, creating objects
        ({"a": 1, "b": {"a": 42}}, [("move", "b.a", "b.b.a.c")], {"a": 1, "b": {"b": {"a": {"c": 42}}}}),
        ({"a": 7}, [("move", "a", "x.y")], {"x": {"y": 7}}),
        ({"a": 1}, [("move", "missing", "x")], {"a": 1}),
        # del
        ({"a": 1, "b": 2}, [("del", "a")], {"b": 2}),
        ({"a": {"b": 1, "c": 2}}, [("del", "a.b")], {"a": {"c": 2}}),
        ({"a": [{"b": 1, "c": 2}, {"b": 3}]}, [("del", "a.*.b")], {"a": [{"c": 2}, None]}),
        ({"a": [1, 2]}, [("del", "a.*")], {"a": None}),
        ({"a": {"x": {"k": 1}, "y": {"k": 2, "j": 3}}}, [("del", "a.*.k")], {"a": {"x": None, "y": {"j": 3}}}),
        ({"a": 1}, [("del", "missing.x")], {"a": 1}),
        # del takes several paths at once
        ({"a": 1, "b": 2, "c": 3}, [("del", "a", "c")], {"b": 2}),
        # append: source items go to the end of the destination, then the source is removed
        ({"a": [1, 2], "b": [3]}, [("append", "b", "a")], {"a": [1, 2, 3]}),
        ({"a": [1], "b": "x"}, [("append", "b", "a")], {"a": [1], "b": "x"}),  # not arrays: no-op
        # operations run in order; unknown types are ignored
        ({"a": [{"i": 1, "p": "x"}]}, [("move", "a", "b"), ("del", "b.*.i"), ("noop", "b")], {"b": [{"p": "x"}]}),
        # empty containers and nulls survive untouched
        ({"e": {}, "l": [], "n": None}, [("del", "missing")], {"e": {}, "l": [], "n": None}),
        ({}, [("del", "a")], {}),
    ],
)
def test_flatmap_operations(data, ops, expected):
    operations = [{"type": op[0], "args": list(op[1:])} for op in ops]
    assert apply_flatmap(data, operations) == expected


def test_flatmap_keeps_number_text():
    assert apply_flatmap({"a": {"n": GoNumber("1.0")}}, [{"type": "move", "args": ["a.n", "n"]}]) == {"a": None, "n": GoNumber("1.0")}


@pytest.mark.parametrize(
    "ops",
    [[{"type": "move", "args": ["a"]}], [{"type": "append", "args": []}], [{"type": "move", "args": [1, "b"]}]],
)
def test_flatmap_operations_lura_would_panic_on_raise(ops):
    with pytest.raises(ValueError):
        apply_flatmap({"a": 1}, ops)


@pytest.mark.parametrize(
    ("ops", "problems"),
    [
        (FLATMAP_1, []),
        ([], []),
        ({"type": "del"}, ["flatmap_filter must be a list of operations"]),
        (["x"], ["flatmap_filter[0]: must be an object with 'type' and 'args'"]),
        ([{"type": "copy", "args": ["a", "b"]}], ["flatmap_filter[0].type: must be one of move, del, append, got 'copy'"]),
        ([{"args": ["a"]}], ["flatmap_filter[0].type: must be one of move, del, append, got None"]),
        ([{"type": "move", "args": ["a"]}], ["flatmap_filter[0].args: move takes exactly 2 paths, got 1"]),
        ([{"type": "append", "args": ["a", "b", "c"]}], ["flatmap_filter[0].args: append takes exactly 2 paths, got 3"]),
        ([{"type": "del", "args": []}], ["flatmap_filter[0].args: del takes at least 1 path"]),
        ([{"type": "del"}], ["flatmap_filter[0].args: must be a list of non-empty dotted paths"]),
        ([{"type": "del", "args": ["a", 3]}], ["flatmap_filter[0].args: must be a list of non-empty dotted paths"]),
        ([{"type": "del", "args": ["a"]}, {"type": "move", "args": ["a", ""]}], ["flatmap_filter[1].args: must be a list of non-empty dotted paths"]),
    ],
)
def test_validate_flatmap(ops, problems):
    assert validate_flatmap(ops) == problems


# --------------------------------------------------------------------------------------------
# static data and merging
# --------------------------------------------------------------------------------------------

STATIC = {"foo": 42, "bar": "foobar"}


@pytest.mark.parametrize(
    ("strategy", "data", "errored", "complete", "applies"),
    [
        ("always", {"x": 1}, False, True, True),
        ("always", None, True, False, True),
        (None, {"x": 1}, False, True, True),  # missing strategy: always
        ("sometimes", None, True, False, True),  # unknown strategy keeps lura's initial matcher: always
        ("success", {"x": 1}, False, True, True),
        ("success", {"x": 1}, False, False, True),
        ("success", {"x": 1}, True, False, False),
        ("errored", None, True, False, True),
        ("errored", {"x": 1}, False, True, False),
        ("complete", {"x": 1}, False, True, True),
        ("complete", {"x": 1}, False, False, False),
        ("complete", {"x": 1}, True, True, False),
        ("complete", None, False, True, False),  # a nil response is never complete
        ("incomplete", {"x": 1}, False, False, True),
        ("incomplete", None, False, True, True),
        ("incomplete", {"x": 1}, False, True, False),
    ],
)
def test_static_strategies(strategy, data, errored, complete, applies):
    result, applied = apply_static(STATIC, strategy, data, errored=errored, complete=complete)
    assert applied is applies
    expected = dict(data or {}, **STATIC) if applies else data
    assert result == expected


def test_static_keys_win_and_the_merge_is_shallow():
    data = {"foo": "backend", "nested": {"a": 1}, "keep": True}
    static = {"foo": 42, "nested": {"b": 2}}
    result, applied = apply_static(static, "always", data, errored=False, complete=True)
    assert applied and result == {"foo": 42, "nested": {"b": 2}, "keep": True}
    assert data == {"foo": "backend", "nested": {"a": 1}, "keep": True}  # the input is not changed


def test_static_without_data_is_a_copy_of_the_static_data():
    result, _ = apply_static(STATIC, "errored", None, errored=True, complete=False)
    assert result == STATIC and result is not STATIC
    result["extra"] = 1
    assert "extra" not in STATIC


def test_static_matches_the_static_spec():
    # specs/static.json: the /__debug backend answers {"message":"pong"}, deny: [message]
    backend = apply_backend({"message": "pong"}, deny=["message"])
    result, _ = apply_static({"foo": 42, "bar": "foobar"}, "always", backend, errored=False, complete=True)
    assert render("json", result, None)[1] == b'{"bar":"foobar","foo":42}'


@pytest.mark.parametrize(
    ("into", "other", "expected"),
    [
        ({"a": 1}, {"b": 2}, {"a": 1, "b": 2}),
        ({"a": {"x": 1}}, {"a": {"y": 2}}, {"a": {"y": 2}}),  # top-level overwrite, no deep merge
        ({"a": 1}, None, {"a": 1}),
        ({}, {}, {}),
    ],
)
def test_merge_shallow(into, other, expected):
    assert merge_shallow(into, other) == expected
    assert merge_shallow(into, other) is into
