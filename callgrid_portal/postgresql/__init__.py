"""Django's PostgreSQL backend, with connection health checks that skip a working connection.

Set as the ``ENGINE`` when ``DATABASE_URL`` names PostgreSQL (see settings.py and base.py).
"""

from __future__ import annotations

from django.db import connection
from django.db.backends.utils import CursorWrapper


def prepared_cursor() -> CursorWrapper:
    """A cursor on the default database for a statement every route runs.

    On PostgreSQL the statement is prepared once per connection (see
    ``DatabaseWrapper.prepared_cursor`` in base.py); on SQLite it is Django's usual cursor.
    """
    make = getattr(connection, "prepared_cursor", None)
    return make() if make is not None else connection.cursor()
