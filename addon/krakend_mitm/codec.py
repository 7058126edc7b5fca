"""Backend decoders (`encoding`) and response renderers (`output_encoding`).

Decoders follow lura `encoding/` plus krakend-xml (github.com/clbanning/mxj/v2); renderers follow
lura `router/gin/render.go`, krakend-xml `gin/render.go` (mxj) and gin's YAML render
(github.com/goccy/go-yaml). Data is plain Python: dict/list/str/bool/None, `GoNumber` for backend
numbers and int/float for numbers that Go would hold as int/float64.

Strings may carry surrogateescape characters (U+DC80..U+DCFF) standing for invalid UTF-8 bytes of
a `string`-encoded body: raw renderers write the original bytes back, JSON writes `\\ufffd`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from xml.parsers import expat

from krakend_mitm import gojson
from krakend_mitm.gojson import GoNumber, GoStruct

JSON_CONTENT_TYPE = "application/json; charset=utf-8"
TEXT_CONTENT_TYPE = "text/plain; charset=utf-8"
XML_CONTENT_TYPE = "application/xml"  # krakend-xml sets gin.MIMEXML, without charset
GIN_XML_CONTENT_TYPE = "application/xml; charset=utf-8"  # gin c.XML(nil) for a nil response
YAML_CONTENT_TYPE = "application/yaml; charset=utf-8"


class DecodeError(Exception):
    """A backend body the configured decoder refuses (lura: the backend call fails)."""


# ============================================================================================
# Decoders
# ============================================================================================


def decode(encoding: str, body: bytes, is_collection: bool) -> dict:
    """Decode a backend body into response data (lura `encoding.Get(name)(isCollection)`).

    Names are looked up lower-cased; unknown ones (`fast-json`, `yaml`, ...) use JSON."""
    decoder = DECODERS.get((encoding or "json").lower(), _decode_json)
    return decoder(body, is_collection)


def _load_json(body: bytes) -> Any:
    try:
        return gojson.loads(body)
    except ValueError as err:
        raise DecodeError(str(err)) from None


def _go_kind(value: Any) -> str:
    """The word Go's UnmarshalTypeError uses for a JSON value."""
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list):
        return "array"
    if isinstance(value, bool):
        return "bool"
    if type(value) is GoNumber or isinstance(value, (int, float)):
        return "number"
    return "string"


def _type_error(value: Any, go_type: str) -> DecodeError:
    return DecodeError(f"json: cannot unmarshal {_go_kind(value)} into Go value of type {go_type}")


def _decode_json(body: bytes, is_collection: bool) -> dict:
    """lura JSONDecoder / JSONCollectionDecoder: `Decode` into a map (or a []interface{})."""
    value = _load_json(body)
    if is_collection:
        # null leaves the slice nil, which still ends up under "collection".
        if value is None or isinstance(value, list):
            return {"collection": value}
        raise _type_error(value, "[]interface {}")
    if isinstance(value, dict):
        return value
    if value is None:
        return {}  # json null into a map leaves it nil: no error, no data
    raise _type_error(value, "map[string]interface {}")


def _decode_safejson(body: bytes, is_collection: bool) -> dict:
    """lura SafeJSONDecoder: objects as is, arrays under "collection", anything else under
    "result" (that is the key in lura's code; is_collection is ignored)."""
    value = _load_json(body)
    if isinstance(value, dict):
        return value
    if isinstance(value, list):
        return {"collection": value}
    return {"result": value}


def _decode_string(body: bytes, is_collection: bool) -> dict:
    """lura StringDecoder: the raw body as a Go string (bytes kept; invalid ones escaped)."""
    return {"content": bytes(body).decode("utf-8", "surrogateescape")}


def _decode_noop(body: bytes, is_collection: bool) -> dict:
    return {}  # lura's NoOpDecoder leaves the data empty; the caller streams the body instead


def _decode_rss(body: bytes, is_collection: bool) -> dict:
    raise DecodeError("rss encoding is not supported")


# --------------------------------------------------------------------------------------------
# XML decoder (krakend-xml: mxj.NewMapXmlReader without casting)
# --------------------------------------------------------------------------------------------

MXJ_TRIM = "\t\r\b\n "  # mxj trims these from every character-data token
UTF8_BOM = b"\xef\xbb\xbf"
UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")
# Go hands out one CharData token per run of text; these expat events end a run.
TEXT_BOUNDARY_HANDLERS = (
    "CommentHandler",
    "ProcessingInstructionHandler",
    "StartCdataSectionHandler",
    "EndCdataSectionHandler",
)


