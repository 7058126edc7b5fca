"""Go behaviours the validator must reproduce: base64 decoding with Go's error offsets, Go-ish JSON
decoding (float numbers, duplicate keys, Go error wording), `unicode.IsSpace`, `time.ParseDuration`,
`fmt` / `encoding/json` number and value rendering, and `textproto.CanonicalMIMEHeaderKey`.

Nothing here knows JWTs; the other auth modules use these helpers to stay byte-compatible with
krakend-jose / go-jose. Plain Python, no mitmproxy.
"""

from __future__ import annotations

import base64
import json
import math
import re
from decimal import Decimal
from typing import Any

from krakend_mitm.goduration import parse_duration

# ---------------------------------------------------------------------------------------------
# base64


class GoBase64Error(ValueError):
    """Go's `base64.CorruptInputError`: "illegal base64 data at input byte N"."""

    def __init__(self, offset: int):
        super().__init__(f"illegal base64 data at input byte {offset}")
        self.offset = offset


_STD = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
_URL = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _decode_map(alphabet: bytes) -> bytes:
    table = bytearray([0xFF] * 256)
    for i, c in enumerate(alphabet):
        table[c] = i
    return bytes(table)


_STD_MAP = _decode_map(_STD)
_URL_MAP = _decode_map(_URL)
_URL_CHARS_RE = re.compile(r"[A-Za-z0-9_-]*")


def go_b64decode(value: str | bytes, *, url: bool = True, padded: bool = False) -> bytes:
    """Decode like Go's `base64.{Raw,}{URL,Std}Encoding.DecodeString` (non-strict mode).

    Newlines are skipped, trailing bits are not checked, errors carry Go's byte offset."""
    src = value.encode("utf-8", "surrogateescape") if isinstance(value, str) else value
    if url and not padded and _URL_CHARS_RE.fullmatch(src.decode("latin-1")) and len(src) % 4 != 1:
        # fast path: the common, valid unpadded base64url case
        return base64.urlsafe_b64decode(src + b"=" * (-len(src) % 4))
    decmap = _URL_MAP if url else _STD_MAP
    out = bytearray()
    si = 0
    n = len(src)
    while True:
        dbuf = [0, 0, 0, 0]
        dlen = 4
        j = 0
        done = False
        while j < 4:
            if si == n:
                if j == 0:
                    return bytes(out)
                if j == 1 or padded:
                    raise GoBase64Error(si - j)
                dlen = j
                done = True
                break
            c = src[si]
            si += 1
            v = decmap[c]
            if v != 0xFF:
                dbuf[j] = v
                j += 1
                continue
            if c in (10, 13):
                continue
            if not padded or c != 0x3D:
                raise GoBase64Error(si - 1)
            # padding
            if j in (0, 1):
                raise GoBase64Error(si - 1)
            if j == 2:
                while si < n and src[si] in (10, 13):
                    si += 1
                if si == n:
                    raise GoBase64Error(n)
                if src[si] != 0x3D:
                    raise GoBase64Error(si - 1)
                si += 1
            while si < n and src[si] in (10, 13):
                si += 1
            if si < n:
                raise GoBase64Error(si)
            dlen = j
            done = True
            break
        val = dbuf[0] << 18 | dbuf[1] << 12 | dbuf[2] << 6 | dbuf[3]
        chunk = bytes(((val >> 16) & 0xFF, (val >> 8) & 0xFF, val & 0xFF))
        out += chunk[: dlen - 1]
        if done:
            return bytes(out)


def jose_b64decode(value: str) -> bytes:
    """go-jose v3 `base64URLDecode`: optional trailing `=` padding, then raw base64url."""
    return go_b64decode(value.rstrip("="), url=True, padded=False)


def b64url_nopad(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


# ---------------------------------------------------------------------------------------------
# whitespace

# Go's unicode.IsSpace: Latin-1 spaces plus the Unicode White_Space property.
GO_SPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)


def strip_go_whitespace(value: str) -> str:
    """go-jose `stripWhitespace`: drop every rune for which `unicode.IsSpace` is true."""
    if value.isascii() and " " not in value and "\t" not in value and "\n" not in value and "\r" not in value \
            and "\v" not in value and "\f" not in value:
        return value
    return "".join(ch for ch in value if ch not in GO_SPACE)


# ---------------------------------------------------------------------------------------------
# JSON decoding


class GoJSONError(ValueError):
    """A JSON problem worded like Go's encoding/json (go-jose's fork)."""


class _DupDict(dict):
    """An object that had a repeated member name; `dup` is the first repeated name."""

    dup: str = ""


def _raise_constant(name: str) -> Any:
    raise GoJSONError(f"invalid character '{name[0]}' looking for beginning of value")


def _parse_float(text: str) -> float:
    value = float(text)
    if math.isinf(value):
        raise GoJSONError(f"json: cannot unmarshal number {text} into Go value of type float64")
    return value


