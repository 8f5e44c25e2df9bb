"""The embedded broker (callgrid_portal/broker.py): a worker reading while others publish
gets every message whole; kombu's own filesystem transport lost some and raised
JSONDecodeError on half-created files, which killed the portal's worker."""

from __future__ import annotations

import threading
from pathlib import Path
from queue import Empty
from typing import Any

from kombu import Connection

MESSAGES = 2000


def _options(tmp_path: Path) -> dict[str, Any]:
    (tmp_path / "in").mkdir()
    (tmp_path / "processed").mkdir()
    return {
        "data_folder_in": str(tmp_path / "in"),
        "data_folder_out": str(tmp_path / "in"),
        "processed_folder": str(tmp_path / "processed"),
        "store_processed": False,
    }


def test_a_reader_polling_while_messages_are_published_gets_every_one_whole(tmp_path):
    options = _options(tmp_path)
    transport = "callgrid_portal.broker:Transport"
    received: list[int] = []
    errors: list[str] = []

    def consume() -> None:
        with Connection(
            "filesystem://localhost//", transport=transport, transport_options=options
        ) as conn:
            queue = conn.SimpleQueue("race")
            while len(received) < MESSAGES:
                try:
                    message = queue.get(timeout=10)
                except Empty:
                    return
                except Exception as exc:  # what kombu's own transport raises here
                    errors.append(repr(exc))
                    continue
                received.append(message.payload["n"])
                message.ack()

    reader = threading.Thread(target=consume)
    reader.start()
    with Connection(
        "filesystem://localhost//", transport=transport, transport_options=options
    ) as conn:
        queue = conn.SimpleQueue("race")
        for n in range(MESSAGES):
            queue.put({"n": n, "pad": "x" * 2000})
    reader.join(timeout=120)

    assert errors == []
    assert sorted(received) == list(range(MESSAGES))
    assert not list((tmp_path / "in").iterdir())  # no partial file left behind


def test_the_embedded_default_uses_this_transport():
    from django.conf import settings

    if settings.CELERY_BROKER_URL.startswith("filesystem://"):
        assert settings.CELERY_BROKER_TRANSPORT == "callgrid_portal.broker:Transport"
