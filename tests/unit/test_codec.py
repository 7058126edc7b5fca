"""codec: backend decoders (spec §6.1) and renderers (§6.4), with the KrakenD CE conformance bodies."""

import pytest

from krakend_mitm.codec import DecodeError, decode, negotiate_format, render, yaml_needs_quotes
from krakend_mitm.gojson import GoNumber, GoStruct

# The mock backend's /xml document (conformance mock_backend.py XML_DOCUMENT).
MOCK_XML = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b'<user type="admin">\n'
    b"  <name>Elliot</name>\n"
    b"  <social>\n"
    b"    <facebook>https://facebook.com</facebook>\n"
    b"    <twitter>https://twitter.com</twitter>\n"
    b"    <youtube>https://youtube.com</youtube>\n"
    b"  </social>\n"
    b"</user>"
)
MOCK_XML_DATA = {
    "user": {
        "-type": "admin",
        "name": "Elliot",
        "social": {"facebook": "https://facebook.com", "twitter": "https://twitter.com", "youtube": "https://youtube.com"},
    }
}
# specs/xml_1.json
XML_1_BODY = (
    b'<user type="admin"><name>Elliot</name><social><facebook>https://facebook.com</facebook>'
    b"<twitter>https://twitter.com</twitter><youtube>https://youtube.com</youtube></social></user>"
)
# specs/xml_2.json renders the mock's /param_forwarding echo (a JSON object) as XML.
PARAM_FORWARDING_DATA = {
    "foo": GoNumber("42"),
    "headers": {
        "Accept-Encoding": ["gzip"],
        "Referer": ["http://127.0.0.1:8081/param_forwarding"],
        "User-Agent": ["KrakenD Version 2.13.8"],
        "X-Forwarded-Host": ["localhost:8080"],
    },
    "path": "/param_forwarding/",
    "query": {},
}
XML_2_BODY = (
    b"<doc><foo>42</foo><headers><Accept-Encoding>gzip</Accept-Encoding>"
    b"<Referer>http://127.0.0.1:8081/param_forwarding</Referer><User-Agent>KrakenD Version 2.13.8</User-Agent>"
    b"<X-Forwarded-Host>localhost:8080</X-Forwarded-Host></headers><path>/param_forwarding/</path><query/></doc>"
)
# specs/negotitate_json.json and specs/negotitate_plain.json
NEGOTIATE_JSON_BODY = (
    b'{"user":{"-type":"admin","name":"Elliot","social":{"facebook":"https://facebook.com",'
    b'"twitter":"https://twitter.com","youtube":"https://youtube.com"}}}'
)
NEGOTIATE_PLAIN_BODY = (
    b"user:\n  -type: admin\n  name: Elliot\n  social:\n    facebook: https://facebook.com\n"
    b"    twitter: https://twitter.com\n    youtube: https://youtube.com\n"
)
JSON_TYPE = "application/json; charset=utf-8"
YAML_TYPE = "application/yaml; charset=utf-8"

# ============================================================================================
# Decoders
# ============================================================================================


@pytest.mark.parametrize(
    ("encoding", "body", "is_collection", "expected"),
    [
        ("json", b'{"a":1.0}', False, {"a": GoNumber("1.0")}),
        ("json", b'{"a":1}\n', False, {"a": GoNumber("1")}),
        ("json", b'{"a":1}{"b":2}', False, {"a": GoNumber("1")}),  # only the first value
        ("json", b"null", False, {}),  # null into a map: nil map, no error
        ("json", b'[{"i":0}]', True, {"collection": [{"i": GoNumber("0")}]}),
        ("json", b"null", True, {"collection": None}),
        ("", b'{"a":true}', False, {"a": True}),  # no encoding means json
        ("fast-json", b'{"a":"b"}', False, {"a": "b"}),  # Enterprise-only names fall back to json
        ("yaml", b'{"a":"b"}', False, {"a": "b"}),
        ("unknown", b"[1]", True, {"collection": [GoNumber("1")]}),
        ("JSON", b'{"a":"b"}', False, {"a": "b"}),  # lower-cased lookup
        ("safejson", b'{"a":1}', False, {"a": GoNumber("1")}),
        ("safejson", b"[1,2]", False, {"collection": [GoNumber("1"), GoNumber("2")]}),
        ("safejson", b'"text"', False, {"result": "text"}),  # lura's key for scalars is "result"
        ("safejson", b"42", True, {"result": GoNumber("42")}),
        ("safejson", b"null", False, {"result": None}),
        ("string", b"hello\n", False, {"content": "hello\n"}),
        ("string", b"", True, {"content": ""}),
        ("String", b"{}", False, {"content": "{}"}),
        ("no-op", b"anything", False, {}),
    ],
)
def test_decode(encoding, body, is_collection, expected):
    assert decode(encoding, body, is_collection) == expected


