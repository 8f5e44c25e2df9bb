"""Caller-ID normalization and NANP validation.

The Bid API guide recommends 10 digits ("3035551234", not "(303) 555-1234"); the error-code
reference answers 4003 to numbers with formatting or a bad area code. We normalize before
sending so a formatting slip never costs a bid, and refuse what cannot be a NANP number.
"""

import re
from dataclasses import dataclass

from callgrid_portal.text import ascii_digits

_FORMATTING = re.compile(r"[\s\-.()]")


class InvalidCallerId(ValueError):
    """The caller ID is not a valid NANP number; ``reason`` says why in plain words."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    @property
    def message(self) -> str:
        """The one wording of a refused caller ID: pages, forms, API answers and route errors.

        It names the Bid API's code for it (4003), so the guidance for that code applies.
        """
        return f"Invalid caller ID (4003): {self.reason}."


@dataclass(frozen=True)
class CallerId:
    """A validated NANP number, kept as its 10 national digits."""

    digits: str

    @property
    def ten_digit(self) -> str:
        return self.digits

    @property
    def e164(self) -> str:
        return "+1" + self.digits

    def formatted(self, caller_id_format: str) -> str:
        """The number as the buyer wants it: ``10-digit`` or ``e164``."""
        return self.e164 if caller_id_format == "e164" else self.digits

    def __str__(self) -> str:
        return self.digits


def normalize_caller_id(raw: object) -> CallerId:
    """Normalize ``raw`` to a NANP number or raise :class:`InvalidCallerId`.

    Accepts 10 digits, 11 digits starting with 1, or ``+1`` followed by 10 digits, with
    spaces, dashes, dots and parentheses anywhere. Area code and exchange must start 2-9.
    """
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        raise InvalidCallerId("caller ID is missing")
    if not isinstance(raw, str | int) or isinstance(raw, bool):
        raise InvalidCallerId("caller ID must be a string of digits")
    if isinstance(raw, int) and raw < 0:
        # str(-3035551234) starts with a dash, which the formatting filter would drop.
        raise InvalidCallerId("caller ID cannot be a negative number")
    text = _FORMATTING.sub("", str(raw).strip())
    plus = text.startswith("+")
    if plus:
        text = text[1:]
    if not ascii_digits(text):
        raise InvalidCallerId("caller ID may contain only digits, spaces, dashes, dots, () and +")
    if plus and not text.startswith("1"):
        raise InvalidCallerId("only North American numbers (+1) are accepted")
    if len(text) == 11:
        if not text.startswith("1"):
            raise InvalidCallerId("an 11-digit caller ID must start with country code 1")
        text = text[1:]
    elif plus:
        # "+1" must be followed by exactly 10 national digits.
        raise InvalidCallerId(f"+1 must be followed by 10 digits, got {len(text) - 1}")
    elif len(text) != 10:
        raise InvalidCallerId(f"caller ID must have 10 digits (or 1 + 10 digits), got {len(text)}")
    if text[0] in "01":
        raise InvalidCallerId(f"area code {text[:3]} is not valid: it must start with 2-9")
    if text[3] in "01":
        raise InvalidCallerId(f"exchange {text[3:6]} is not valid: it must start with 2-9")
    return CallerId(text)
