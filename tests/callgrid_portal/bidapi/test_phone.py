"""Caller-ID normalization: what becomes a 10-digit NANP number and what is refused, and why."""

import pytest

from callgrid_portal.bidapi.phone import CallerId, InvalidCallerId, normalize_caller_id


@pytest.mark.parametrize(
    "raw",
    [
        "3035551234",
        "(303) 555-1234",
        "303.555.1234",
        "303-555-1234",
        "+1 303 555 1234",
        "+13035551234",
        "13035551234",
        "1 (303) 555-1234",
        "  3035551234\n",
        3035551234,
    ],
)
def test_normalize_caller_id_accepts_common_spellings_as_ten_digits(raw):
    assert normalize_caller_id(raw) == CallerId("3035551234")


def test_caller_id_formats_as_ten_digits_or_e164():
    number = normalize_caller_id("(303) 555-1234")

    assert number.formatted("10-digit") == "3035551234"
    assert number.formatted("e164") == "+13035551234"
    assert str(number) == "3035551234"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (None, "missing"),
        ("", "missing"),
        ("   ", "missing"),
        ("303555123", "10 digits"),
        ("30355512345", "start with country code 1"),
        ("130355512345", "10 digits"),
        ("0305551234", "area code 030"),
        ("1035551234", "area code 103"),
        ("11035551234", "area code 103"),
        ("3030551234", "exchange 055"),
        ("3031551234", "exchange 155"),
        ("303555CALL", "only digits"),
        ("+44 20 7946 0958", "North American"),
        ("+1035551234", "+1 must be followed by 10 digits, got 9"),
        ("+3035551234", "North American"),
        ("٣٠٣٥٥٥١٢٣٤", "only digits"),
        (-3035551234, "negative"),
        (3035551234.0, "string of digits"),
        (True, "string of digits"),
    ],
)
def test_normalize_caller_id_refuses_invalid_numbers_with_a_reason(raw, reason):
    with pytest.raises(InvalidCallerId) as excinfo:
        normalize_caller_id(raw)

    assert reason in excinfo.value.reason
