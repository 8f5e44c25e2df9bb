"""Pages that belong to no app: the troubleshooting catalog."""

from __future__ import annotations

from typing import Any

from django.views.generic import TemplateView

from callgrid_portal.bidapi import codes
from callgrid_portal.pages import RoleRequiredMixin


class TroubleshootingView(RoleRequiredMixin, TemplateView):
    """``/troubleshooting/``: every CallGrid code, most urgent first, with what to do, and
    what a support request must carry. Each code has an anchor (``#code-4004``)."""

    template_name = "troubleshooting.html"

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        return super().get_context_data(
            entries=codes.by_priority(), support_fields=codes.support_request_fields(), **kwargs
        )
