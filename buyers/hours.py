"""Operating hours as people write them: ``mon-fri 08:00-20:00`` one line per set of days.

The stored form (and the API's) is the JSON object ``{"mon": [["08:00", "20:00"]], ...}``
checked by :func:`buyers.validators.validate_operating_hours`. The pages show and take this
text instead:

    mon-fri 08:00-12:00, 13:00-20:00
    sat 10:00-14:00

- Each line names days (``mon``, ``mon-fri``, ``fri-mon`` wraps round the week, ``sat,sun``,
  ``weekdays``, ``weekend``, ``daily``) and then one or more ``HH:MM-HH:MM`` windows, or
  ``closed``. Lines may also be separated by ``;``. A day no line names is closed; an empty
  text means always open.
- ``9:00`` is read as ``09:00``; ``24:00`` closes at midnight. A window that runs past midnight
  is refused with the two windows to write instead (the day's rule is [open, close)).
- A day named twice takes the windows of both lines, so ``mon 08:00-12:00`` and
  ``mon 13:00-17:00`` on separate lines mean what they say.

:func:`hours_text` writes the canonical text back, days with the same windows grouped into
ranges, so an edit page shows what was typed (or what the API stored) in the same words.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from buyers.validators import WEEKDAYS, parse_hhmm

_DAY_NAMES = {
    **{day: (day,) for day in WEEKDAYS},
    # Full names and the usual three-letter spellings people type.
    **{
        name: (day,)
        for day, name in zip(
            WEEKDAYS,
            ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday"),
            strict=True,
        )
    },
    "tues": ("tue",),
    "thur": ("thu",),
    "thurs": ("thu",),
    "weekdays": WEEKDAYS[:5],
    "weekend": WEEKDAYS[5:],
    "weekends": WEEKDAYS[5:],
    "daily": WEEKDAYS,
    "everyday": WEEKDAYS,
}
_TIME = re.compile(r"^(\d{1,2}):(\d{2})$")
_LINE_SPLIT = re.compile(r"[\n;]+")


class HoursSyntaxError(ValueError):
    """The text could not be read; each of :attr:`problems` names a line and what to write.

    Every bad line is reported, not only the first, so one save shows everything to fix.
    """

    def __init__(self, *problems: str) -> None:
        super().__init__(" ".join(problems))
        self.problems = list(problems)


def parse_hours_text(text: str) -> dict[str, list[list[str]]]:
    """Read operating-hours text into the stored JSON shape; raises :class:`HoursSyntaxError`.

    Only the syntax is checked here (days, ``HH:MM`` times, open before close); the stored
    value is validated again by the model like any other (overlapping windows, for one).
    """
    hours: dict[str, list[list[str]]] = {}
    closed: set[str] = set()
    problems: list[str] = []
    lines = [line.strip() for line in _LINE_SPLIT.split(text or "")]
    for line in filter(None, lines):
        try:
            days, windows = _line(line)
        except HoursSyntaxError as exc:
            problems.extend(exc.problems)
            continue
        if windows is None:
            closed.update(days)
        for day in days if windows is not None else ():
            hours.setdefault(day, []).extend(windows or [])
    both = sorted(closed & hours.keys(), key=WEEKDAYS.index)
    if both:
        problems.append(f"{', '.join(both)} is both open and closed; keep one of them.")
    if problems:
        raise HoursSyntaxError(*problems)
    if not hours and closed:
        # Only "closed" lines: never open, which the stored form cannot say (empty is
        # always open), and which pausing the buyer says better.
        raise HoursSyntaxError(
            "No day is open, so no call could ever be sent. Leave the box empty for always "
            "open, or pause the buyer."
        )
    # The same window typed twice is kept once.
    return {
        day: sorted(map(list, {tuple(w) for w in hours[day]})) for day in WEEKDAYS if day in hours
    }


def _line(line: str) -> tuple[tuple[str, ...], list[list[str]] | None]:
    """The days one line names and its windows (``None`` for ``closed``); raises
    :class:`HoursSyntaxError` with every problem of the line."""
    days, rest = _split_days(line)
    if rest.lower() == "closed":
        return days, None
    windows: list[list[str]] = []
    problems: list[str] = []
    for part in filter(None, (part.strip() for part in rest.split(","))):
        try:
            windows.append(_window(part, line, days))
        except HoursSyntaxError as exc:
            problems.extend(exc.problems)
    if problems:
        raise HoursSyntaxError(*problems)
    if not windows:
        raise HoursSyntaxError(
            f'"{line}": add the hours after the days, like "mon-fri 09:00-17:00", '
            'or write "closed".'
        )
    return days, windows


def _split_days(line: str) -> tuple[tuple[str, ...], str]:
    """The days a line names and the rest of it (its windows)."""
    match = re.match(r"^([A-Za-z][A-Za-z,\s\-]*?)[\s:]+(?=\d|closed\b)(.*)$", line, re.IGNORECASE)
    if match is None:
        raise HoursSyntaxError(
            f'"{line}": start with the days, then the hours, like "mon-fri 09:00-17:00".'
        )
    spec, rest = match.group(1), match.group(2).strip()
    days: list[str] = []
    for part in re.split(r"[,\s]+", spec.strip().lower()):
        if not part:
            continue
        if "-" in part:
            first, _, last = part.partition("-")
            start, end = _one_day(first, line), _one_day(last, line)
            i, j = WEEKDAYS.index(start), WEEKDAYS.index(end)
            span = range(i, j + 1) if i <= j else [*range(i, 7), *range(0, j + 1)]
            days.extend(WEEKDAYS[k] for k in span)
        else:
            days.extend(_DAY_NAMES.get(part) or (_one_day(part, line),))
    return tuple(dict.fromkeys(days)), rest


def _one_day(name: str, line: str) -> str:
    found = _DAY_NAMES.get(name.strip())
    if found is None or len(found) != 1:
        raise HoursSyntaxError(
            f'"{line}": {name.strip() or "(nothing)"!r} is not a day; use mon, tue, wed, thu, '
            "fri, sat, sun, a range like mon-fri, weekdays, weekend or daily."
        )
    return found[0]


def _window(part: str, line: str, days: Sequence[str]) -> list[str]:
    opens_text, sep, closes_text = part.partition("-")
    if not sep:
        raise HoursSyntaxError(
            f'"{line}": write each window as open-close, like 09:00-17:00 (not "{part}").'
        )
    opens, closes = _time(opens_text.strip(), line), _time(closes_text.strip(), line)
    if opens == "24:00":
        raise HoursSyntaxError(f'"{line}": a window cannot open at 24:00; use 00:00.')
    if closes != "24:00" and closes <= opens:
        day = days[0]
        following = WEEKDAYS[(WEEKDAYS.index(day) + 1) % 7]
        raise HoursSyntaxError(
            f'"{line}": {opens}-{closes} closes before it opens. For hours past midnight, '
            f"end the day at 24:00 and open the next day at 00:00, for example "
            f'"{day} {opens}-24:00" and "{following} 00:00-{closes}".'
        )
    return [opens, closes]


def _time(text: str, line: str) -> str:
    match = _TIME.match(text)
    hour, minute = (int(match.group(1)), int(match.group(2))) if match else (-1, -1)
    if not (0 <= hour <= 23 and 0 <= minute <= 59) and (hour, minute) != (24, 0):
        raise HoursSyntaxError(f'"{line}": {text!r} is not a time; use HH:MM from 00:00 to 24:00.')
    return f"{hour:02d}:{minute:02d}"


def hours_text(hours: Mapping[str, Any] | None) -> str:
    """The stored hours as text :func:`parse_hours_text` reads back; ``""`` for always open.

    Consecutive days with the same windows share a line (``mon-fri 08:00-20:00``). A value the
    validator would refuse is shown as JSON, which the form reads back as it is.
    """
    if not hours:
        return ""
    groups = _same_window_runs(hours)
    if groups is None:
        return json.dumps(hours)
    return "\n".join(f"{_days_label(days)} {_windows_label(windows)}" for days, windows in groups)


def hours_summary(hours: Mapping[str, Any] | None) -> str:
    """One line for a settings page: ``Mon-Fri 08:00-20:00; Sat 10:00-14:00; closed Sun``."""
    if not hours:
        return "always open"
    groups = _same_window_runs(hours)
    if groups is None:
        return json.dumps(hours)
    parts = [f"{_days_title(days)} {_windows_label(windows)}" for days, windows in groups]
    closed = [day for day in WEEKDAYS if not hours.get(day)]
    if closed:
        parts.append(f"closed {_days_title(closed)}")
    return "; ".join(parts)


def _same_window_runs(
    hours: Mapping[str, Any],
) -> list[tuple[list[str], list[Sequence[str]]]] | None:
    """Runs of consecutive open days with equal windows, in week order; None if malformed."""
    runs: list[tuple[list[str], list[Sequence[str]]]] = []
    if not isinstance(hours, Mapping) or any(day not in WEEKDAYS for day in hours):
        return None
    previous = None
    for day in WEEKDAYS:
        windows = hours.get(day)
        if not windows:
            previous = None
            continue
        if not isinstance(windows, list) or not all(
            isinstance(w, list | tuple) and len(w) == 2 and all(isinstance(t, str) for t in w)
            for w in windows
        ):
            return None
        key: list[Sequence[str]] = [list(w) for w in windows]
        if previous is not None and runs and runs[-1][1] == key:
            runs[-1][0].append(day)
        else:
            runs.append(([day], key))
        previous = day
    return runs


def _days_label(days: Sequence[str]) -> str:
    """``mon-fri`` for a run of three or more, ``sat,sun`` for two, ``mon`` for one; runs
    from :func:`_same_window_runs` are consecutive, the closed days may not be."""
    indexes = [WEEKDAYS.index(day) for day in days]
    pieces: list[str] = []
    start = prev = indexes[0]
    for index in [*indexes[1:], None]:
        if index is not None and index == prev + 1:
            prev = index
            continue
        if prev - start >= 2:
            pieces.append(f"{WEEKDAYS[start]}-{WEEKDAYS[prev]}")
        else:
            pieces.extend(WEEKDAYS[k] for k in range(start, prev + 1))
        if index is not None:
            start = prev = index
    return ",".join(pieces)


def _days_title(days: Sequence[str]) -> str:
    return _days_label(days).title().replace(",", ", ")


def _windows_label(windows: Sequence[Sequence[str]]) -> str:
    return ", ".join(f"{opens}-{closes}" for opens, closes in windows)


# --- open or closed at an instant ------------------------------------------------------------


def _windows(hours: dict, day: date) -> list[tuple[time, time | None]]:
    pairs = hours.get(WEEKDAYS[day.weekday()], [])
    return sorted((parse_hhmm(opens), parse_hhmm(closes)) for opens, closes in pairs)  # type: ignore[misc]


def hours_open(*, hours: dict, tz: ZoneInfo, now: datetime) -> bool:
    """Whether ``now`` falls inside one of the [open, close) windows of the buyer's weekday.

    Empty ``hours`` is always open; a weekday left out is closed all day. The weekday and time
    are the buyer's own, so a Monday window in Los Angeles is still open at 03:00 UTC Tuesday.
    """
    if not hours:
        return True
    local = now.astimezone(tz)
    clock = local.time().replace(tzinfo=None)
    return any(
        opens <= clock and (closes is None or clock < closes)
        for opens, closes in _windows(hours, local.date())
    )


def hours_next_open(*, hours: dict, tz: ZoneInfo, now: datetime) -> datetime | None:
    """The next instant (UTC) a window opens after ``now``; ``None`` when none ever does."""
    local_day = now.astimezone(tz).date()
    for offset in range(8):
        day = local_day + timedelta(days=offset)
        for opens, _closes in _windows(hours, day):
            # A wall time skipped by a spring-forward change resolves to the same instant as
            # the hour after it, which is when the buyer's clock reaches the window anyway.
            start = datetime.combine(day, opens, tzinfo=tz).astimezone(UTC)
            if start > now:
                return start
    return None
