"""Go's time.ParseDuration, because KrakenD reads every duration key with it."""

import re

_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,  # U+00B5 micro sign
    "μs": 1e-6,  # U+03BC greek mu
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}
_PART = re.compile(r"([0-9]*(?:\.[0-9]*)?)([a-zµμ]*)")


def parse_duration(text: str) -> float:
    """Seconds for a Go duration string ("1m30s", "150us", "-2h"). Raises ValueError with Go's text."""
    original = text
    quoted = '"' + original + '"'
    sign = 1.0
    if text and text[0] in "+-":
        sign = -1.0 if text[0] == "-" else 1.0
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"time: invalid duration {quoted}")
    total = 0.0
    while text:
        match = _PART.match(text)
        number, unit = match.group(1), match.group(2)
        if number in ("", "."):
            raise ValueError(f"time: invalid duration {quoted}")
        if not unit:
            raise ValueError(f"time: missing unit in duration {quoted}")
        if unit not in _UNIT_SECONDS:
            raise ValueError(f'time: unknown unit "{unit}" in duration {quoted}')
        total += float(number) * _UNIT_SECONDS[unit]
        text = text[match.end():]
    return sign * total


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
