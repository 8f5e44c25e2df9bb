"""Bids-list filters saved per person: save under a name, open, delete (issue 20, item 7).

Kept in the database (:class:`~bidlog.models.SavedBidFilter`), not the session, so a filter
survives logging out and works from another browser. Only the query's filters are kept (a
page cursor, a page number or the CSV switch are dropped), and each person sees and deletes
only their own.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import QueryDict

from bidlog.models import SavedBidFilter

# The most filters one person keeps; the list is a shortcut, not an archive.
MAX_SAVED = 30
MAX_NAME = SavedBidFilter._meta.get_field("name").max_length or 60
MAX_QUERY = SavedBidFilter._meta.get_field("query").max_length or 2000
# Parts of a list page's query that are a place on the page, not a filter.
_NOT_FILTERS = ("before", "page", "export")

User = AbstractBaseUser | AnonymousUser


def saved_filter_list(*, user: User) -> list[SavedBidFilter]:
    """The person's saved filters by name; none for a visitor."""
    if not user.is_authenticated:
        return []
    return list(SavedBidFilter.objects.filter(user_id=user.pk).order_by("name"))


def filter_query(query: str) -> str:
    """``query`` without the parts that are not filters, its values in their order."""
    params = QueryDict(query, mutable=True)
    for name in _NOT_FILTERS:
        params.pop(name, None)
    return params.urlencode()


@transaction.atomic
def saved_filter_save(*, user: Any, name: str, query: str) -> SavedBidFilter:
    """Save ``query`` as ``name`` for ``user``, replacing one of the same name.

    Raises ``ValidationError`` keyed by field for an empty or long name, a long query, or
    one filter more than :data:`MAX_SAVED`.
    """
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the filter a name."})
    if len(name) > MAX_NAME:
        raise ValidationError({"name": f"Use at most {MAX_NAME} characters."})
    kept = filter_query(query[: MAX_QUERY * 2])
    if len(kept) > MAX_QUERY:
        raise ValidationError({"query": f"This filter is too long to save ({MAX_QUERY} max)."})
    mine = SavedBidFilter.objects.select_for_update().filter(user=user)
    existing = mine.filter(name=name).first()
    if existing is None and mine.count() >= MAX_SAVED:
        raise ValidationError({"name": f"You have {MAX_SAVED} saved filters; delete one first."})
    saved, _created = SavedBidFilter.objects.update_or_create(
        user=user, name=name, defaults={"query": kept}
    )
    return saved


def saved_filter_delete(*, user: Any, saved_id: int) -> bool:
    """Delete the person's saved filter ``saved_id``; ``False`` when they have none so."""
    deleted, _ = SavedBidFilter.objects.filter(user=user, pk=saved_id).delete()
    return bool(deleted)
