"""The simulator's listening socket: a large backlog, optional TLS, and the kernel's arrival
stamp of each request's bytes (Linux), so a grid's latency counts from when they came in."""

from __future__ import annotations

import io
import logging
import socket
import ssl
import struct
import sys
from http.server import ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)


class Server(ThreadingHTTPServer):
    # The default listen backlog of 5 resets connections when a benchmark or an auction opens
    # dozens at once; CallGrid itself accepts 100 simultaneous requests per grid.
    request_queue_size = 1024
    daemon_threads = True
    tls: ssl.SSLContext | None = None
    # Whether accepted sockets come with the kernel's arrival stamps (see StampedReader).
    stamped = False

    def server_bind(self) -> None:
        super().server_bind()
        if SO_TIMESTAMPNS is None:
            return
        try:
            # Set on the listening socket, so accepted ones have it before their first byte.
            self.socket.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
            self.stamped = True
        except OSError:
            pass  # not this kernel's option number: latency counts from when a thread reads

    def get_request(self) -> tuple[Any, Any]:
        sock, address = super().get_request()
        if self.tls is not None:
            # The handshake happens on the handler's first read, on its own thread, so a
            # client that never sends one cannot stall the accepting thread.
            sock = self.tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        return sock, address

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client refusing our certificate, or hanging up mid-request, is its business.
        if isinstance(sys.exc_info()[1], ssl.SSLError | ConnectionError):
            logger.debug("connection from %s ended: %s", client_address, sys.exc_info()[1])
            return
        super().handle_error(request, client_address)


# Linux stamps each packet with the moment it arrived, read from recvmsg's ancillary data.
# Python's socket module does not name the option; 35 is its number on Linux (x86, ARM).
SO_TIMESTAMPNS: int | None = getattr(
    socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None
)


class StampedReader(io.RawIOBase):
    """A plain socket read with ``recvmsg``, keeping when the kernel received the last data.

    A handler thread may only get to a request some time after its bytes came in, while the
    other handler threads hold the interpreter; ten bids arriving together were stamped over
    2.4 ms that way, and the last buyer answered that much later than its latency says.
    """

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self.arrived_at: float | None = None  # time.time() scale

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        data, ancillary, _flags, _address = self._sock.recvmsg(len(buffer), socket.CMSG_SPACE(16))
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(value) >= 16:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                self.arrived_at = seconds + nanoseconds / 1e9
        buffer[: len(data)] = data
        return len(data)
