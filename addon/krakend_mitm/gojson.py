"""Go `encoding/json`-compatible JSON, as lura decodes backend bodies and gin renders responses.

* Decoding follows `json.Decoder` with `UseNumber()` (lura `encoding/json.go`): only the first
  value is read, trailing bytes are ignored, and numbers keep their literal text as `GoNumber`.
* Encoding follows `json.Marshal` (gin `c.JSON`): compact, map keys sorted by byte order, no
  trailing newline, HTML-safe escaping, Go's float formatting.

Both directions lean on the stdlib C scanner/encoder; the Go-specific parts are small hooks.
"""

from __future__ import annotations

import json
import math
import re
from decimal import Decimal
from json.encoder import encode_basestring
from typing import Any

try:  # the C accelerator is present on CPython; the pure-Python path is only a fallback
    from json.encoder import c_make_encoder
except ImportError:  # pragma: no cover
    c_make_encoder = None


class GoNumber(str):
    """A JSON number kept as its literal text, like Go's `json.Number` (lura decodes with
    `UseNumber`, so `1.0` is re-emitted as `1.0` and `1e3` as `1e3`)."""

    __slots__ = ()

    def __float__(self) -> float:
        return float(str(self))

    def __int__(self) -> int:
        # Decimal keeps huge or exponent-form integers exact ("1e3" -> 1000).
        return int(Decimal(str(self)))

    def __repr__(self) -> str:
        return f"GoNumber({str.__repr__(self)})"


class GoStruct(dict):
    """Data Go renders from a struct rather than a map: its fields keep their declared order even
    where map keys are sorted (health, error details, echo). Otherwise a plain dict."""

    __slots__ = ()


# --------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------

JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")  # Go's scanner skips exactly these four
SURROGATE = re.compile("[\ud800-\udfff]")
ESCAPED_SURROGATE = re.compile(r"\\u[dD][89a-fA-F]")
LITERALS = ("true", "false", "null")

# Messages of Go's scanner for the constants Python's scanner would otherwise accept.
CONSTANT_ERRORS = {
    "NaN": "invalid character 'N' looking for beginning of value",
    "Infinity": "invalid character 'I' looking for beginning of value",
    "-Infinity": "invalid character 'I' in numeric literal",
}


def _reject_constant(name: str) -> Any:
    raise ValueError(CONSTANT_ERRORS.get(name, f"invalid character {name[:1]!r}"))


DECODER = json.JSONDecoder(parse_int=GoNumber, parse_float=GoNumber, parse_constant=_reject_constant)


def loads(data: bytes | bytearray | memoryview | str) -> Any:
    """Decode the first JSON value of `data`, like Go's `json.Decoder.Decode` with `UseNumber`.

    Raises ValueError with Go's wording (`EOF`, `unexpected EOF`, `invalid character ...`)."""
    text = _to_text(data)
    start = JSON_WHITESPACE.match(text).end()
    if start == len(text):
        raise ValueError("EOF")  # Decode on an empty stream returns io.EOF
    try:
        value, end = DECODER.raw_decode(text, start)
    except json.JSONDecodeError as err:
        raise ValueError(_go_syntax_message(text, err)) from None
    except RecursionError:
        raise ValueError("exceeded max depth") from None
    if type(value) is GoNumber:
        _check_top_level_number_end(text, end, value)
    if ESCAPED_SURROGATE.search(text):
        value = _replace_surrogates(value)
    return value


def _to_text(data: bytes | bytearray | memoryview | str) -> str:
    if isinstance(data, str):
        return data
    raw = bytes(data)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Go turns every invalid byte into U+FFFD; surrogateescape yields one surrogate per byte.
        return SURROGATE.sub("\ufffd", raw.decode("utf-8", "surrogateescape"))


def _replace_surrogates(value: Any) -> Any:
    """Go's decoder replaces an unpaired `\\uD800` escape with U+FFFD; Python keeps the surrogate."""
    if isinstance(value, str):
        return value if type(value) is GoNumber else SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_replace_surrogates(k): _replace_surrogates(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace_surrogates(v) for v in value]
    return value


def _check_top_level_number_end(text: str, end: int, number: str) -> None:
    """Python stops a number where its grammar ends (`1.` reads as 1); Go's scanner keeps going
    into `.`/`e` and fails there. Only matters at top level: inside containers both fail."""
    if end >= len(text):
        return
    nxt = text[end]
    has_exponent = "e" in number or "E" in number
    if nxt in "eE" and not has_exponent:
        after = end + 1
        if after < len(text) and text[after] in "+-":
            after += 1
        _raise_at(text, after, "in exponent of numeric literal")
    if nxt == "." and "." not in number and not has_exponent:
        _raise_at(text, end + 1, "after decimal point in numeric literal")


def _raise_at(text: str, pos: int, context: str) -> None:
    if pos >= len(text):
        raise ValueError("unexpected EOF")
    raise ValueError(f"invalid character {_quote_char(text[pos])} {context}")


def _quote_char(char: str) -> str:
    """Go's `quoteChar`: the offending character in single quotes, escaped like strconv.Quote."""
    if char == "'":
        return "'\\''"
    if char == '"':
        return "'\"'"
    return f"'{go_quote(char)[1:-1]}'"