def _go_syntax_message(err: json.JSONDecodeError) -> str:
    doc, pos, msg = err.doc, err.pos, err.msg
    if pos >= len(doc) or msg.startswith("Unterminated string"):
        return "unexpected end of JSON input"
    ch = doc[pos]
    shown = ch if ch not in "\n\r\t'" else {"\n": "\\n", "\r": "\\r", "\t": "\\t", "'": "\\'"}[ch]
    if msg.startswith("Expecting value"):
        return f"invalid character '{shown}' looking for beginning of value"
    if msg.startswith("Expecting property name"):
        return f"invalid character '{shown}' looking for beginning of object key string"
    if msg.startswith("Expecting ':'"):
        return f"invalid character '{shown}' after object key"
    if msg.startswith("Expecting ','"):
        return f"invalid character '{shown}' after object key:value pair"
    if msg.startswith("Extra data"):
        return f"invalid character '{shown}' after top-level value"
    if msg.startswith("Invalid control character"):
        return f"invalid character '{shown}' in string literal"
    if msg.startswith("Invalid \\escape") or msg.startswith("Invalid \\u"):
        return f"invalid character '{shown}' in string escape code"
    return f"invalid character '{shown}' looking for beginning of value"


class _Decoder:
    """json.JSONDecoder configured for Go semantics; remembers the members of the outermost object."""

    def __init__(self) -> None:
        self.last_pairs: list[tuple[str, Any]] = []
        self._decoder = json.JSONDecoder(
            object_pairs_hook=self._hook,
            parse_int=float,
            parse_float=_parse_float,
            parse_constant=_raise_constant,
        )

    def _hook(self, pairs: list[tuple[str, Any]]) -> dict:
        self.last_pairs = pairs
        result = dict(pairs)
        if len(result) != len(pairs):
            seen: set[str] = set()
            dup = ""
            for key, _ in pairs:
                if key in seen:
                    dup = key
                    break
                seen.add(key)
            flagged = _DupDict(result)
            flagged.dup = dup
            return flagged
        return result


def _text(data: bytes | str) -> str:
    if isinstance(data, bytes):
        # Go replaces invalid UTF-8 with U+FFFD instead of failing
        return data.decode("utf-8", "replace")
    return data


def go_json_loads(data: bytes | str, *, allow_trailing: bool = False) -> tuple[Any, list[tuple[str, Any]] | None]:
    """Decode JSON like Go into interface{} (numbers are floats). Returns (value, members) where
    `members` lists the outermost object's (name, value) pairs in document order (None when the
    value is not an object). `allow_trailing` mimics `json.Decoder.Decode` (data after the first
    value is ignored) instead of `json.Unmarshal`."""
    text = _text(data)
    dec = _Decoder()
    try:
        if allow_trailing:
            start = len(text) - len(text.lstrip(" \t\r\n"))
            if start == len(text):
                raise GoJSONError("EOF")
            value, _end = dec._decoder.raw_decode(text, start)
        else:
            value = dec._decoder.decode(text)
    except GoJSONError:
        raise
    except json.JSONDecodeError as err:
        if not text.strip(" \t\r\n"):
            raise GoJSONError("unexpected end of JSON input") from None
        raise GoJSONError(_go_syntax_message(err)) from None
    except RecursionError:
        raise GoJSONError("exceeded max depth") from None
    except (ValueError, TypeError) as err:  # pragma: no cover - defensive
        raise GoJSONError(str(err)) from None
    if isinstance(value, dict):
        return value, dec.last_pairs
    return value, None


def nesting_exceeds(value: Any, limit: int) -> bool:
    """True when a decoded JSON value nests arrays/objects deeper than `limit` levels (a scalar is
    depth 0, `[]` and `{}` depth 1). Iterative, so any depth the decoder produced is safe to check."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def raw_nesting_exceeds(raw: bytes | str, value: Any, limit: int) -> bool:
    """`nesting_exceeds(value, limit)` for `value` decoded from the JSON text `raw`, skipping the
    walk when `raw` has too few brackets to nest that deep: every level is opened by a `{` or `[`,
    so a document with at most `limit` of them cannot exceed `limit`. Brackets inside strings only
    raise the count (then the walk decides), so the pre-check never hides a real violation."""
    if isinstance(raw, str):
        count = raw.count("{") + raw.count("[")
    else:
        count = raw.count(b"{") + raw.count(b"[")
    return count > limit and nesting_exceeds(value, limit)


def duplicate_key(obj: Any) -> str | None:
    """The first repeated member name of this object (not of nested ones), or None."""
    if isinstance(obj, _DupDict):
        return obj.dup
    return None


def go_kind(value: Any) -> str:
    """The JSON kind as Go's UnmarshalTypeError names it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


# ---------------------------------------------------------------------------------------------
# time.ParseDuration

