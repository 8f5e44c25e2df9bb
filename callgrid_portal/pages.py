"""What every browser page shares: a login, and the role the page needs (SPEC §6)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.mixins import LoginRequiredMixin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponseBase

from callgrid_portal.roles import VIEWER, has_role


class RoleRequiredMixin(LoginRequiredMixin):
    """Send visitors to the login page; refuse (403) a signed-in user without ``required_role``.

    Pages that only read need ``viewer``; pages that change something set ``operator``.
    """

    required_role = VIEWER

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.user.is_authenticated and not has_role(request.user, self.required_role):
            raise PermissionDenied(f"This page needs the {self.required_role} role.")
        return super().dispatch(request, *args, **kwargs)
