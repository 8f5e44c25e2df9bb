from django.apps import AppConfig


class CallGridPortalConfig(AppConfig):
    """Project-wide pieces: roles, API plumbing and management commands."""

    name = "callgrid_portal"
    verbose_name = "CallGrid Portal"
