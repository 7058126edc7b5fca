"""Go's time.ParseDuration, because KrakenD reads every duration key with it."""

from decimal import Decimal

# Go's time.ParseDuration unit table, in nanoseconds
_UNIT_NS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # U+00B5 micro sign
    "\u03bcs": 1_000,  # U+03BC greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}
_MAX_NS = (1 << 63) - 1


def parse_duration(text: str) -> float:
    """Seconds for a Go duration string ("1m30s", "150us", "-2h"): time.ParseDuration's grammar,
    overflow rule and error texts (the unit runs until the next digit or '.')."""
    original, rest = text, text
    negative = False
    if rest and rest[0] in "+-":
        negative = rest[0] == "-"
        rest = rest[1:]
    if rest == "0":
        return 0.0
    if not rest:
        raise ValueError(f"time: invalid duration {_go_quote(original)}")
    total_ns = Decimal(0)
    while rest:
        digits_end = _skip(rest, 0, _is_digit)
        whole = rest[:digits_end]
        fraction = ""
        at = digits_end
        if at < len(rest) and rest[at] == ".":
            at = _skip(rest, at + 1, _is_digit)
            fraction = rest[digits_end + 1:at]
        if not whole and not fraction:  # no digits at all ("." or a unit first)
            raise ValueError(f"time: invalid duration {_go_quote(original)}")
        unit_end = _skip(rest, at, lambda c: c != "." and not _is_digit(c))
        unit = rest[at:unit_end]
        if not unit:
            raise ValueError(f"time: missing unit in duration {_go_quote(original)}")
        if unit not in _UNIT_NS:
            raise ValueError(f"time: unknown unit {_go_quote(unit)} in duration {_go_quote(original)}")
        total_ns += Decimal(f"{whole or '0'}.{fraction or '0'}") * _UNIT_NS[unit]
        if total_ns > _MAX_NS:
            raise ValueError(f"time: invalid duration {_go_quote(original)}")
        rest = rest[unit_end:]
    seconds = int(total_ns) / 1e9
    return -seconds if negative else seconds


def _is_digit(char: str) -> bool:
    return "0" <= char <= "9"


def _skip(text: str, at: int, wanted) -> int:
    while at < len(text) and wanted(text[at]):
        at += 1
    return at


def _go_quote(text: str) -> str:
    """time.quote: non-ASCII and control bytes as \\xNN, `"` and `\\` escaped."""
    out = ['"']
    for char in text:
        if char < " " or char >= "\x80":
            out += [f"\\x{byte:02x}" for byte in char.encode("utf-8", "surrogateescape")]
        else:
            out.append("\\" + char if char in '"\\' else char)
    out.append('"')
    return "".join(out)


def duration_from_config(value) -> float:
    """A KrakenD duration key: a string is parsed by Go's rules, a bare number is nanoseconds
    (mapstructure turns an int into time.Duration), so `"cache_ttl": 3600` is 3.6 µs."""
    if isinstance(value, bool):
        raise ValueError(f"expected a duration, got {str(value).lower()}")
    if isinstance(value, (int, float)):
        return float(value) * 1e-9
    if isinstance(value, str):
        return parse_duration(value)
    raise ValueError(f"expected a duration, got {type(value).__name__}")
