"""What every browser page shares: a login, and the role the page needs (SPEC §6)."""

from __future__ import annotations

from datetime import UTC
from typing import Any

from django import forms
from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from callgrid_portal.roles import VIEWER, has_role


class RoleRequiredMixin(LoginRequiredMixin):
    """Send visitors to the login page; refuse (403) a signed-in user without ``required_role``.

    Pages that only read need ``viewer``; pages that change something set ``operator``.
    """

    required_role = VIEWER

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and not has_role(request.user, self.required_role):
            raise PermissionDenied(f"This page needs the {self.required_role} role.")
        # The pages show and take times in UTC, and say so, whatever TIME_ZONE is: the bid
        # log, the filters (a time without an offset is UTC) and the messages agree.
        with timezone.override(UTC):
            return super().dispatch(request, *args, **kwargs)


# The labels of the filters several pages share (bids, calls, buyers), said once.
SHARED_FILTER_LABELS = {
    "grid_id": "Grid ID",
    "source": "Source",
    "caller_id": "Caller ID",
    "since": "Since",
    "until": "Until",
}
SHARED_EMPTY_LABELS = {"source": "Any source"}


class PageFilterMixin:
    """Mixed into an API ``FilterSet`` to show it on a page.

    ``LABELS`` are the labels people read, ``EMPTY_LABELS`` what an empty choice says ("Any
    source" rather than "---------"), ``HIDDEN`` the API's filters the page leaves out and
    ``HIDDEN_INPUTS`` those it keeps as hidden inputs (values a link carries that the page
    does not show). A page lists only its own: the shared filters' labels come from the
    tables above.
    """

    LABELS: dict[str, str] = {}
    EMPTY_LABELS: dict[str, str] = {}
    HIDDEN: tuple[str, ...] = ()
    HIDDEN_INPUTS: tuple[str, ...] = ()
    filters: dict[str, Any]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for name in self.HIDDEN:
            self.filters.pop(name)
        for name, label in {**SHARED_FILTER_LABELS, **self.LABELS}.items():
            if name in self.filters:
                self.filters[name].label = label
        for name, label in {**SHARED_EMPTY_LABELS, **self.EMPTY_LABELS}.items():
            if name in self.filters:
                self.filters[name].extra["empty_label"] = label
        for name in self.HIDDEN_INPUTS:
            self.filters[name].extra["widget"] = forms.HiddenInput
        self._page_form_ready = False

    @property
    def form(self) -> forms.Form:
        """The filters' form with this page's labels, empty choices and hidden inputs.

        They are set on the form's own fields as well: a filter builds its form field once and
        keeps it, and once the API's filter set has built it (a schema, an API request) a copy
        of that filter no longer reads its label or widget again.
        """
        form: forms.Form = super().form  # type: ignore[misc]
        if self._page_form_ready:
            return form
        self._page_form_ready = True
        fields = form.fields
        for name, label in {**SHARED_FILTER_LABELS, **self.LABELS}.items():
            if name in fields:
                fields[name].label = label
        for name, label in {**SHARED_EMPTY_LABELS, **self.EMPTY_LABELS}.items():
            if name in fields and hasattr(fields[name], "empty_label"):
                fields[name].empty_label = label  # type: ignore[attr-defined]
        for name in self.HIDDEN_INPUTS:
            if name in fields:
                fields[name].widget = forms.HiddenInput()
        return form
