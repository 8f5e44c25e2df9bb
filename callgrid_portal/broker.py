"""The embedded broker: kombu's filesystem transport, each message written whole before it shows.

kombu's own ``filesystem`` transport creates a message's file under its final name and then
writes into it; a worker polling the folder in that gap moves the still empty file away,
reads nothing and dies on the JSON (``Unrecoverable error: JSONDecodeError``), which stops
``manage.py portal``. Several processes publishing at once (web, beat, the worker, the demo
publisher) meet that gap within minutes. Here a message is written under a name no queue
reads, then renamed into place: a rename within one folder is atomic, so a reader sees a
whole message or none. The channel's ``_put`` is the method kombu's virtual transport asks a
transport to provide (``kombu.transport.virtual.Channel``).
"""

from __future__ import annotations

import os
import uuid
from time import monotonic
from typing import Any

from kombu.exceptions import ChannelError
from kombu.transport import filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps


class Channel(filesystem.Channel):
    """The filesystem channel, publishing by write-then-rename."""

    # The signature of kombu's filesystem channel, which its virtual base names differently.
    def _put(self, queue: Any, payload: Any, **kwargs: Any) -> None:  # type: ignore[override]
        # The final name is kombu's own (time first, so workers take messages in order).
        name = f"{round(monotonic() * 1000)}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # No queue's "<queue>.msg" appears in this name, so no reader takes it half written.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(str_to_bytes(dumps(payload)))
            os.replace(partial, final)
        except OSError as exc:
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    """kombu's filesystem transport with :class:`Channel`."""

    Channel = Channel
