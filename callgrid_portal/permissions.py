"""API permissions by role; anything not granted is denied."""

from typing import Any

from django.conf import settings
from rest_framework.permissions import SAFE_METHODS, BasePermission
from rest_framework.request import Request

from callgrid_portal.roles import ADMIN, OPERATOR, VIEWER, has_role


class RolePermission(BasePermission):
    """Reads need ``viewer``, writes need ``operator``; a view may raise the bar.

    A view sets ``read_role`` / ``write_role`` to demand more (``admin`` to delete, say).
    """

    message = "Your role does not allow this."

    def has_permission(self, request: Request, view: Any) -> bool:
        if request.method in SAFE_METHODS:
            return has_role(request.user, getattr(view, "read_role", VIEWER))
        if request.method == "DELETE":
            return has_role(request.user, getattr(view, "delete_role", OPERATOR))
        return has_role(request.user, getattr(view, "write_role", OPERATOR))


class ApiDocsPermission(BasePermission):
    """The schema and the docs: anyone when ``API_DOCS_PUBLIC`` is on, else a signed-in user
    with a role (the viewer role is enough)."""

    message = "Sign in to read the API schema and docs (or set API_DOCS_PUBLIC)."

    def has_permission(self, request: Request, view: Any) -> bool:
        return bool(settings.API_DOCS_PUBLIC) or has_role(request.user, VIEWER)


class IsPortalAdmin(BasePermission):
    """Only the ``admin`` role (or a superuser)."""

    def has_permission(self, request: Request, view: Any) -> bool:
        return has_role(request.user, ADMIN)