GO_SHORT_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """strconv.Quote: double-quoted, printable Unicode kept, the rest escaped Go-style.
    Surrogates from surrogateescape stand for invalid bytes and are written as `\\xNN`."""
    out = ['"']
    for char in text:
        code = ord(char)
        if char in '"\\':
            out.append("\\" + char)
        elif char.isprintable():
            out.append(char)
        elif char in GO_SHORT_ESCAPES:
            out.append(GO_SHORT_ESCAPES[char])
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        elif 0xDC80 <= code <= 0xDCFF:
            out.append(f"\\x{code - 0xDC00:02x}")
        elif 0xD800 <= code <= 0xDFFF:
            out.append("\\ufffd")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


def _go_syntax_message(text: str, err: json.JSONDecodeError) -> str:
    pos = err.pos
    if pos >= len(text) or err.msg.startswith("Unterminated string"):
        return "unexpected EOF"
    char = text[pos]
    msg = err.msg
    if msg == "Expecting value":
        return _value_start_message(text, pos)
    if msg.startswith("Expecting property name"):
        return f"invalid character {_quote_char(char)} looking for beginning of object key string"
    if msg == "Expecting ':' delimiter":
        return f"invalid character {_quote_char(char)} after object key"
    if msg == "Expecting ',' delimiter":
        return _after_value_message(text, pos)
    if msg.startswith("Invalid control character"):
        return f"invalid character {_quote_char(char)} in string literal"
    if msg.startswith("Invalid \\escape"):
        return _after_backslash_message(text, pos, "in string escape code")
    if msg.startswith("Invalid \\uXXXX"):
        return _after_backslash_message(text, pos, "in \\u hexadecimal character escape")
    return msg


def _value_start_message(text: str, pos: int) -> str:
    char = text[pos]
    if char == "-":
        if pos + 1 >= len(text):
            return "unexpected EOF"
        return f"invalid character {_quote_char(text[pos + 1])} in numeric literal"
    for literal in LITERALS:
        if char == literal[0]:
            return _literal_message(text, pos, literal)
    return f"invalid character {_quote_char(char)} looking for beginning of value"


def _literal_message(text: str, pos: int, literal: str) -> str:
    for offset, expected in enumerate(literal):
        at = pos + offset
        if at >= len(text):
            return "unexpected EOF"
        if text[at] != expected:
            return (
                f"invalid character {_quote_char(text[at])} in literal {literal} "
                f"(expecting {_quote_char(expected)})"
            )
    return f"invalid character {_quote_char(text[pos])} looking for beginning of value"


def _after_value_message(text: str, pos: int) -> str:
    char = text[pos]
    if char == "." and pos and text[pos - 1].isdigit():
        return _after_char_message(text, pos + 1, "after decimal point in numeric literal")
    if char in "eE" and pos and text[pos - 1].isdigit():
        after = pos + 1 + (pos + 1 < len(text) and text[pos + 1] in "+-")
        return _after_char_message(text, after, "in exponent of numeric literal")
    if _innermost_container(text, pos) == "{":
        return f"invalid character {_quote_char(char)} after object key:value pair"
    return f"invalid character {_quote_char(char)} after array element"


def _after_char_message(text: str, pos: int, context: str) -> str:
    if pos >= len(text):
        return "unexpected EOF"
    return f"invalid character {_quote_char(text[pos])} {context}"


def _after_backslash_message(text: str, pos: int, context: str) -> str:
    # Python points at the backslash; Go names the first character it could not accept.
    at = pos + 1
    if context.startswith("in \\u"):
        at = pos + 2
        while at < len(text) and at < pos + 6 and text[at] in "0123456789abcdefABCDEF":
            at += 1
    return _after_char_message(text, at, context)


def _innermost_container(text: str, pos: int) -> str:
    """The bracket that encloses `pos` (error path only, so a linear scan is fine)."""
    stack: list[str] = []
    in_string = escaped = False
    for char in text[:pos]:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            stack.append(char)
        elif char in "]}" and stack:
            stack.pop()
    return stack[-1] if stack else ""


# --------------------------------------------------------------------------------------------
# Float formatting (strconv.FormatFloat with the shortest round-tripping digits)
# --------------------------------------------------------------------------------------------


def _shortest_digits(value: float) -> tuple[str, int]:
    """Digits `d1d2...` and decimal point `dp` with abs(value) == 0.d1d2... * 10**dp.
    repr() yields the same shortest round-trip digits as Go's strconv."""
    mantissa, _, exponent = repr(abs(value)).partition("e")
    whole, _, fraction = mantissa.partition(".")
    digits = whole + fraction
    point = len(whole) + (int(exponent) if exponent else 0)
    stripped = digits.lstrip("0")
    point -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    return (digits, point) if digits else ("", 0)


def _format_fixed(digits: str, point: int) -> str:
    """strconv 'f' with precision -1."""
    if point <= 0:
        whole, fraction = "0", "0" * -point + digits
    else:
        whole, fraction = (digits[:point] + "0" * (point - len(digits))), digits[point:]
    return f"{whole}.{fraction}" if fraction else whole


