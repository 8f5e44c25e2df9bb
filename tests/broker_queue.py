"""The messages a test queued on the Celery broker, taken off its queue."""

from callgrid_portal.celery import app as celery_app


def queued_messages(queue: str) -> list[tuple[str, list]]:
    """Take every message off ``queue``: (task name, args) pairs."""
    taken: list[tuple[str, list]] = []
    with celery_app.connection_for_write() as connection, connection.SimpleQueue(queue) as q:
        while True:
            try:
                message = q.get(timeout=0.5)
            except q.Empty:
                return taken
            args = message.decode()[0]
            taken.append((message.headers["task"], args))
            message.ack()
