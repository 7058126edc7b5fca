"""gojson: Go encoding/json compatible decoding (UseNumber) and encoding (json.Marshal), spec §6.1, §6.5."""

import time

import pytest

from krakend_mitm.gojson import GoNumber, GoStruct, dumps, format_float_g, format_float_json, go_quote, loads

# --------------------------------------------------------------------------------------------
# loads
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (b'{"a":1}', {"a": GoNumber("1")}),
        (b'  {"a":1}  ', {"a": GoNumber("1")}),
        # only the first value is read; Decode leaves the rest in the stream
        (b'{"a":1}\n{"b":2}', {"a": GoNumber("1")}),
        (b'{"a":1}garbage', {"a": GoNumber("1")}),
        (b"[1,2]xyz", [GoNumber("1"), GoNumber("2")]),
        (b"truex", True),
        (b"01", GoNumber("0")),  # Go ends the number after a leading 0
        (b"null", None),
        (b'"text"', "text"),
        # last duplicate key wins, as in Go's map assignment
        (b'{"a":1,"a":2}', {"a": GoNumber("2")}),
        # non-ASCII and escapes
        ('{"é":"ü\\u00e9"}'.encode(), {"é": "üé"}),
        (b'"\\ud83d\\ude00"', "\U0001f600"),
        # an unpaired surrogate escape and invalid UTF-8 bytes become U+FFFD, byte by byte
        (b'"\\ud800x"', "\ufffdx"),
        (b'"\xff\xfeab"', "\ufffd\ufffdab"),
        (b'"\xe2\x82A"', "\ufffd\ufffdA"),
        ('{"a":1}', {"a": GoNumber("1")}),  # str input works too
    ],
)
def test_loads_values(raw, expected):
    assert loads(raw) == expected


@pytest.mark.parametrize(
    "literal",
    ["1.0", "1e3", "1E+3", "-0", "0.000001", "123456789012345678901234567890", "-1.5e-10", "1e400"],
)
def test_loads_keeps_number_text(literal):
    value = loads(('{"n":' + literal + "}").encode())["n"]
    assert type(value) is GoNumber
    assert str(value) == literal


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"", "EOF"),
        (b" \n\t ", "EOF"),
        (b'{"a":', "unexpected EOF"),
        (b'{"a":"x', "unexpected EOF"),
        (b"tru", "unexpected EOF"),
        (b"trux", "invalid character 'x' in literal true (expecting 'e')"),
        (b"x", "invalid character 'x' looking for beginning of value"),
        (b"NaN", "invalid character 'N' looking for beginning of value"),
        (b"[Infinity]", "invalid character 'I' looking for beginning of value"),
        (b"-Infinity", "invalid character 'I' in numeric literal"),
        (b"-", "unexpected EOF"),
        (b"1.", "unexpected EOF"),
        (b"1.x", "invalid character 'x' after decimal point in numeric literal"),
        (b"1ex", "invalid character 'x' in exponent of numeric literal"),
        (b"[1.]", "invalid character ']' after decimal point in numeric literal"),
        (b"[1,]", "invalid character ']' looking for beginning of value"),
        (b"[1 2]", "invalid character '2' after array element"),
        (b'{"a":1 "b":2}', "invalid character '\"' after object key:value pair"),
        (b'{"a" 1}', "invalid character '1' after object key"),
        (b"{,}", "invalid character ',' looking for beginning of object key string"),
        (b'"a\nb"', "invalid character '\\n' in string literal"),
        (b'"\\q"', "invalid character 'q' in string escape code"),
        (b'"\\u12g4"', "invalid character 'g' in \\u hexadecimal character escape"),
        (b"'a'", "invalid character '\\'' looking for beginning of value"),
    ],
)
def test_loads_errors_use_go_wording(raw, message):
    with pytest.raises(ValueError) as err:
        loads(raw)
    assert str(err.value) == message


def test_loads_rejects_a_bom_like_go():
    with pytest.raises(ValueError, match="looking for beginning of value"):
        loads(b"\xef\xbb\xbf{}")


@pytest.mark.parametrize(
    ("number", "as_float", "as_int"),
    [("1.0", 1.0, 1), ("1e3", 1000.0, 1000), ("-7", -7.0, -7), ("12345678901234567890", 1.2345678901234567e19, 12345678901234567890)],
)
def test_gonumber_converts_but_keeps_its_text(number, as_float, as_int):
    value = GoNumber(number)
    assert (float(value), int(value), str(value)) == (as_float, as_int, number)
    assert repr(value) == f"GoNumber({number!r})"


# --------------------------------------------------------------------------------------------
# dumps
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, b"{}"),
        ([], b"[]"),
        (None, b"null"),
        ({"b": 1, "a": 2, "B": 3}, b'{"B":3,"a":2,"b":1}'),  # byte order: upper case first
        ({"é": 1, "z": 2}, '{"z":2,"é":1}'.encode()),  # UTF-8 byte order: é (0xC3) after z
        ({"a": [True, False, None]}, b'{"a":[true,false,null]}'),
        ({"n": GoNumber("1.0"), "m": GoNumber("1e3")}, b'{"m":1e3,"n":1.0}'),  # literal text kept
        ({"i": 42, "big": 12345678901234567890}, b'{"big":12345678901234567890,"i":42}'),
        ((1, 2), b"[1,2]"),
        ("é ü 日本", '"é ü 日本"'.encode()),  # non-ASCII stays UTF-8
        ("<a href='x'>&</a>", b"\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\""),
        ({"<k>": "v"}, b'{"\\u003ck\\u003e":"v"}'),  # keys are escaped too
        ("\u2028\u2029", b'"\\u2028\\u2029"'),
        ("\n\r\t", b'"\\n\\r\\t"'),
        ("\b\f", b'"\\u0008\\u000c"'),  # Go has no \b / \f short escapes
        ("\\b \\f", b'"\\\\b \\\\f"'),  # a backslash followed by b is not a control escape
        ("\x01\x1f\x7f", b'"\\u0001\\u001f\x7f"'),
        ('"quoted"', b'"\\"quoted\\""'),
        # surrogateescape characters stand for invalid UTF-8 bytes: Go writes \ufffd
        (b"a\xffb".decode("utf-8", "surrogateescape"), b'"a\\ufffdb"'),
    ],
)
def test_dumps_matches_json_marshal(value, expected):
    assert dumps(value) == expected