@pytest.mark.parametrize(
    ("encoding", "body", "is_collection", "message"),
    [
        ("json", b"", False, "EOF"),
        ("json", b"   ", True, "EOF"),
        ("json", b'{"a":', False, "unexpected EOF"),
        ("json", b"[1,2]", False, "json: cannot unmarshal array into Go value of type map[string]interface {}"),
        ("json", b"42", False, "json: cannot unmarshal number into Go value of type map[string]interface {}"),
        ("json", b'"x"', False, "json: cannot unmarshal string into Go value of type map[string]interface {}"),
        ("json", b"true", False, "json: cannot unmarshal bool into Go value of type map[string]interface {}"),
        ("json", b'{"a":1}', True, "json: cannot unmarshal object into Go value of type []interface {}"),
        ("json", b"<html>", False, "invalid character '<' looking for beginning of value"),
        ("safejson", b"", False, "EOF"),
        ("safejson", b"{nope}", False, "invalid character 'n' looking for beginning of object key string"),
        ("rss", b"<rss/>", False, "rss encoding is not supported"),
    ],
)
def test_decode_errors(encoding, body, is_collection, message):
    with pytest.raises(DecodeError) as err:
        decode(encoding, body, is_collection)
    assert str(err.value) == message


def test_string_decoder_keeps_invalid_bytes_for_raw_rendering():
    data = decode("string", b"caf\xe9", False)
    assert render("string", data, None) == ("text/plain; charset=utf-8", b"caf\xe9")
    assert render("json", data, None)[1] == b'{"content":"caf\\ufffd"}'  # Go writes \ufffd per bad byte


# --------------------------------------------------------------------------------------------
# XML decoder (krakend-xml / mxj)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (MOCK_XML, MOCK_XML_DATA),
        # repeated elements become a list; attributes keep the '-' prefix
        (b'<p id="1"><v>a</v><v>b</v><w/></p>', {"p": {"-id": "1", "v": ["a", "b"], "w": ""}}),
        # text next to attributes goes under #text
        (b'<a><b lang="en">hi</b></a>', {"a": {"b": {"-lang": "en", "#text": "hi"}}}),
        # text before and after children is kept as #text (mxj v2)
        (b"<a>intro<b>x</b></a>", {"a": {"#text": "intro", "b": "x"}}),
        (b"<a><b>x</b>outro</a>", {"a": {"b": "x", "#text": "outro"}}),
        (b"<a/>", {"a": ""}),
        (b"<a>  \n  </a>", {"a": ""}),
        (b"<a>  padded  </a>", {"a": "padded"}),
        # values stay strings: no casting to numbers or booleans
        (b"<a><n>42</n><t>true</t></a>", {"a": {"n": "42", "t": "true"}}),
        # namespaces: Go's Name.Local only
        (b'<ns:a xmlns:ns="urn:x" ns:k="v"><ns:b>1</ns:b></ns:a>', {"a": {"-ns": "urn:x", "-k": "v", "b": "1"}}),
        # entities and CDATA are decoded; a comment splits the text and the last piece wins
        (b"<a>x &amp; y</a>", {"a": "x & y"}),
        (b"<a><![CDATA[<raw>]]></a>", {"a": "<raw>"}),
        (b"<a>first<!-- c -->second</a>", {"a": "second"}),
        # one document is read; what follows the root is ignored
        (b"<a>1</a><b>2</b>", {"a": "1"}),
        (b"<a>1</a>trailing garbage <<", {"a": "1"}),
        # text before the root is skipped
        (b"junk<a>1</a>", {"a": "1"}),
        (b"\xef\xbb\xbf<a>1</a>", {"a": "1"}),
        ('<?xml version="1.0" encoding="ISO-8859-1"?><a>caf\xe9</a>'.encode("latin-1"), {"a": "café"}),
    ],
)
def test_decode_xml(body, expected):
    assert decode("xml", body, False) == expected


def test_decode_xml_collection_wraps_the_document_map():
    assert decode("XML", b"<people><p>a</p><p>b</p></people>", True) == {"collection": {"people": {"p": ["a", "b"]}}}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "EOF"),
        (b"3", "EOF"),
        (b"<a><b></a>", "XML syntax error on line 1"),
        (b"<a>", "XML syntax error on line 1: unexpected EOF"),
        (b"<a>&unknown;</a>", "XML syntax error"),
        # DTDs are refused outright (no entity expansion, no billion laughs)
        (b'<!DOCTYPE a [<!ENTITY x "y">]><a>&x;</a>', "DTDs and entity declarations are not allowed"),
        (b"<!DOCTYPE a><a/>", "DTDs and entity declarations are not allowed"),
    ],
)
def test_decode_xml_errors(body, message):
    with pytest.raises(DecodeError, match=message):
        decode("xml", body, False)