class _RootClosed(Exception):
    """Raised from the end handler of the root: mxj reads one element and ignores the rest."""


class _MxjBuilder:
    """Turns expat events into mxj's map: attributes as `-name`, repeated children as lists,
    text next to attributes or children under `#text`, empty elements as ""."""

    def __init__(self) -> None:
        self.frames: list[list] = []  # [key, children-and-attributes, text seen before any]
        self.text: list[str] = []
        self.result: dict | None = None
        self.started = False

    def start(self, name: str, attributes: list[str]) -> None:
        self.flush_text()
        self.started = True
        pairs = zip(attributes[::2], attributes[1::2])
        members = {"-" + _go_local_name(attribute): value for attribute, value in pairs}
        self.frames.append([_go_local_name(name), members, None])

    def end(self, name: str) -> None:
        self.flush_text()
        key, members, early_text = self.frames.pop()
        value = _mxj_element_value(members, early_text)
        if not self.frames:
            self.result = {key: value}
            raise _RootClosed
        _mxj_add_child(self.frames[-1][1], key, value)

    def characters(self, data: str) -> None:
        self.text.append(data)

    def flush_text(self, *_: Any) -> None:
        """Go hands out one CharData token per run of text; comments, PIs and CDATA bounds split
        runs. mxj keeps the last non-blank token."""
        if not self.text:
            return
        text = "".join(self.text).strip(MXJ_TRIM)
        self.text.clear()
        if not text or not self.frames:
            return
        frame = self.frames[-1]
        if frame[1]:
            frame[1]["#text"] = text
        else:
            frame[2] = text


def _mxj_element_value(members: dict, early_text: str | None) -> Any:
    if early_text is None:
        return members if members else ""
    if members:
        members["#text"] = early_text  # mxj v2: text seen before children is kept as #text
        return members
    return early_text


def _mxj_add_child(members: dict, key: str, value: Any) -> None:
    if key not in members:
        members[key] = value
    elif isinstance(members[key], list):
        members[key].append(value)
    else:
        members[key] = [members[key], value]


def _go_local_name(qualified: str) -> str:
    """encoding/xml splits `prefix:local` at the colon; mxj keeps only Name.Local."""
    prefix, colon, local = qualified.partition(":")
    if not colon or not prefix or not local or ":" in local:
        return qualified
    return local


def _reject_dtd(*_: Any) -> None:
    # defusedxml-style: no DTDs, so no entity expansion attacks (Go never expands them either).
    raise DecodeError("xml: DTDs and entity declarations are not allowed")


def _skip_leading_text(body: bytes) -> bytes:
    """encoding/xml returns text before the root as CharData, which mxj skips; expat would
    reject it, so drop it (UTF-16 bodies are left to expat)."""
    if body.startswith(UTF16_BOMS):
        return body
    if body.startswith(UTF8_BOM):
        body = body[len(UTF8_BOM) :]
    start = body.find(b"<")
    return body[start:] if start > 0 else body


def _decode_xml(body: bytes, is_collection: bool) -> dict:
    document = _parse_mxj(_skip_leading_text(bytes(body)))
    return {"collection": document} if is_collection else document


def _parse_mxj(body: bytes) -> dict:
    builder = _MxjBuilder()
    parser = expat.ParserCreate()
    parser.ordered_attributes = True
    parser.buffer_text = True
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.characters
    for boundary in TEXT_BOUNDARY_HANDLERS:
        setattr(parser, boundary, builder.flush_text)
    parser.StartDoctypeDeclHandler = _reject_dtd
    parser.EntityDeclHandler = _reject_dtd
    try:
        parser.Parse(body, True)
    except _RootClosed:
        pass
    except expat.ExpatError as err:
        if not builder.started:
            raise DecodeError("EOF") from None  # no element at all: mxj returns io.EOF
        detail = f"XML syntax error on line {err.lineno}: {_xml_error_text(err)}"
        raise DecodeError(f"xml.Decoder.Token() - {detail}") from None
    if builder.result is None:
        raise DecodeError("EOF")
    return builder.result


def _xml_error_text(err: expat.ExpatError) -> str:
    if err.code == expat.errors.codes[expat.errors.XML_ERROR_NO_ELEMENTS]:
        return "unexpected EOF"  # the document stopped inside an element
    return expat.ErrorString(err.code)


