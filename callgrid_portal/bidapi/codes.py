"""The error-code catalog: every CallGrid answer code, explained for the people on call.

One entry per code of the two seed documents: the five Bid API responses (1000, 2000, 3000,
4000, 5000; seeds/callgrid-bid-api.txt, "Response Codes") and the seven codes of the error-code
reference (4001-4006, 5001; seeds/callgrid-error-codes.txt). The prose is ours; only CallGrid's
short messages are quoted, because that is what a buyer's answer actually carries.

The catalog is plain data with no database, so the client, the reports, the pages, the API and
the alert rules all read the same words from here.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import models

from callgrid_portal.bidapi.outcomes import Outcome
from callgrid_portal.text import ascii_digits


class Priority(models.TextChoices):
    """How urgently a code needs a person (error-code reference, "Error Resolution Priority").

    The reference ranks only 4001-4006 and 5001; ``info`` and ``action`` rank the five Bid API
    responses, which need nobody (1000-3000) or a look at the request or the buyer (4000, 5000).
    """

    IMMEDIATE = "immediate", "Immediate action"
    REVIEW = "review", "Review and adjust"
    ACTION = "action", "Action needed"
    VALIDATION = "validation", "Data validation"
    NORMAL = "normal", "Normal operations"
    INFO = "info", "Information"


# Most urgent first; lists and reports sort by this.
PRIORITY_ORDER: tuple[str, ...] = (
    Priority.IMMEDIATE,
    Priority.REVIEW,
    Priority.ACTION,
    Priority.VALIDATION,
    Priority.NORMAL,
    Priority.INFO,
)


@dataclass(frozen=True)
class ErrorCode:
    """One CallGrid answer code and what to do about it.

    ``outcome`` is the :class:`~callgrid_portal.bidapi.outcomes.Outcome` the client records
    for the code (1000 only when the bid is also acceptable); ``retry`` says whether the
    client tries again by itself.
    """

    code: int
    http_status: int
    callgrid_message: str
    title: str
    meaning: str
    causes: tuple[str, ...]
    fixes: tuple[str, ...]
    priority: str
    contact_support: str
    outcome: str
    retry: bool

    @property
    def priority_label(self) -> str:
        return str(Priority(self.priority).label)

    @property
    def is_error(self) -> bool:
        """Codes 4000 and up report a problem; 1000-3000 are ordinary answers."""
        return self.code >= 4000


@dataclass(frozen=True)
class SupportField:
    """One item a support request to CallGrid should carry."""

    key: str
    label: str
    description: str


_SUPPORT_FIELDS: tuple[SupportField, ...] = (
    SupportField(
        "code",
        "Error code",
        "The four-digit code CallGrid answered, with its message as received.",
    ),
    SupportField(
        "timestamp",
        "When it happened",
        "Date and time of the failing bid, with the time zone spelled out (UTC is safest).",
    ),
    SupportField(
        "request",
        "Endpoint and payload",
        "The full URL the bid went to and the exact JSON body that was sent.",
    ),
    SupportField(
        "campaign",
        "Grid and configuration",
        "The Grid ID and the campaign settings that matter here: status, hours, caps, "
        "targeting and duplicate window.",
    ),
    SupportField(
        "frequency",
        "How often",
        "How many times the code came back, for example over the last 24 hours and 7 days, "
        "and since when.",
    ),
    SupportField(
        "impact",
        "Business impact",
        "What it costs: calls or revenue lost, and how urgent a fix is.",
    ),
)


def support_request_fields() -> tuple[SupportField, ...]:
    """What a support request must include so CallGrid can act on the first reading.

    The list follows the error-code reference's "What to Include in Support Requests"; the
    bid page fills each item in from the bid log.
    """
    return _SUPPORT_FIELDS


_ENTRIES: tuple[ErrorCode, ...] = (
    # --- Bid API responses (seeds/callgrid-bid-api.txt, "Response Codes") -----------------
    ErrorCode(
        code=1000,
        http_status=200,
        callgrid_message="Bid accepted",
        title="Bid accepted",
        meaning=(
            "The buyer wants the call. The answer names a price in USD and the number the "
            "call should be sent to."
        ),
        causes=("The call matched the buyer's targeting and the buyer had room for it.",),
        fixes=(
            "Send the call to the destination number from the answer.",
            "Check the offer against the buyer's minimum bid: the portal records a lower "
            "offer as below_min_bid and keeps looking for another buyer.",
            "If an accepted answer arrives without a destination, treat it as broken and "
            "tell the buyer; there is nowhere to route the call.",
        ),
        priority=Priority.INFO,
        contact_support="Not needed: this is the answer we hope for.",
        outcome=Outcome.ACCEPTED,
        retry=False,
    ),
    ErrorCode(
        code=2000,
        http_status=200,
        callgrid_message="Bid declined",
        title="Bid declined",
        meaning="The buyer looked at this call and chose not to buy it.",
        causes=(
            "The caller's state, the call type or its quality is outside what the buyer is buying.",
            "The buyer changed its acceptance criteria without telling us.",
        ),
        fixes=(
            "Nothing for this call: the router moves on to the next buyer.",
            "If a buyer turns down almost everything, ask which states, verticals and "
            "quality scores it takes.",
            "Narrow the buyer's accepted states or adjust its extra parameters so it only "
            "receives calls it wants.",
        ),
        priority=Priority.INFO,
        contact_support=(
            "Talk to the buyer rather than CallGrid when declines persist: the criteria are theirs."
        ),
        outcome=Outcome.DECLINED,
        retry=False,
    ),
    ErrorCode(
        code=3000,
        http_status=200,
        callgrid_message="No capacity available",
        title="No capacity",
        meaning=(
            "The buyer would take a call like this but cannot handle one right now, "
            "usually because nobody is free to answer."
        ),
        causes=(
            "Every agent or destination of the buyer is busy.",
            "The buyer is near the end of its day or close to a volume limit.",
        ),
        fixes=(
            "Nothing for this call: the router tries the next buyer.",
            "The portal rests this buyer for its capacity cooldown so the following calls "
            "do not queue up behind a full buyer.",
            "If it happens at the same hours every day, set the buyer's operating hours "
            "to match when it can really take calls.",
        ),
        priority=Priority.INFO,
        contact_support="Ask the buyer about staffing if it lasts for hours; CallGrid cannot help.",
        outcome=Outcome.NO_CAPACITY,
        retry=False,
    ),
    ErrorCode(
        code=4000,
        http_status=200,
        callgrid_message="Invalid request",
        title="Invalid request",
        meaning=(
            "The bid request could not be read: a required field is missing or is not in "
            "the expected form."
        ),
        causes=(
            "The CallerId field is missing from the body.",
            "The caller ID carries formatting such as parentheses or dashes.",
            "The body is not a JSON object, or a static parameter has the wrong type.",
        ),
        fixes=(
            "Open the bid in the log and read the exact JSON that was sent.",
            "Make sure CallerId is there as plain digits (ten digits by default).",
            "Review the buyer's extra parameters and remove any the buyer does not expect.",
            "Send a test bid from the buyer's page to confirm the fix.",
        ),
        priority=Priority.ACTION,
        contact_support=(
            "When the logged payload looks correct and 4000 keeps coming back, send CallGrid "
            "the request exactly as logged."
        ),
        outcome=Outcome.INVALID_REQUEST,
        retry=False,
    ),
    ErrorCode(
        code=5000,
        http_status=200,
        callgrid_message="System error",
        title="System error",
        meaning=(
            "Something broke on the buyer's side while it was deciding; the answer says "
            "nothing about the call itself."
        ),
        causes=(
            "The buyer's system is down or overloaded.",
            "A network problem between CallGrid and the buyer.",
            "The buyer took too long and gave up.",
        ),
        fixes=(
            "The portal retries up to twice with a growing pause, within the call's deadline.",
            "If the retries fail too, the router falls back to the next buyer.",
            "When it keeps happening, check the buyer's status with them and consider "
            "pausing the buyer until it recovers.",
        ),
        priority=Priority.ACTION,
        contact_support=(
            "If errors continue for more than a few minutes, report the times and the Grid "
            "ID to CallGrid support."
        ),
        outcome=Outcome.SYSTEM_ERROR,
        retry=True,
    ),
    # --- error-code reference (seeds/callgrid-error-codes.txt) --------------------------
    ErrorCode(
        code=4001,
        http_status=200,
        callgrid_message="Disabled",
        title="Disabled campaign",
        meaning=(
            "The campaign behind this grid is switched off. CallGrid will refuse every call "
            "for it until someone turns it back on."
        ),
        causes=(
            "The organization ID is wrong or no longer active.",
            "The campaign (LCB) ID does not exist or was deactivated.",
            "The account is suspended, often over billing.",
        ),
        fixes=(
            "Compare the organization ID with the one shown in the CallGrid dashboard.",
            "Confirm the campaign ID is right and that the campaign is live.",
            "Ask your account manager to reactivate the campaign.",
            "Look for unpaid invoices or other holds on the account.",
        ),
        priority=Priority.IMMEDIATE,
        contact_support=(
            "Right away when it repeats: several 4001s in a row mean every call sent to this "
            "grid is lost."
        ),
        outcome=Outcome.DISABLED,
        retry=False,
    ),
    ErrorCode(
        code=4002,
        http_status=200,
        callgrid_message="Campaign is Paused",
        title="Paused campaign",
        meaning=(
            "The campaign's owner has put it on hold. Unlike a disabled campaign this is "
            "meant to be temporary, and resuming it takes one click."
        ),
        causes=(
            "Someone paused the campaign by hand.",
            "A schedule pauses it, for example outside business hours.",
        ),
        fixes=(
            "In the CallGrid dashboard, open Campaigns, find this one and resume it.",
            "Without dashboard access, ask CallGrid support to resume it for you.",
            "If the pause is scheduled, set the buyer's operating hours to match so the "
            "portal stops sending bids while it is paused.",
        ),
        priority=Priority.REVIEW,
        contact_support="Only when you cannot reach the dashboard; otherwise resume it yourself.",
        outcome=Outcome.PAUSED,
        retry=False,
    ),
    ErrorCode(
        code=4003,
        http_status=200,
        callgrid_message="Invalid caller ID",
        title="Invalid caller ID",
        meaning=(
            "CallGrid did not accept the caller's number. The check keeps spam and "
            "poor-quality calls out of campaigns."
        ),
        causes=(
            "The number still contains spaces, dashes, dots or parentheses.",
            "The country code is missing where the buyer expects +1.",
            "The area code or exchange cannot exist (it starts with 0 or 1).",
            "The number is on a block list.",
        ),
        fixes=(
            "Read the caller ID in the bid log: the portal sends digits only and refuses "
            "impossible numbers before sending.",
            "If the buyer wants a country code, set its caller ID format to E.164 (+1...).",
            "Check the area code against the North American numbering plan.",
            "Ask whether the number is blocked if it is well formed and still refused.",
        ),
        priority=Priority.VALIDATION,
        contact_support=(
            "Rarely: fix the data first, and ask support only when a clean, valid number "
            "keeps being refused."
        ),
        outcome=Outcome.INVALID_CALLER_ID,
        retry=False,
    ),
    ErrorCode(
        code=4004,
        http_status=200,
        callgrid_message="Capacity check failed",
        title="Capacity check failed",
        meaning=(
            "One of the campaign's capacity or targeting rules turned the call away. The "
            "code covers several different rules, so the fix depends on which one fired."
        ),
        causes=(
            "The campaign is closed: the call came outside its operating hours.",
            "A daily or monthly volume cap has been reached.",
            "A tag rule failed: the call data does not match the targeting.",
            "The buyer has no free agent or destination.",
        ),
        fixes=(
            "Compare the campaign's schedule with the buyer's operating hours in the portal.",
            "Check the caps in the CallGrid dashboard and mirror them in the buyer's daily "
            "and monthly caps, so the portal stops before CallGrid has to refuse.",
            "Audit the tag rules against the parameters the portal sends.",
            "Check that the buyer's destinations can take calls.",
            "Contact support if all of the above look right.",
        ),
        priority=Priority.REVIEW,
        contact_support=(
            "When hours, caps and tag rules all check out and 4004 keeps arriving anyway."
        ),
        outcome=Outcome.CAPACITY_CHECK_FAILED,
        retry=False,
    ),
    ErrorCode(
        code=4005,
        http_status=200,
        callgrid_message="Duplicate. CallerId already paid out.",
        title="Duplicate call",
        meaning=(
            "This caller was already bought and paid for inside the campaign's duplicate "
            "window, and CallGrid will not charge for the same caller twice."
        ),
        causes=(
            "The same person called again within the window (insurance 30-90 days, home "
            "services 7-14, financial 90-180, solar 60-90).",
            "Another source already sold this caller to the same campaign.",
            "The campaign's window is longer than the one set for the buyer here.",
        ),
        fixes=(
            "Usually nothing: the protection is doing its job.",
            "Set the buyer's duplicate window to the campaign's, so the portal skips the "
            "caller itself instead of spending a request.",
            "Look up the earlier call in the calls list to confirm it really was paid out.",
            "If you think CallGrid is wrong, send support the caller ID and both timestamps.",
        ),
        priority=Priority.NORMAL,
        contact_support=(
            "Only when you are sure the earlier call was never paid out; include the caller "
            "ID and the time of each call."
        ),
        outcome=Outcome.DUPLICATE,
        retry=False,
    ),
    ErrorCode(
        code=4006,
        http_status=200,
        callgrid_message="No phone numbers available for PSTN.",
        title="No available numbers",
        meaning=(
            "The campaign has run out of phone numbers for routing calls over the public "
            "telephone network, so CallGrid has nowhere to put the call."
        ),
        causes=(
            "A spike in volume used up the number pool.",
            "The pool was sized for less traffic than the campaign now gets.",
        ),
        fixes=(
            "Ask CallGrid support for more numbers now.",
            "Compare the pool's size with the volume you expect at peak.",
            "Track the busiest hours so the pool can be grown before the next shortage.",
            "For high-volume campaigns, move to a larger pool.",
        ),
        priority=Priority.IMMEDIATE,
        contact_support="At once: only CallGrid can add numbers to the pool.",
        outcome=Outcome.NO_NUMBERS,
        retry=False,
    ),
    ErrorCode(
        code=5001,
        http_status=429,
        callgrid_message="Rate limit exceeded",
        title="Rate limit exceeded",
        meaning=(
            "Too many requests reached CallGrid in a short time, and it is shedding load to "
            "stay stable and share capacity fairly."
        ),
        causes=(
            "Traffic above the account's allowance: about 100 requests a minute on a "
            "standard account, 500 or more on enterprise, with short bursts up to twice that.",
            "Retries sent immediately instead of after a pause.",
            "Health checks scheduled more often than needed.",
        ),
        fixes=(
            "The portal already waits (honouring Retry-After) and retries at most twice.",
            "Set the buyer's rate limit per minute to the account's allowance so the portal "
            "holds back before CallGrid has to.",
            "Space out health checks for this buyer.",
            "Ask CallGrid for a higher limit if your real volume needs it.",
        ),
        priority=Priority.NORMAL,
        contact_support=(
            "When 5001s arrive although traffic stays under the agreed limit, or to ask for "
            "a higher limit."
        ),
        outcome=Outcome.RATE_LIMITED,
        retry=True,
    ),
)

CATALOG: dict[int, ErrorCode] = {entry.code: entry for entry in _ENTRIES}


def get(code: int | str | None) -> ErrorCode | None:
    """Return the catalog entry for ``code``, or ``None`` for a code CallGrid never documented.

    Accepts the code as an integer or a string of digits, since answers and URLs carry both.
    """
    if isinstance(code, bool) or code is None:
        return None
    if isinstance(code, str):
        code = code.strip()
        if not ascii_digits(code):
            return None
        code = int(code)
    if not isinstance(code, int):
        return None
    return CATALOG.get(code)


def by_priority() -> list[ErrorCode]:
    """Every entry, most urgent priority first, then by code."""
    return sorted(CATALOG.values(), key=lambda e: (PRIORITY_ORDER.index(e.priority), e.code))