# ============================================================================================
# Renderers
# ============================================================================================


@pytest.mark.parametrize(
    ("encoding", "data", "expected"),
    [
        ("json", {"b": 1, "a": "<x>"}, (JSON_TYPE, b'{"a":"\\u003cx\\u003e","b":1}')),
        ("json", None, (JSON_TYPE, b"{}")),
        ("json", {}, (JSON_TYPE, b"{}")),
        ("json", {"f": float("nan")}, (JSON_TYPE, b"")),  # json.Marshal fails: header only
        ("fast-json", {"a": 1}, (JSON_TYPE, b'{"a":1}')),  # unknown renderers fall back to JSON
        ("json-collection", {"collection": [{"i": GoNumber("0")}], "x": 1}, (JSON_TYPE, b'[{"i":0}]')),
        ("json-collection", {"x": 1}, (JSON_TYPE, b"[]")),
        ("json-collection", None, (JSON_TYPE, b"[]")),
        ("json-collection", {"collection": None}, (JSON_TYPE, b"null")),
        ("json-collection", {"collection": {"k": "v"}}, (JSON_TYPE, b'{"k":"v"}')),
        ("string", {"content": "hello <b>"}, ("text/plain; charset=utf-8", b"hello <b>")),
        ("string", {"content": GoNumber("42")}, ("text/plain; charset=utf-8", b"")),  # not a Go string
        ("string", {"content": ["x"]}, ("text/plain; charset=utf-8", b"")),
        ("string", {"other": "x"}, ("text/plain; charset=utf-8", b"")),
        ("string", None, ("text/plain; charset=utf-8", b"")),
        ("xml", MOCK_XML_DATA, ("application/xml", XML_1_BODY)),
        ("xml", PARAM_FORWARDING_DATA, ("application/xml", XML_2_BODY)),
        ("xml", None, ("application/xml; charset=utf-8", b"")),
        ("yaml", MOCK_XML_DATA, (YAML_TYPE, NEGOTIATE_PLAIN_BODY)),
        ("yaml", None, (YAML_TYPE, b"{}\n")),
    ],
)
def test_render(encoding, data, expected):
    assert render(encoding, data, None) == expected


def test_conformance_negotiate_bodies_from_the_decoded_mock_xml():
    data = decode("xml", MOCK_XML, False)
    assert render("negotiate", data, "application/json; charset=utf-8") == (JSON_TYPE, NEGOTIATE_JSON_BODY)
    assert render("negotiate", data, "text/plain") == (YAML_TYPE, NEGOTIATE_PLAIN_BODY)
    assert render("xml", data, None) == ("application/xml", XML_1_BODY)


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        (None, JSON_TYPE),
        ("", JSON_TYPE),
        ("*/*", JSON_TYPE),
        ("application/json", JSON_TYPE),
        ("text/plain", YAML_TYPE),
        ("text/*", YAML_TYPE),
        ("application/x-yaml", YAML_TYPE),
        ("application/xml", "application/xml"),
        ("application/yaml", JSON_TYPE),  # matches no offer
        ("text/html", JSON_TYPE),
        ("application/*", JSON_TYPE),  # '*' matches the first offer with the same prefix
        # the first entry that matches wins; q-values are ignored
        ("text/html, application/xml;q=0.1, application/json;q=0.9", "application/xml"),
        ("text/plain;q=0.1, application/json", YAML_TYPE),
        ("image/png,  ,text/plain", YAML_TYPE),
    ],
)
def test_negotiate_picks_by_accept(accept, content_type):
    assert render("negotiate", MOCK_XML_DATA, accept)[0] == content_type


@pytest.mark.parametrize(
    ("accept", "offer"),
    [
        ("text/plain", "text/plain"),
        ("text", "text/plain"),  # an entry that is a prefix of an offer matches it (gin)
        ("application/jsonx", ""),
        (";q=1", ""),
        ("text/html", ""),
        (None, "application/json"),
    ],
)
def test_negotiate_format_follows_gin(accept, offer):
    assert negotiate_format(accept) == offer