def test_dumps_has_no_trailing_newline_and_no_spaces():
    assert dumps({"a": [1, {"b": 2}]}) == b'{"a":[1,{"b":2}]}'


def test_dumps_keeps_declared_order_when_asked():
    details = {"http_status_code": 404, "http_body": "404 page not found\n", "http_body_encoding": "text/plain; charset=utf-8"}
    assert dumps(details, sort_keys=False) == (
        b'{"http_status_code":404,"http_body":"404 page not found\\n","http_body_encoding":"text/plain; charset=utf-8"}'
    )


def test_go_structs_keep_field_order_inside_sorted_maps():
    # specs/detail_error.json: return_error_details data (a Go struct) merged with a backend's map
    data = {
        "path": "/param_forwarding/",
        "foo": GoNumber("42"),
        "error_backend_b": GoStruct(
            {"http_status_code": 404, "http_body": "404 page not found\n", "http_body_encoding": "text/plain; charset=utf-8"}
        ),
        "query": {},
    }
    assert dumps(data) == (
        b'{"error_backend_b":{"http_status_code":404,"http_body":"404 page not found\\n",'
        b'"http_body_encoding":"text/plain; charset=utf-8"},"foo":42,"path":"/param_forwarding/","query":{}}'
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        # maps inside a struct are still sorted (the echo's req_headers)
        (GoStruct({"z": 1, "headers": {"b": [1], "a": [2]}}), b'{"z":1,"headers":{"a":[2],"b":[1]}}'),
        (GoStruct({"b": 2.0, "a": GoStruct({"y": 1.5, "x": None})}), b'{"b":2,"a":{"y":1.5,"x":null}}'),
        ([GoStruct({"b": 1, "a": 2})], b'[{"b":1,"a":2}]'),
        (GoStruct({}), b"{}"),
    ],
)
def test_dumps_go_structs(value, expected):
    assert dumps(value) == expected


def test_dumps_does_not_change_its_input():
    data = {"f": 1.0, "nested": [2.5]}
    dumps(data)
    assert data == {"f": 1.0, "nested": [2.5]} and type(data["f"]) is float


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (42.0, b"42"),
        (1.5, b"1.5"),
        (-0.0, b"-0"),
        (0.1, b"0.1"),
        (1e20, b"100000000000000000000"),
        (1e21, b"1e+21"),
        (1.5e300, b"1.5e+300"),
        (1e-6, b"0.000001"),
        (1e-7, b"1e-7"),  # Go cleans e-07 up to e-7
        (1.5e-10, b"1.5e-10"),
        (123456789.0, b"123456789"),
        (5e-324, b"5e-324"),
    ],
)
def test_dumps_floats_like_go_float64(value, expected):
    assert dumps(value) == expected
    assert dumps({"v": [value]}) == b'{"v":[' + expected + b"]}"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"a": float("-inf")}])
def test_dumps_refuses_non_finite_floats(value):
    with pytest.raises(ValueError, match="unsupported value"):
        dumps(value)


def test_dumps_refuses_unknown_types():
    with pytest.raises(TypeError, match="unsupported type"):
        dumps({"a": object()})


@pytest.mark.parametrize(
    ("value", "expected"),
    [(42.0, "42"), (1e6, "1e+06"), (123456.0, "123456"), (1234567.0, "1.234567e+06"), (0.0001, "0.0001"),
     (0.00001, "1e-05"), (-2.5, "-2.5"), (float("inf"), "+Inf"), (float("nan"), "NaN")],
)
def test_format_float_g_matches_fmt_v(value, expected):
    assert format_float_g(value) == expected


def test_format_float_json_matches_dumps():
    assert format_float_json(1e21) == "1e+21" and format_float_json(2.0) == "2"


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a", '"a"'), ('q"\\', '"q\\"\\\\"'), ("\n\t\x00\x7f", '"\\n\\t\\x00\\x7f"'), ("é", '"é"'), ("\u00a0", '"\\u00a0"'),
     (b"\xff".decode("utf-8", "surrogateescape"), '"\\xff"')],
)
def test_go_quote_matches_strconv_quote(text, expected):
    assert go_quote(text) == expected


def test_round_trip_keeps_backend_bytes():
    body = b'{"foo":42,"headers":{"User-Agent":["KrakenD Version 2.13.8"]},"path":"/p","query":{},"x":1.50}'
    assert dumps(loads(body)) == body


def test_dumps_of_a_1kb_object_is_fast():
    item = {"id": GoNumber("1"), "name": "Elliot Alderson", "email": "elliot@example.com", "active": True, "tags": ["a", "b"]}
    data = {"items": [dict(item, id=GoNumber(str(i))) for i in range(10)], "total": 10}
    assert 800 < len(dumps(data)) < 1400
    rounds = 200
    start = time.perf_counter()
    for _ in range(rounds):
        dumps(data)
    per_call = (time.perf_counter() - start) / rounds
    assert per_call < 200e-6  # measured ~30-40 µs; generous bound so loaded CI machines pass
