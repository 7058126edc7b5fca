"""goduration.parse_duration against Go's time.ParseDuration (values and error texts, Go 1.22)."""

import pytest

from krakend_mitm.goduration import parse_duration


@pytest.mark.parametrize("text,seconds", [
    ("0", 0.0), ("-0", 0.0), ("1s", 1.0), ("1.5s", 1.5), ("1.s", 1.0), (".5s", 0.5), ("-1.5h", -5400.0),
    ("1h2m3.5s", 3723.5), ("300ms", 0.3), ("1µs", 1e-6), ("1μs", 1e-6), ("1us", 1e-6), ("2ns", 2e-9),
    ("9223372036854775807ns", 9223372036.854775807), ("2562047h47m16.854775807s", 9223372036.854775807),
])
def test_values(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds, rel=1e-12)


@pytest.mark.parametrize("text,error", [
    ("", 'time: invalid duration ""'),
    ("1", 'time: missing unit in duration "1"'),
    (".s", 'time: invalid duration ".s"'),
    ("s", 'time: invalid duration "s"'),
    ("1S", 'time: unknown unit "S" in duration "1S"'),  # the unit runs to the next digit or '.'
    ("1s ", 'time: unknown unit "s " in duration "1s "'),
    ("1hm", 'time: unknown unit "hm" in duration "1hm"'),
    ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
    ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),  # overflows int64
    ("9999999999h", 'time: invalid duration "9999999999h"'),
    ("٣s", 'time: invalid duration "\\xd9\\xa3s"'),  # time.quote escapes non-ASCII bytes
    ("1\x01", 'time: unknown unit "\\x01" in duration "1\\x01"'),
])
def test_errors(text, error):
    with pytest.raises(ValueError) as raised:
        parse_duration(text)
    assert str(raised.value) == error
