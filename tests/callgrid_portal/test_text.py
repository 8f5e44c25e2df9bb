"""Reading numbers sent as text: ASCII digits only, length and value bounded before int()."""

import pytest

from callgrid_portal.text import ascii_digits, whole_number_upto


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", 0),
        ("7", 7),
        ("099", 99),
        ("0099", None),
        ("100", 100),
        ("101", None),
        ("1000", None),
        ("", None),
        ("-1", None),
        ("+5", None),
        (" 5", None),
        ("²", None),
        ("\uff11", None),
        ("9" * 5000, None),
    ],
)
def test_a_whole_number_is_read_only_within_its_bound(text, expected):
    assert whole_number_upto(text, 100) == expected


def test_ascii_digits_refuses_what_int_would_read_differently():
    assert ascii_digits("0123")
    assert not ascii_digits("²") and not ascii_digits("\uff11\uff12") and not ascii_digits("")
