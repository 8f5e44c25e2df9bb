"""Writes to buyers: create, update, delete, each validated and audited.

Every write goes through ``Buyer.full_clean()`` (field validators plus ``validate_buyer``) and
is recorded by django-simple-history with the user who made it, so the admin, the pages and
the API refuse the same input with the same message and every change has an author.
"""

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import ProtectedError

from buyers.choices import BuyerStatus
from buyers.models import Buyer
from buyers.validators import default_duplicate_window

Actor = AbstractBaseUser | AnonymousUser | None

# The fields a person may set; timestamps and the health-check schedule are the system's.
EDITABLE_FIELDS = frozenset(
    field.name for field in Buyer._meta.concrete_fields if field.editable and not field.primary_key
)

# Fields whose stored value is validated again only when an edit changes it (see below).
_RECHECKED_WHEN_CHANGED = ("endpoint_url", "operating_hours")


def buyer_prepare(*, buyer: Buyer | None = None, **fields: Any) -> Buyer:
    """Apply ``fields`` to a new buyer (or to ``buyer``) and validate it, saving nothing.

    Raises ``ValidationError`` keyed by field when a rule is broken; an existing ``buyer`` is
    then put back as it was. A name that is not an editable field is a programming error
    (``TypeError``). When the vertical changes and the duplicate window still holds the old
    vertical's default, the window follows the new vertical's default: a buyer moved from
    insurance (30) to home services must not be refused for a value nobody chose.
    """
    unknown = sorted(set(fields) - EDITABLE_FIELDS)
    if unknown:
        raise TypeError(f"Not editable buyer fields: {', '.join(unknown)}")
    if buyer is None:
        buyer = Buyer(**fields)
        buyer.full_clean()
        return buyer

    fields = dict(fields)
    if (
        "vertical" in fields
        and fields["vertical"] != buyer.vertical
        and "duplicate_window_days" not in fields
        and buyer.duplicate_window_days == default_duplicate_window(buyer.vertical)
    ):
        fields["duplicate_window_days"] = None  # save() fills in the new vertical's default
    previous = {name: getattr(buyer, name) for name in fields}
    for name, value in fields.items():
        setattr(buyer, name, value)
    # An endpoint or hours that passed when they were saved may fail a rule tightened since
    # (the endpoint guard, overlapping windows). The endpoint is checked again at every send
    # and hours that overlap still mean "open", so neither may stop anyone from pausing,
    # disabling or otherwise editing the buyer; a changed value is checked here.
    unchanged = [
        name
        for name in _RECHECKED_WHEN_CHANGED
        if previous.get(name, getattr(buyer, name)) == getattr(buyer, name)
    ]
    try:
        buyer.full_clean(exclude=unchanged or None)
    except ValidationError:
        for name, value in previous.items():
            setattr(buyer, name, value)
        raise
    return buyer


@transaction.atomic
def buyer_save(*, buyer: Buyer, actor: Actor = None) -> Buyer:
    """Save a buyer that :func:`buyer_prepare` has validated, recording ``actor`` in history.

    Validation is not repeated here (the API validates once, in its serializer). Unique names
    and Grid IDs are checked by ``full_clean``; if another request saves the same name in the
    meantime, the database refuses and this answers with the same field error.
    """
    if actor is not None and actor.is_authenticated:
        # simple_history reads the author from the instance before the request middleware.
        buyer._history_user = actor  # type: ignore[attr-defined]
    try:
        with transaction.atomic():
            buyer.save()
    except IntegrityError:
        buyer.validate_unique()
        buyer.validate_constraints()
        raise ValidationError(
            "Another change to this buyer was saved at the same moment; try again.",
            code="conflict",
        ) from None
    finally:
        buyer.__dict__.pop("_history_user", None)
    return buyer


def buyer_create(*, actor: Actor = None, **fields: Any) -> Buyer:
    """Create a buyer from ``fields`` after validating every rule; ``actor`` is its author."""
    return buyer_save(buyer=buyer_prepare(**fields), actor=actor)


def buyer_update(*, buyer: Buyer, actor: Actor = None, **fields: Any) -> Buyer:
    """Change ``fields`` of ``buyer`` after validating every rule; ``actor`` is its author."""
    return buyer_save(buyer=buyer_prepare(buyer=buyer, **fields), actor=actor)


def buyer_set_status(*, buyer: Buyer, status: str, actor: Actor = None) -> Buyer:
    """Activate, pause or disable ``buyer`` (an audited update of one field)."""
    return buyer_update(buyer=buyer, actor=actor, status=status)


@transaction.atomic
def buyer_delete(*, buyer: Buyer, actor: Actor = None) -> None:
    """Delete a buyer that has never been sent a bid.

    Bid logs are the record of what happened and keep their buyer (``on_delete=PROTECT``), so
    a buyer with bids is refused with a ``ValidationError`` that suggests disabling it, which
    stops all traffic and keeps its history.
    """
    refusal = ValidationError(
        f"{buyer.name} has bid logs, which are kept as history, so it cannot be deleted; "
        "set its status to disabled instead.",
        code="has_bids",
    )
    if buyer.bids.exists():
        raise refusal
    if actor is not None and actor.is_authenticated:
        buyer._history_user = actor  # type: ignore[attr-defined]
    try:
        buyer.delete()
    except ProtectedError:
        # A bid logged between the check above and the delete.
        raise refusal from None
    finally:
        buyer.__dict__.pop("_history_user", None)


# The fields a clone does not copy: the person names the new buyer and it starts paused.
_NOT_CLONED = frozenset({"name", "grid_id", "status"})


def buyer_clone(*, source: Buyer, name: str, grid_id: str, actor: Actor = None) -> Buyer:
    """A new buyer with ``source``'s settings under ``name`` and ``grid_id``, paused.

    It starts paused so no call goes to the copy before someone has checked its endpoint and
    caps; raises ``ValidationError`` keyed by field like :func:`buyer_create`.
    """
    fields = {
        field: getattr(source, field)
        for field in EDITABLE_FIELDS - _NOT_CLONED
        if field != "duplicate_window_days" or source.duplicate_window_days is not None
    }
    return buyer_create(
        actor=actor, name=name, grid_id=grid_id, status=BuyerStatus.PAUSED, **fields
    )


@transaction.atomic
def buyers_set_status(
    *, buyers: list[Buyer], status: str, actor: Actor = None
) -> tuple[list[Buyer], dict[str, list[str]]]:
    """Set ``status`` on each of ``buyers`` (the buyers list's bulk action), each audited.

    Returns the buyers changed and, by name, why any other was refused. A buyer that already
    has the status is left alone (no history row saying nothing changed). Each change is its
    own savepoint, so one refused buyer does not undo the others.
    """
    changed: list[Buyer] = []
    refused: dict[str, list[str]] = {}
    for buyer in buyers:
        if buyer.status == status:
            continue
        try:
            with transaction.atomic():
                changed.append(buyer_set_status(buyer=buyer, status=status, actor=actor))
        except ValidationError as exc:
            refused[buyer.name] = exc.messages
    return changed, refused
