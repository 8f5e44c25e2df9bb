"""Operating hours as text: what people type, what is stored, and what the pages show."""

import pytest
from django.core.exceptions import ValidationError

from buyers.hours import HoursSyntaxError, hours_summary, hours_text, parse_hours_text
from buyers.validators import validate_operating_hours

NINE_TO_FIVE = [["09:00", "17:00"]]


@pytest.mark.parametrize(
    "text, stored",
    [
        ("mon 09:00-17:00", {"mon": NINE_TO_FIVE}),
        ("Monday: 9:00-17:00", {"mon": NINE_TO_FIVE}),
        (
            "mon-wed 09:00-17:00",
            {"mon": NINE_TO_FIVE, "tue": NINE_TO_FIVE, "wed": NINE_TO_FIVE},
        ),
        (
            "fri-mon 09:00-17:00",
            {"mon": NINE_TO_FIVE, "fri": NINE_TO_FIVE, "sat": NINE_TO_FIVE, "sun": NINE_TO_FIVE},
        ),
        ("weekend 10:00-14:00", {"sat": [["10:00", "14:00"]], "sun": [["10:00", "14:00"]]}),
        ("sat, sun 10:00-14:00", {"sat": [["10:00", "14:00"]], "sun": [["10:00", "14:00"]]}),
        (
            "tue 13:00-17:00, 08:00-12:00",
            {"tue": [["08:00", "12:00"], ["13:00", "17:00"]]},
        ),
        (
            "tue 08:00-12:00\ntue 13:00-17:00; tue 08:00-12:00",
            {"tue": [["08:00", "12:00"], ["13:00", "17:00"]]},
        ),
        (
            "wed 18:00-24:00; thu 00:00-02:00",
            {"wed": [["18:00", "24:00"]], "thu": [["00:00", "02:00"]]},
        ),
        ("thu 09:00-17:00\nsun closed\n\n", {"thu": NINE_TO_FIVE}),
    ],
)
def test_text_is_read_into_the_stored_shape(text, stored):
    assert parse_hours_text(text) == stored
    validate_operating_hours(stored)  # what the text gives, the model accepts


@pytest.mark.parametrize(
    "text, message",
    [
        ("mon", 'start with the days, then the hours, like "mon-fri 09:00-17:00"'),
        ("funday 09:00-17:00", "'funday' is not a day"),
        ("mon-xyz 09:00-17:00", "'xyz' is not a day"),
        ("mon 9-17", "'9' is not a time"),
        ("mon 09:00-25:00", "'25:00' is not a time"),
        ("mon 09:00", "write each window as open-close"),
        ("mon 24:00-24:00", "cannot open at 24:00"),
        (
            "sat 22:00-02:00",
            "end the day at 24:00 and open the next day at 00:00, for example "
            '"sat 22:00-24:00" and "sun 00:00-02:00"',
        ),
        ("mon 09:00-17:00; mon closed", "mon is both open and closed"),
        ("sun closed", "No day is open"),
    ],
)
def test_unreadable_text_says_what_to_write(text, message):
    with pytest.raises(HoursSyntaxError) as caught:
        parse_hours_text(text)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    "stored, text, summary",
    [
        ({}, "", "always open"),
        (
            {day: NINE_TO_FIVE for day in ("mon", "tue", "wed", "thu", "fri")}
            | {"sat": [["10:00", "14:00"]]},
            "mon-fri 09:00-17:00\nsat 10:00-14:00",
            "Mon-Fri 09:00-17:00; Sat 10:00-14:00; closed Sun",
        ),
        (
            {"mon": NINE_TO_FIVE, "tue": NINE_TO_FIVE, "thu": NINE_TO_FIVE},
            "mon,tue 09:00-17:00\nthu 09:00-17:00",
            "Mon, Tue 09:00-17:00; Thu 09:00-17:00; closed Wed, Fri-Sun",
        ),
        ({"sun": [["00:00", "24:00"]]}, "sun 00:00-24:00", "Sun 00:00-24:00; closed Mon-Sat"),
    ],
)
def test_stored_hours_read_back_as_text_and_a_summary(stored, text, summary):
    assert hours_text(stored) == text
    assert parse_hours_text(text) == stored
    assert hours_summary(stored) == summary


def test_a_value_the_validator_would_refuse_is_shown_as_json_not_lost():
    odd = {"mon": "all day"}
    with pytest.raises(ValidationError):
        validate_operating_hours(odd)
    assert hours_text(odd) == '{"mon": "all day"}'
    assert hours_summary(odd) == '{"mon": "all day"}'