DECODERS: dict[str, Callable[[bytes, bool], dict]] = {
    "json": _decode_json,
    "safejson": _decode_safejson,
    "string": _decode_string,
    "xml": _decode_xml,
    "rss": _decode_rss,
    "no-op": _decode_noop,
}


# ============================================================================================
# Helpers shared by the renderers
# ============================================================================================


def _go_bytes(text: str) -> bytes:
    """A Go string's bytes: surrogateescape characters become the original raw bytes."""
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return gojson.SURROGATE.sub("\ufffd", text).encode("utf-8")


def _go_sprint(value: Any) -> str:
    """fmt's `%v` for the values that can sit in response data."""
    if value is None:
        return "<nil>"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, str):
        return value
    if isinstance(value, float):
        return gojson.format_float_g(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return "map[" + " ".join(f"{key}:{_go_sprint(value[key])}" for key in sorted(value)) + "]"
    if isinstance(value, (list, tuple)):
        return "[" + " ".join(_go_sprint(item) for item in value) + "]"
    return str(value)


# ============================================================================================
# XML renderer (mxj v2 Map.Xml with XMLEscapeChars(true))
# ============================================================================================

MXJ_ROOT = "doc"
XML_ESCAPES = (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ('"', "&quot;"), ("'", "&apos;"))


class _MxjError(Exception):
    """mxj refuses the map (a non-scalar attribute value); krakend-xml then writes nothing."""


def _xml_escape(text: str) -> str:
    for char, entity in XML_ESCAPES:  # '&' first, as mxj does
        text = text.replace(char, entity)
    return text


def _is_attribute(key: str) -> bool:
    return len(key) > 1 and key[0] == "-"


def _xml_document(data: dict) -> bytes:
    """mxj `Map.Xml()`: one top-level key becomes the root (unless it holds a list with a
    non-map item), otherwise everything goes under `<doc>`. Raises _MxjError."""
    out: list[str] = []
    if len(data) == 1:
        key, value = next(iter(data.items()))
        if isinstance(value, list) and not all(isinstance(item, dict) for item in value):
            _xml_element(out, MXJ_ROOT, data)
        else:
            _xml_element(out, key, value)
    else:
        _xml_element(out, MXJ_ROOT, data)
    return _go_bytes("".join(out))


def _xml_element(out: list[str], key: str, value: Any) -> None:
    if isinstance(value, (list, tuple)):
        _xml_list(out, key, value)
    elif isinstance(value, dict):
        _xml_map(out, key, value)
    else:
        _xml_scalar(out, key, value)


def _xml_list(out: list[str], key: str, items: list | tuple) -> None:
    if not items:
        out.append(f"<{key}/>")
    for item in items:  # a list repeats the element; nested lists flatten
        _xml_element(out, key, item)


def _xml_scalar(out: list[str], key: str, value: Any) -> None:
    if value is None:
        value = ""  # mxj v2 turns nil into an empty string
    text = _xml_escape(value) if type(value) is str else _go_sprint(value)
    out.append(f"<{key}>{text}</{key}>" if text else f"<{key}/>")


def _xml_attribute_value(key: str, value: Any) -> str:
    if type(value) is str:
        return _xml_escape(value)
    if isinstance(value, (bool, int, float, GoNumber)):
        return _go_sprint(value)
    raise _MxjError(f"invalid attribute value for: {key}")


def _xml_text_value(value: Any) -> str:
    return _xml_escape(value) if type(value) is str else _go_sprint(value)


def _xml_map(out: list[str], key: str, members: dict) -> None:
    attributes = sorted(
        (name[1:], _xml_attribute_value(name, value))
        for name, value in members.items()
        if _is_attribute(name)
    )
    out.append(f"<{key}" + "".join(f' {name}="{value}"' for name, value in attributes))
    if len(attributes) == len(members):
        out.append("/>")
        return
    children = sorted(name for name in members if name != "#text" and not _is_attribute(name))
    out.append(">")
    if "#text" in members:
        out.append(_xml_text_value(members["#text"]))
    for name in children:
        _xml_element(out, name, members[name])
    out.append(f"</{key}>")


# ============================================================================================
# YAML renderer (gin c.YAML -> github.com/goccy/go-yaml Marshal, default options)
# ============================================================================================
#
# goccy builds an AST whose nodes carry a column and prints it with per-node String() methods.
# The classes below mirror that printing so indentation, sequences and literal blocks match.

YAML_INDENT = 2
# goccy quotes YAML 1.2 keywords and, for older parsers, the YAML 1.1 booleans.
YAML_RESERVED = frozenset(
    "null Null NULL ~ true True TRUE false False FALSE "
    "y Y yes Yes YES n N no No NO on On ON off Off OFF".split()
)
YAML_QUOTE_FIRST = frozenset("*&[{}],!|>%'\"@ `")
GO_DECIMAL = re.compile(r"[0-9]+")
GO_FLOAT = re.compile(  # strconv.ParseFloat syntax: decimal, or hex mantissa with a p exponent
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?"
    r"|0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)[pP][+-]?[0-9]+)"
)
DATE = r"([0-9]{4})-([0-9]{2})-([0-9]{2})"
CLOCK = r"([0-9]{1,2}):([0-9]{2}):([0-9]{2})(?:[.,][0-9]+)?"
TIMESTAMP_LAYOUTS = (
    re.compile(DATE + "[Tt]" + CLOCK + r"(?:Z|[+-][0-9]{2}:[0-9]{2})"),  # RFC3339Nano (and the 't' variant)
    re.compile(DATE + " " + CLOCK),  # time.DateTime
    re.compile(DATE),  # time.DateOnly
)
SHORT_CLOCK = re.compile(r"([0-9]{1,2}):([0-9]{1,2})")  # layout "15:4"
DAYS_IN_MONTH = (31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


class _Scalar:
    __slots__ = ("text", "column", "is_string")

    def __init__(self, text: str, is_string: bool = False) -> None:
        self.text, self.column, self.is_string = text, 1, is_string

    def shift(self, by: int) -> None:
        self.column += by

    def render(self) -> str:
        if self.is_string and _line_break(self.text) in self.text:
            return self._literal_block()
        if self.is_string and self.text[:1] in ("{", "["):
            return f"'{self.text}'"
        return self.text

    def _literal_block(self) -> str:
        """ast.StringNode.String for a multi-line plain string: `|`, `|-` or `|+` block."""
        value = self.text
        breaker = _line_break(value)
        if value.endswith(breaker * 2):
            header = "|+"
        elif value.endswith(breaker):
            header = "|"
        else:
            header = "|-"
        pad = " " * (self.column - 1) + " " * YAML_INDENT
        block = breaker.join(pad + line for line in value.split(breaker))
        block = _trim_suffix(_trim_suffix(block, breaker + pad), pad)
        return header + breaker + block


class _Mapping:
    __slots__ = ("items",)

    def __init__(self, items: list[tuple[_Scalar, Any]]) -> None:
        self.items = items

    def shift(self, by: int) -> None:
        for key, value in self.items:
            key.shift(by)
            value.shift(by)

    def render(self) -> str:
        if not self.items:
            return "{}"
        return "\n".join(_render_mapping_value(key, value) for key, value in self.items)


class _Sequence:
    __slots__ = ("values", "column")

    def __init__(self, values: list) -> None:
        self.values, self.column = values, 1

    def shift(self, by: int) -> None:
        self.column += by
        for value in self.values:
            value.shift(by)

    def render(self) -> str:
        if not self.values:
            return "[]"
        space = " " * (self.column - 1)
        return "\n".join(self._entry(space, value) for value in self.values)

    @staticmethod
    def _entry(space: str, value: Any) -> str:
        """ast.SequenceNode.blockStyleString: re-indent the value under `- `."""
        text = value.render()
        prefix = ""
        if text.startswith("\n"):
            text, prefix = text[1:], "\n"
        lines = text.split("\n")
        first = lines[0].lstrip(" ")
        indent = len(lines[0]) - len(first)
        if len(lines) > 1 and isinstance(value, _Scalar) and value.is_string:
            lines[1:] = [_trim_prefix(line, space + "  ") for line in lines[1:]]
        rest = ["" if len(line) <= indent else f"{space}  {line[indent:]}" for line in lines[1:]]
        return prefix + space + "- " + "\n".join([first, *rest])


def _render_mapping_value(key: _Scalar, value: Any) -> str:
    """ast.MappingValueNode.toString."""
    space = " " * (key.column - 1)
    if isinstance(value, _Scalar):
        text = value.render()
        return f"{space}{key.render()}:" if text == "" else f"{space}{key.render()}: {text}"
    if isinstance(value, _Mapping) and not value.items or isinstance(value, _Sequence) and not value.values:
        return f"{space}{key.render()}: {value.render()}"
    return f"{space}{key.render()}:\n{value.render()}"


def _trim_suffix(text: str, suffix: str) -> str:
    return text[: -len(suffix)] if suffix and text.endswith(suffix) else text


def _trim_prefix(text: str, prefix: str) -> str:
    return text[len(prefix) :] if text.startswith(prefix) else text


def _line_break(text: str) -> str:
    """token.DetectLineBreakCharacter."""
    newlines, returns, pairs = text.count("\n"), text.count("\r"), text.count("\r\n")
    if newlines == pairs and returns == pairs:
        return "\r\n"
    return "\r" if returns > newlines else "\n"


def _yaml_document(data: Any) -> bytes:
    """goccy/go-yaml Marshal: block style, 2-space indent, keys sorted, sequences not indented
    under their key, strings quoted only when they would read back as something else."""
    return _go_bytes(_yaml_node(data).render() + "\n")


def _yaml_node(value: Any) -> Any:
    if isinstance(value, dict):
        return _yaml_mapping(value)
    if isinstance(value, (list, tuple)):
        return _Sequence([_yaml_node(item) for item in value])
    return _yaml_scalar(value)


def _yaml_mapping(members: dict) -> _Mapping:
    # goccy sorts map keys; a Go struct (GoStruct) keeps its field order.
    keys = list(members) if isinstance(members, GoStruct) else sorted(members, key=str)
    items = []
    for key in keys:
        node = _yaml_node(members[key])
        if isinstance(node, _Mapping):
            node.shift(YAML_INDENT)  # only nested maps are indented; sequences stay at the key
        items.append((_yaml_string(str(key)), node))
    return _Mapping(items)


def _yaml_scalar(value: Any) -> _Scalar:
    if value is None:
        return _Scalar("null")
    if isinstance(value, bool):
        return _Scalar("true" if value else "false")
    if isinstance(value, str):  # GoNumber too: json.Number is a string kind for goccy
        return _yaml_string(value)
    if isinstance(value, float):
        return _Scalar(_yaml_float(value))
    if isinstance(value, int):
        return _Scalar(str(value))
    return _yaml_string(_go_sprint(value))


def _yaml_float(value: float) -> str:
    if value != value:
        return ".nan"
    if value in (float("inf"), float("-inf")):
        return ".inf" if value > 0 else "-.inf"
    text = gojson.format_float_g(value)
    return text if "." in text or "e" in text else text + ".0"


def _yaml_string(text: str) -> _Scalar:
    if yaml_needs_quotes(text):
        return _Scalar(gojson.go_quote(text), is_string=True)
    return _Scalar(text, is_string=True)


def yaml_needs_quotes(text: str) -> bool:
    """goccy token.IsNeedQuoted."""
    if text == "" or text in YAML_RESERVED or text == "-" or _yaml_is_number(text):
        return True
    if text[0] in YAML_QUOTE_FIRST or text[-1] in ": ":
        return True
    if _looks_like_timestamp(text):
        return True
    for index, char in enumerate(text):
        if char in "#\\":
            return True
        if char in ":-" and text[index + 1 : index + 2] == " ":
            return True
    return False


def _yaml_is_number(text: str) -> bool:
    """goccy token.isNumber: strconv parses the text (a range error still counts)."""
    if text.startswith("_") or text.count(".") > 1:
        return False
    negative = text.startswith("-")
    digits = _trim_prefix(_trim_prefix(text, "+"), "-").replace("_", "")
    for prefix, alphabet in (("0x", "0123456789abcdefABCDEF"), ("0o", "01234567"), ("0b", "01")):
        if digits.startswith(prefix):
            rest = digits[len(prefix) :]
            return bool(rest) and all(char in alphabet for char in rest)
    if digits.startswith("0") and len(digits) > 1 and "." not in text:
        return all(char in "01234567" for char in digits)
    if "." in text:
        number = "-" + digits if negative else digits
        return bool(GO_FLOAT.fullmatch(number))
    return bool(GO_DECIMAL.fullmatch(digits))


def _looks_like_timestamp(text: str) -> bool:
    """goccy quotes what time.Parse accepts with RFC3339Nano, DateTime, DateOnly or "15:4"."""
    for layout in TIMESTAMP_LAYOUTS:
        match = layout.fullmatch(text)
        if match and _valid_date(*map(int, match.groups()[:3])) and _valid_clock(match.groups()[3:6]):
            return True
    clock = SHORT_CLOCK.fullmatch(text)
    return bool(clock) and int(clock.group(1)) < 24 and int(clock.group(2)) < 60


def _valid_date(year: int, month: int, day: int) -> bool:
    if not 1 <= month <= 12:
        return False
    leap = year % 4 == 0 and (year % 100 != 0 or year % 400 == 0)
    return 1 <= day <= DAYS_IN_MONTH[month - 1] + (month == 2 and leap)


def _valid_clock(parts: tuple) -> bool:
    if not parts or parts[0] is None:
        return True
    hour, minute, second = map(int, parts)
    return hour < 24 and minute < 60 and second < 60


# ============================================================================================
# Renderers
# ============================================================================================

Rendered = tuple[str | None, bytes]

# gin NegotiateFormat offers, in lura's order (router/gin/render.go negotiatedRender).
NEGOTIATION_OFFERS = ("application/json", "text/plain", "application/xml", "application/x-yaml")


def _json_body(value: Any) -> bytes:
    try:
        return gojson.dumps(value)
    except (TypeError, ValueError):
        return b""  # gin has written the header when json.Marshal fails; nothing else follows


def _render_json(data: dict | None, accept: str | None) -> Rendered:
    return JSON_CONTENT_TYPE, _json_body({} if data is None else data)


def _render_json_collection(data: dict | None, accept: str | None) -> Rendered:
    if data is None or "collection" not in data:
        return JSON_CONTENT_TYPE, b"[]"  # lura renders []struct{}{}
    return JSON_CONTENT_TYPE, _json_body(data["collection"])


def _render_string(data: dict | None, accept: str | None) -> Rendered:
    content = None if data is None else data.get("content")
    # Only a Go string counts: json.Number (GoNumber) fails lura's `d.(string)` assertion.
    return TEXT_CONTENT_TYPE, _go_bytes(content) if type(content) is str else b""


def _render_xml(data: dict | None, accept: str | None) -> Rendered:
    if data is None:
        return GIN_XML_CONTENT_TYPE, b""  # krakend-xml falls back to c.XML(nil): no body
    try:
        return XML_CONTENT_TYPE, _xml_document(data)
    except _MxjError:
        return XML_CONTENT_TYPE, b""  # XmlWriter returns the error before writing


def _render_yaml(data: dict | None, accept: str | None) -> Rendered:
    return YAML_CONTENT_TYPE, _yaml_document({} if data is None else data)


def _render_negotiated(data: dict | None, accept: str | None) -> Rendered:
    offer = negotiate_format(accept)
    if offer == "application/xml":
        return _render_xml(data, accept)
    if offer in ("text/plain", "application/x-yaml"):
        return _render_yaml(data, accept)
    return _render_json(data, accept)


def negotiate_format(accept: str | None, offers: tuple[str, ...] = NEGOTIATION_OFFERS) -> str:
    """gin Context.NegotiateFormat: the first Accept entry (in order, q-values ignored) that
    matches an offer wins; `*` on either side matches the rest; an entry that is a prefix of an
    offer matches it too. No Accept -> the first offer; no match -> ""."""
    accepted = _parse_accept(accept or "")
    if not accepted:
        return offers[0]
    for entry in accepted:
        for offer in offers:
            if _accept_matches(entry, offer):
                return offer
    return ""


def _parse_accept(header: str) -> list[str]:
    entries = []
    for part in header.split(","):
        semicolon = part.find(";")
        if semicolon > 0:
            part = part[:semicolon]
        part = part.strip()
        if part:
            entries.append(part)
    return entries


def _accept_matches(entry: str, offer: str) -> bool:
    index = 0
    while index < len(entry) and index < len(offer):
        if entry[index] == "*" or offer[index] == "*":
            return True
        if entry[index] != offer[index]:
            return False
        index += 1
    return index == len(entry)


RENDERERS: dict[str, Callable[[dict | None, str | None], Rendered]] = {
    "json": _render_json,
    "json-collection": _render_json_collection,
    "string": _render_string,
    "xml": _render_xml,
    "yaml": _render_yaml,
    "negotiate": _render_negotiated,
}


def render(output_encoding: str, data: dict | None, accept: str | None = None) -> Rendered:
    """Render response data for `output_encoding`; returns (Content-Type, body).

    `data=None` stands for lura's nil response. Unknown encodings render JSON (the caller picks
    a single backend's renderer first, §6.4). `no-op` is not handled here: it is a pass-through.
    `accept` is the request's first Accept header value, used by `negotiate`."""
    renderer = RENDERERS.get(output_encoding, _render_json)
    return renderer(data, accept)