# --------------------------------------------------------------------------------------------
# XML renderer (mxj)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "body"),
    [
        ({}, b"<doc/>"),
        ({"a": "x", "b": "y"}, b"<doc><a>x</a><b>y</b></doc>"),
        ({"a": {"z": "1", "b": "2"}}, b"<a><b>2</b><z>1</z></a>"),  # keys sorted
        ({"a": {"-z": "1", "-b": "2"}}, b'<a b="2" z="1"/>'),  # attributes only: self-closed
        ({"a": {"-id": 7, "#text": "t"}}, b'<a id="7">t</a>'),
        ({"a": {"#text": "t", "c": "x"}}, b"<a>t<c>x</c></a>"),
        ({"a": {"-": "dash"}}, b"<a><->dash</-></a>"),  # "-" alone is not an attribute
        ({"a": ["x", "y"]}, b"<doc><a>x</a><a>y</a></doc>"),  # a list of non-maps needs <doc>
        ({"a": [{"b": "1"}, {"b": "2"}]}, b"<a><b>1</b></a><a><b>2</b></a>"),  # mxj: no root at all
        ({"a": []}, b"<a/>"),
        ({"k": "", "n": None, "m": {}}, b"<doc><k/><m/><n/></doc>"),
        ({"k": [["x", "y"], []]}, b"<doc><k>x</k><k>y</k><k/></doc>"),
        ({"v": "a & b < c > d \"e\" 'f'"}, b"<v>a &amp; b &lt; c &gt; d &quot;e&quot; &apos;f&apos;</v>"),
        ({"a": {"-q": "<&>"}}, b'<a q="&lt;&amp;&gt;"/>'),
        ({"n": GoNumber("1.50"), "i": 42, "f": 1e6, "g": 2.5, "t": True}, b"<doc><f>1e+06</f><g>2.5</g><i>42</i><n>1.50</n><t>true</t></doc>"),
        ({"a": {"-bad": {"x": 1}}}, b""),  # mxj refuses a map attribute: krakend-xml writes nothing
        ({"a": {"-bad": None}}, b""),
    ],
)
def test_render_xml_follows_mxj(data, body):
    assert render("xml", data, None) == ("application/xml", body)


# --------------------------------------------------------------------------------------------
# YAML renderer (goccy/go-yaml via gin)
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "body"),
    [
        ({}, "{}\n"),
        ({"b": "x", "a": 1}, "a: 1\nb: x\n"),
        ({"a": {"b": {"c": "d"}}}, "a:\n  b:\n    c: d\n"),
        ({"a": [1, 2]}, "a:\n- 1\n- 2\n"),  # sequences are not indented under their key
        ({"a": {"b": ["x"]}}, "a:\n  b:\n  - x\n"),
        ({"a": [{"x": 1, "y": [2]}]}, 'a:\n- x: 1\n  "y":\n  - 2\n'),
        ({"a": [[1, 2], []]}, "a:\n- - 1\n  - 2\n- []\n"),
        ({"e": {}, "l": [], "n": None}, 'e: {}\nl: []\n"n": null\n'),
        ({"s": GoNumber("42"), "f": 42.0, "g": 1e6, "i": 7, "t": False}, 'f: 42.0\ng: 1e+06\ni: 7\ns: "42"\nt: false\n'),
        ({"text": "multi\nline"}, "text: |-\n  multi\n  line\n"),
        ({"text": "ends\n"}, "text: |\n  ends\n"),
        ({"a": {"text": "x\ny"}}, "a:\n  text: |-\n    x\n    y\n"),
        ({"a": ["x\ny"]}, "a:\n- |-\n  x\n  y\n"),
        ({"q": " lead\nx"}, 'q: " lead\\nx"\n'),  # quoting wins over the literal block
        ({"u": "é"}, "u: é\n"),
        ({"e": GoStruct({"z": 1, "a": {"d": 1, "c": 2}})}, "e:\n  z: 1\n  a:\n    c: 2\n    d: 1\n"),  # struct order
    ],
)
def test_render_yaml_follows_goccy(data, body):
    assert render("yaml", data, None) == (YAML_TYPE, body.encode())


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("", True),
        ("plain", False),
        ("https://facebook.com", False),
        ("-type", False),
        ("42", True),
        ("-1.5", True),
        ("1e3", False),  # goccy's number check does not read exponents without a dot
        ("1.5e3", True),
        ("0x1F", True),
        ("0777", True),
        ("089", False),
        ("1_000", True),
        ("true", True),
        ("yes", True),
        ("Off", True),
        ("null", True),
        ("~", True),
        ("-", True),
        ("a: b", True),
        ("a:b", False),
        ("key:", True),
        ("- item", True),
        ("a #b", True),
        ("back\\slash", True),
        ("*alias", True),
        ("@at", True),
        ("trailing ", True),
        ("2024-02-29", True),
        ("2023-02-29", False),  # not a date: February 29 only in leap years
        ("2024-01-02 15:04:05", True),
        ("2024-01-02T15:04:05.123Z", True),
        ("2024-01-02T15:04:05+02:00", True),
        ("12:30", True),
        ("25:00", False),
    ],
)
def test_yaml_quoting_follows_goccy(text, quoted):
    assert yaml_needs_quotes(text) is quoted