def _format_exponent(digits: str, point: int) -> str:
    """strconv 'e' with precision -1: d.ddde±XX, at least two exponent digits."""
    digits = digits or "0"
    exponent = point - 1 if digits != "0" else 0
    head = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exponent < 0 else "+"
    return f"{head}e{sign}{abs(exponent):02d}"


def format_float_json(value: float) -> str:
    """Go `encoding/json` float64 text: 'f' form unless abs < 1e-6 or >= 1e21, then 'e' form with
    the `e-07` -> `e-7` clean-up Go applies. Raises ValueError for NaN/Inf like json.Marshal."""
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {format_float_g(value)}")
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    digits, point = _shortest_digits(value)
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        text = _format_exponent(digits, point)
        if len(text) >= 4 and text[-4] == "e" and text[-3] == "-" and text[-2] == "0":
            text = text[:-2] + text[-1]
        return sign + text
    return sign + _format_fixed(digits, point)


def format_float_g(value: float) -> str:
    """strconv.FormatFloat(v, 'g', -1, 64), which is also what fmt's %v prints (mxj XML values)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    sign = "-" if math.copysign(1.0, value) < 0 else ""
    digits, point = _shortest_digits(value)
    exponent = point - 1 if digits else -1
    # With the shortest precision Go decides with eprec = 6.
    if exponent < -4 or exponent >= 6:
        return sign + _format_exponent(digits, point)
    return sign + _format_fixed(digits, point)


# --------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------

GO_ESCAPE_FIXES = re.compile(r"\\([\\bf])")
GO_CONTROL_ESCAPES = {"b": "\\u0008", "f": "\\u000c", "\\": "\\\\"}


def _encode_go_string(text: str) -> str:
    """String hook for the C encoder: GoNumber text goes out verbatim, like json.Number."""
    if type(text) is GoNumber:
        return text
    return encode_basestring(text)


def _unsupported(value: Any) -> Any:
    raise TypeError(f"json: unsupported type: {type(value).__name__}")


def _make_encoder(sort_keys: bool):
    if c_make_encoder is not None:
        return c_make_encoder(None, _unsupported, _encode_go_string, None, ":", ",", sort_keys, False, True)
    return json.encoder._make_iterencode(  # pragma: no cover - non-CPython fallback
        None, _unsupported, _encode_go_string, None, format_float_json, ":", ",", sort_keys, False, True
    )


SORTED_ENCODER = _make_encoder(True)
ORDERED_ENCODER = _make_encoder(False)


def dumps(obj: Any, sort_keys: bool = True) -> bytes:
    """Encode like Go's `json.Marshal`. Map keys are sorted; `GoStruct` values keep their order;
    `sort_keys=False` keeps declared order everywhere (a document that is a Go struct)."""
    if _needs_preparation(obj):
        obj = _prepare(obj, sort_keys)  # floats to Go text, dicts pre-ordered
        encoder = ORDERED_ENCODER
    else:
        encoder = SORTED_ENCODER if sort_keys else ORDERED_ENCODER
    text = "".join(encoder(obj, 0))
    # These characters only occur inside strings, so a plain replace is exact (Go's HTMLEscape).
    text = (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )
    if "\\b" in text or "\\f" in text:
        # Go has no short escapes for \b and \f; pairs are matched left to right so an escaped
        # backslash followed by a letter is left alone.
        text = GO_ESCAPE_FIXES.sub(lambda m: GO_CONTROL_ESCAPES[m.group(1)], text)
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates stand for invalid UTF-8 bytes; Go writes each one as `\ufffd`.
        return SURROGATE.sub("\\\\ufffd", text).encode("utf-8")


PLAIN_SCALARS = frozenset({str, GoNumber, int, bool, type(None)})


def _needs_preparation(obj: Any) -> bool:
    """Whether `obj` holds a float (the C encoder would use Python's repr) or a GoStruct (the C
    encoder would sort it). A cheap scan: most data has neither."""
    kind = type(obj)
    if kind is float or kind is GoStruct:
        return True
    if kind is dict:
        values = obj.values()
    elif kind is list or kind is tuple:
        values = obj
    elif isinstance(obj, (float, dict, list, tuple)):
        return True  # subclasses: let _prepare normalise them
    else:
        return False
    for value in values:
        inner = type(value)
        if inner in PLAIN_SCALARS:
            continue
        if inner is float or inner is GoStruct or _needs_preparation(value):
            return True
    return False


def _prepare(obj: Any, sort_keys: bool) -> Any:
    """Copy for the order-keeping encoder: floats as Go text, maps sorted (when asked), structs
    in declared order."""
    if isinstance(obj, float):
        return GoNumber(format_float_json(obj))
    if isinstance(obj, dict):
        items = obj.items()
        if sort_keys and not isinstance(obj, GoStruct):
            items = sorted(items, key=_first)
        return {key: _prepare(value, sort_keys) for key, value in items}
    if isinstance(obj, (list, tuple)):
        return [_prepare(value, sort_keys) for value in obj]
    return obj


def _first(pair: tuple) -> Any:
    return pair[0]
