"""CallGrid Portal: the control room of a pay-per-call publisher."""

# Load the Celery app with Django, so ``shared_task`` binds to it and tasks queued from the web
# process use its broker settings.
from .celery import app as celery_app

__all__ = ["celery_app"]
