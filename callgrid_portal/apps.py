from django.apps import AppConfig
from django.db.backends.signals import connection_created

from callgrid_portal.dbpool import check_borrowed_connection


class CallGridPortalConfig(AppConfig):
    """Project-wide pieces: roles, API plumbing and management commands."""

    name = "callgrid_portal"
    verbose_name = "CallGrid Portal"

    def ready(self) -> None:
        connection_created.connect(check_borrowed_connection, dispatch_uid="check_borrowed")
