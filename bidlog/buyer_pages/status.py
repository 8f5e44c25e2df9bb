"""What the buyer pages say about a status change: the button, its effect, the question.

Pausing and disabling stop a buyer's calls, so the pages ask before they do it; the same
question is shown in the dialog (``confirm.js``) and on the confirm page that works without
JavaScript.
"""

from __future__ import annotations

from buyers.choices import BuyerStatus

# The buttons that change a status: what each says.
STATUS_ACTIONS: dict[str, str] = {
    BuyerStatus.ACTIVE: "Activate",
    BuyerStatus.PAUSED: "Pause",
    BuyerStatus.DISABLED: "Disable",
}
# What each status change does to the buyer's calls.
STATUS_EFFECTS: dict[str, str] = {
    BuyerStatus.ACTIVE: "will be offered calls again",
    BuyerStatus.PAUSED: "will get no calls until someone activates it again",
    BuyerStatus.DISABLED: "will get no calls and stays off until someone activates it again",
}
# The changes that stop calls, and so ask for confirmation first.
CONFIRMED_STATUSES = frozenset({BuyerStatus.PAUSED, BuyerStatus.DISABLED})


def status_question(names: list[str], status: str) -> str:
    """The question a status change asks, naming the buyers and what happens to their calls."""
    who = names[0] if len(names) == 1 else f"{len(names)} buyers"
    if len(names) == 1:
        return f"{STATUS_ACTIONS[status]} {who}? It {STATUS_EFFECTS[status]}."
    return f"{STATUS_ACTIONS[status]} {who}? They {STATUS_EFFECTS[status].replace('it ', 'them ')}."