# One implementation for the whole gateway (config durations and the validator's alike).
parse_go_duration = parse_duration


# ---------------------------------------------------------------------------------------------
# number and value rendering


def _shortest_digits(value: float) -> tuple[str, int]:
    """Shortest round-trip digits and decimal-point position (Go's `digs.d`, `digs.dp`)."""
    dec = Decimal(repr(abs(value)))
    sign, digits, exponent = dec.as_tuple()
    text = "".join(map(str, digits)).rstrip("0") or "0"
    # position of the decimal point relative to the start of `text`
    dp = len(digits) + int(exponent)
    if text == "0":
        dp = 1
    return text, dp


def _fmt_e(neg: bool, digits: str, dp: int, lower_exp_cleanup: bool = False) -> str:
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    exp = dp - 1 if digits != "0" else 0
    sign = "-" if exp < 0 else "+"
    exp_s = f"{abs(exp):02d}"
    return ("-" if neg else "") + f"{mant}e{sign}{exp_s}"


def _fmt_f(neg: bool, digits: str, dp: int) -> str:
    if dp <= 0:
        s = "0." + "0" * (-dp) + digits
    elif dp >= len(digits):
        s = digits + "0" * (dp - len(digits))
    else:
        s = digits[:dp] + "." + digits[dp:]
    return ("-" if neg else "") + s


def go_format_v(value: float) -> str:
    """`fmt.Sprintf("%v", float64)`: strconv 'g' with the shortest digits, where the shortest
    precision means "exponent form when the decimal exponent is < -4 or >= 6"
    (123456, 1e+06, 1.234567e+06, 1e-05, 0.0001)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    neg = value < 0
    digits, dp = _shortest_digits(value)
    exp = dp - 1
    if exp < -4 or exp >= 6:
        return _fmt_e(neg, digits, dp)
    return _fmt_f(neg, digits, dp)


def go_json_number(value: float) -> str:
    """encoding/json float64 encoding: 'f' shortest, 'e' below 1e-6 or from 1e21 (e-07 -> e-7)."""
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    neg = value < 0
    digits, dp = _shortest_digits(value)
    a = abs(value)
    if a < 1e-6 or a >= 1e21:
        s = _fmt_e(neg, digits, dp)
        mant, exp = s.split("e")
        if exp[0] == "-" and exp[1] == "0" and len(exp) == 3:
            exp = "-" + exp[2]
        return mant + "e" + exp
    return _fmt_f(neg, digits, dp)


_JSON_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}
_JSON_ESCAPE_RE = re.compile('["\\\\\x00-\x1f<>&\u2028\u2029]')


def _json_escape_char(m: re.Match) -> str:
    ch = m.group(0)
    esc = _JSON_ESCAPES.get(ch)
    return esc if esc is not None else f"\\u{ord(ch):04x}"


def fix_surrogates(text: str) -> str:
    """Replace lone surrogates (from JSON `\\ud800` escapes) with U+FFFD like Go does."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        return "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in text)


def go_json_string(text: str) -> str:
    return '"' + _JSON_ESCAPE_RE.sub(_json_escape_char, fix_surrogates(text)) + '"'


def go_json_dumps(value: Any) -> str:
    """`json.Marshal` of a decoded interface{}: compact, map keys sorted, HTML-escaped."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return go_json_number(float(value))
    if isinstance(value, str):
        return go_json_string(value)
    if isinstance(value, list):
        return "[" + ",".join(go_json_dumps(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: fix_surrogates(kv[0]).encode("utf-8"))
        return "{" + ",".join(go_json_string(k) + ":" + go_json_dumps(v) for k, v in items) + "}"
    return go_json_string(str(value))


def go_sprint_v(value: Any) -> str:
    """`fmt.Sprintf("%v", x)` for values decoded into interface{}."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, (int, float)):
        return go_format_v(float(value))
    if isinstance(value, str):
        return fix_surrogates(value)
    if isinstance(value, list):
        return "[" + " ".join(go_sprint_v(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: fix_surrogates(kv[0]).encode("utf-8"))
        return "map[" + " ".join(f"{fix_surrogates(k)}:{go_sprint_v(v)}" for k, v in items) + "]"
    return str(value)


def go_type_name(value: Any) -> str:
    """The dynamic type name in a Go interface-conversion panic."""
    if value is None:
        return "nil"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "float64"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "[]interface {}"
    return "map[string]interface {}"


# ---------------------------------------------------------------------------------------------
# HTTP header names

_TOKEN_CHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


def canonical_header_key(name: str) -> str:
    """Go's textproto.CanonicalMIMEHeaderKey (names with invalid characters are returned as is)."""
    if not name or any(c not in _TOKEN_CHARS for c in name):
        return name
    out = []
    upper = True
    for c in name:
        out.append(c.upper() if upper else c.lower())
        upper = c == "-"
    return "".join(out)
