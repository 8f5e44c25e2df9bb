"""The error-code catalog: complete, ranked as the reference says, and in step with the client."""

from dataclasses import fields

import pytest

from callgrid_portal.bidapi import codes
from callgrid_portal.bidapi.answers import CODE_OUTCOMES
from callgrid_portal.bidapi.client import RETRIED_OUTCOMES
from callgrid_portal.bidapi.codes import CATALOG, ErrorCode, Priority
from callgrid_portal.bidapi.outcomes import Outcome

ALL_CODES = {1000, 2000, 3000, 4000, 5000, 4001, 4002, 4003, 4004, 4005, 4006, 5001}


def test_catalog_holds_exactly_the_twelve_documented_codes():
    assert set(CATALOG) == ALL_CODES
    assert all(entry.code == code for code, entry in CATALOG.items())


@pytest.mark.parametrize(
    ("code", "priority"),
    [
        (4001, Priority.IMMEDIATE),
        (4006, Priority.IMMEDIATE),
        (4002, Priority.REVIEW),
        (4004, Priority.REVIEW),
        (4005, Priority.NORMAL),
        (5001, Priority.NORMAL),
        (4003, Priority.VALIDATION),
        (1000, Priority.INFO),
        (2000, Priority.INFO),
        (3000, Priority.INFO),
        (4000, Priority.ACTION),
        (5000, Priority.ACTION),
    ],
)
def test_catalog_ranks_each_code_as_the_reference_does(code, priority):
    assert CATALOG[code].priority == priority


@pytest.mark.parametrize("code", sorted(ALL_CODES))
def test_catalog_entry_has_every_field_filled_in(code):
    entry = CATALOG[code]
    for field in fields(ErrorCode):
        value = getattr(entry, field.name)
        assert value not in ("", (), None), f"{code}.{field.name} is empty"
    assert all(isinstance(text, str) and text.strip() for text in entry.causes + entry.fixes)
    assert entry.priority in Priority.values
    # Fixes are shown as a numbered list: at least two steps make it a list worth numbering.
    assert len(entry.fixes) >= 2


def test_catalog_prose_is_written_as_sentences():
    for entry in CATALOG.values():
        for text in (entry.meaning, entry.contact_support, *entry.causes, *entry.fixes):
            assert text[0].isupper(), text
            assert text.endswith("."), text


def test_catalog_outcomes_match_the_client():
    for code, entry in CATALOG.items():
        assert entry.outcome in Outcome.values
        assert entry.outcome == CODE_OUTCOMES[code]


def test_catalog_marks_retried_exactly_the_codes_the_client_retries():
    retried = {code for code, entry in CATALOG.items() if entry.retry}
    client_retries = {c for c, outcome in CODE_OUTCOMES.items() if outcome in RETRIED_OUTCOMES}
    assert retried == client_retries
    assert retried == {5000, 5001}


def test_rate_limit_is_the_only_code_answered_with_http_429():
    assert {code for code, entry in CATALOG.items() if entry.http_status != 200} == {5001}
    assert CATALOG[5001].http_status == 429


def test_catalog_quotes_callgrid_short_messages():
    assert CATALOG[4002].callgrid_message == "Campaign is Paused"
    assert CATALOG[4005].callgrid_message == "Duplicate. CallerId already paid out."
    assert CATALOG[4006].callgrid_message == "No phone numbers available for PSTN."


@pytest.mark.parametrize(("raw", "expected"), [(4001, 4001), ("5001", 5001), (" 1000 ", 1000)])
def test_get_finds_a_code_given_as_int_or_digits(raw, expected):
    entry = codes.get(raw)
    assert entry is not None
    assert entry.code == expected


@pytest.mark.parametrize("raw", [7777, "abc", "", None, True, "४००१", "-4001", 4001.0])
def test_get_returns_none_for_anything_undocumented(raw):
    assert codes.get(raw) is None


def test_entries_are_frozen():
    with pytest.raises(AttributeError):
        CATALOG[4001].title = "changed"  # type: ignore[misc]


def test_support_request_lists_what_callgrid_asks_for():
    keys = [item.key for item in codes.support_request_fields()]
    assert keys == ["code", "timestamp", "request", "campaign", "frequency", "impact"]
    for item in codes.support_request_fields():
        assert item.label and item.description.endswith(".")
    timestamp = next(i for i in codes.support_request_fields() if i.key == "timestamp")
    assert "time zone" in timestamp.description


def test_by_priority_puts_immediate_codes_first_and_info_last():
    ordered = codes.by_priority()
    assert [e.code for e in ordered[:2]] == [4001, 4006]
    assert {e.code for e in ordered[-3:]} == {1000, 2000, 3000}
    assert len(ordered) == len(CATALOG)
