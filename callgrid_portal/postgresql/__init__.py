"""Django's PostgreSQL backend, with connection health checks that skip a working connection.

Set as the ``ENGINE`` when ``DATABASE_URL`` names PostgreSQL (see settings.py and base.py).
"""
