"""The header's menu and the pages about access: what a user may open, and whom to ask.

The menu lists only the pages the signed-in user's role opens (a user without a role sees
none), and the 403 page says which role a page needs and who can give it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.models import User
from django.contrib.auth.views import LogoutView
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse

from callgrid_portal.roles import ADMIN, VIEWER, has_role, user_role

# (section, label, URL name, role it needs). ``section`` is the URL namespace (or the URL
# name outside a namespace) of the pages the item stands for: it marks the item current.
MENU: tuple[tuple[str, str, str, str], ...] = (
    ("home", "Overview", "home", VIEWER),
    ("buyers", "Buyers", "buyers:list", VIEWER),
    ("calls", "Calls", "calls:list", VIEWER),
    ("live", "Live", "live", VIEWER),
    ("bids", "Bids", "bids:list", VIEWER),
    ("alerts", "Alerts", "alerts:list", VIEWER),
    ("reports", "Reports", "reports", VIEWER),
    ("troubleshooting", "Troubleshooting", "troubleshooting", VIEWER),
    ("api", "API", "api:docs", VIEWER),
)
# How many of the portal's admins the access page names.
ADMINS_SHOWN = 5


def nav_items(request: HttpRequest) -> dict[str, Any]:
    """Context processor: ``nav_items``, the menu entries this user may open, and
    ``nav_section``, the one the page belongs to (``aria-current``)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"nav_items": [], "nav_section": ""}
    match = request.resolver_match
    return {
        "nav_section": (match.namespace or match.url_name or "") if match else "",
        "nav_items": [
            (section, label, reverse(url_name))
            for section, label, url_name, role in MENU
            if has_role(user, role) or (section == "api" and settings.API_DOCS_PUBLIC)
        ],
    }


def portal_admins() -> list[str]:
    """Who can give a role: the portal's admins (the ``admin`` group and superusers), by
    name and e-mail where they have them."""
    admins = (
        User.objects.filter(Q(is_superuser=True) | Q(groups__name=ADMIN), is_active=True)
        .distinct()
        .order_by("username")[:ADMINS_SHOWN]
    )
    names = []
    for admin in admins:
        name = admin.get_full_name() or admin.get_username()
        names.append(f"{name} <{admin.email}>" if admin.email else name)
    return names


def permission_denied(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """``handler403``: the branded page; a user without any role is told whom to ask."""
    user = getattr(request, "user", None)
    role = user_role(user)
    context = {
        "exception": str(exception or ""),
        "role": role,
        "no_role": user is not None and user.is_authenticated and role is None,
        "admins": portal_admins() if role is None else [],
    }
    return render(request, "403.html", context, status=403)


class PortalLogoutView(LogoutView):
    """Log out, then say so on the login page."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        response = super().post(request, *args, **kwargs)
        # After the session is flushed: the message goes into the fresh one (or the cookie).
        messages.info(request, "You are logged out. Log in again to go on.")
        return response
