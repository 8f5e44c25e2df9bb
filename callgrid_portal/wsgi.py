"""WSGI entry point (gunicorn callgrid_portal.wsgi)."""

import gc
import os

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.wsgi import get_wsgi_application
from django.urls import get_resolver

from callgrid_portal.datadir import secret_key_required

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "callgrid_portal.settings")

try:
    # Django refuses an empty key only when something first signs with it (a login).
    _secret_key = settings.SECRET_KEY
except ImproperlyConfigured:
    _secret_key = ""
secret_key_required(_secret_key)

application = get_wsgi_application()

# Django imports the URLconf, and with it every view, serializer and their libraries, on a
# process's first request: 250 to 300 ms measured here, paid by whichever call reached that
# worker first (after each deploy, and each time gunicorn recycles a worker). Import it now.
get_resolver().resolve("/api/v1/route/")

# Everything loaded so far lives as long as the process. Left to the collector, a full
# collection walks all of it (44 ms measured here, on whichever request triggers it); frozen,
# those objects are never scanned again.
gc.collect()
gc.freeze()
