"""What people do with alerts: acknowledge one, mute a buyer's for a while, count what is open.

An acknowledged alert stays open until its rule sees the buyer recover; it records who took
it and when. A mute silences a buyer's notices (email and webhook) until a time; its alerts
still open, count and show, marked muted. The header of every page shows the number of open
``immediate`` alerts nobody has acknowledged or muted, cached for a few seconds and forgotten
whenever one of those changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from bidlog.choices import AlertStatus
from bidlog.models import Alert, AlertMute
from buyers.models import Buyer
from callgrid_portal.bidapi.codes import Priority

# The choices a page offers, in minutes; "custom" takes a time instead.
MUTE_CHOICES: dict[str, int] = {"1h": 60, "4h": 240, "24h": 1440}
# The longest mute anyone may set: a forgotten mute must not silence a buyer for good.
MUTE_MAX = timedelta(days=30)
MUTE_MAX_MINUTES = int(MUTE_MAX.total_seconds()) // 60

OPEN_IMMEDIATE_KEY = "alerts:open-immediate"
# Long enough that a busy page costs one COUNT every few seconds, short enough that nobody
# waits on it: every change to alerts or mutes forgets it at once anyway.
OPEN_IMMEDIATE_SECONDS = 10


class TriageError(Exception):
    """An action on an alert that cannot be done; ``field`` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class MuteSpan:
    """How long a mute lasts: a page's choice, a number of minutes, or a time."""

    until: datetime


def mute_span(
    *, minutes: int | None = None, until: datetime | None = None, now: datetime | None = None
) -> MuteSpan:
    """Check a mute's length (1 minute to :data:`MUTE_MAX`) and say when it ends."""
    moment = now or timezone.now()
    if minutes is not None:
        if not 1 <= minutes <= MUTE_MAX_MINUTES:
            raise TriageError(
                f"A mute lasts 1 to {MUTE_MAX_MINUTES} minutes (30 days), not {minutes}.",
                field="minutes",
            )
        return MuteSpan(until=moment + timedelta(minutes=minutes))
    if until is None:
        raise TriageError("Say how long to mute: a duration or an end time.", field="until")
    if until <= moment:
        raise TriageError("The end of a mute must be in the future.", field="until")
    if until > moment + MUTE_MAX:
        raise TriageError("A mute ends within 30 days.", field="until")
    return MuteSpan(until=until)


def alert_acknowledge(
    *, alert: Alert, user: AbstractBaseUser | AnonymousUser, now: datetime | None = None
) -> Alert:
    """Record that ``user`` took ``alert``; the first acknowledgement stands."""
    moment = now or timezone.now()
    with transaction.atomic():
        locked = Alert.objects.select_for_update().get(pk=alert.pk)
        if locked.acknowledged_at is not None:
            raise TriageError(
                f"Alert {alert.pk} was already acknowledged by "
                f"{_who(locked)} at {locked.acknowledged_at:%Y-%m-%d %H:%M UTC}.",
                field="alert",
            )
        if locked.status != AlertStatus.OPEN:
            raise TriageError(f"Alert {alert.pk} is resolved already.", field="alert")
        locked.acknowledged_at = moment
        locked.acknowledged_by = _account(user)
        locked.save(update_fields=["acknowledged_at", "acknowledged_by"])
        transaction.on_commit(open_immediate_forget)
    return locked


def _account(user: AbstractBaseUser | AnonymousUser) -> User | None:
    # Signed in, so the portal's user model (AUTH_USER_MODEL is django.contrib.auth's User).
    return cast(User, user) if user.is_authenticated else None


def _who(alert: Alert) -> str:
    user = alert.acknowledged_by
    return user.get_username() if user is not None else "a user since removed"


def alert_mute_set(
    *, buyer: Buyer, span: MuteSpan, user: AbstractBaseUser | AnonymousUser
) -> AlertMute:
    """Mute ``buyer``'s alert notices until ``span.until`` (a later or earlier end replaces
    the one set)."""
    moment = timezone.now()
    with transaction.atomic():
        mute, _created = AlertMute.objects.update_or_create(
            buyer=buyer,
            defaults={
                "until": span.until,
                "muted_at": moment,
                "muted_by": _account(user),
            },
        )
        transaction.on_commit(open_immediate_forget)
    return mute


def alert_mute_clear(*, buyer: Buyer) -> bool:
    """Unmute ``buyer``; False when it was not muted."""
    with transaction.atomic():
        deleted, _ = AlertMute.objects.filter(buyer=buyer).delete()
        transaction.on_commit(open_immediate_forget)
    return bool(deleted)


def buyer_muted_until(*, buyer_id: int, now: datetime | None = None) -> datetime | None:
    """When ``buyer_id``'s mute ends, or ``None`` when it is not muted now."""
    moment = now or timezone.now()
    return (
        AlertMute.objects.filter(buyer_id=buyer_id, until__gt=moment)
        .values_list("until", flat=True)
        .first()
    )


def mutes_active(*, now: datetime | None = None) -> list[AlertMute]:
    """Every mute in force, ending soonest first, with its buyer and who set it."""
    moment = now or timezone.now()
    return list(
        AlertMute.objects.filter(until__gt=moment)
        .select_related("buyer", "muted_by")
        .order_by("until", "id")
    )


def open_immediate_count() -> int:
    """Open ``immediate`` alerts nobody has acknowledged or muted (cached briefly)."""
    cached = cache.get(OPEN_IMMEDIATE_KEY)
    if isinstance(cached, int):
        return cached
    moment = timezone.now()
    count = (
        Alert.objects.filter(
            status=AlertStatus.OPEN, priority=Priority.IMMEDIATE, acknowledged_at__isnull=True
        )
        .exclude(buyer__alert_mute__until__gt=moment)
        .count()
    )
    cache.set(OPEN_IMMEDIATE_KEY, count, OPEN_IMMEDIATE_SECONDS)
    return count


def open_immediate_forget() -> None:
    """Drop the cached count, so the next page counts again."""
    cache.delete(OPEN_IMMEDIATE_KEY)
