"""A buyer that answers bids with hostile bytes, run as its own process on loopback.

``python -m tests.hostile_buyer`` prints the port it listens on, then answers each
``POST /<mode>/<grid>`` with the answer :data:`MODES` names, after reading the request. Its own
memory and CPU are its own: the process under test measures only what reading the answer costs.
"""

from __future__ import annotations

import functools
import gzip
import itertools
import socket
import threading
import time
from collections.abc import Callable, Iterator

GOOD = b'"message": "Bid accepted", "destination": "13035551234"'


def _answer(body: bytes, *, headers: bytes = b"Content-Type: application/json\r\n") -> bytes:
    head = b"HTTP/1.1 200 OK\r\n" + headers + b"Content-Length: %d\r\n\r\n" % len(body)
    return head + body


def _json(text: bytes) -> Callable[[], Iterator[bytes]]:
    def answer() -> Iterator[bytes]:
        yield _answer(text)

    return answer


def _endless_headers() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\n"
    for n in itertools.count():
        yield b"X-Filler-%d: %s\r\n" % (n, b"y" * 200)


def _endless_header_line() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nX-Endless: "
    while True:
        yield b"z" * 4096


def _endless_body() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
    yield b'{"code": 1000, "padding": "'
    while True:
        yield b"x" * 8192


def _endless_chunks() -> Iterator[bytes]:
    yield b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
    while True:
        yield b"2000\r\n" + b"x" * 0x2000 + b"\r\n"


def _slow_headers() -> Iterator[bytes]:
    for byte in b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nX-Slow: yes\r\n":
        yield bytes([byte])
        time.sleep(0.1)


@functools.cache
def _bomb() -> bytes:
    """60 MB of zeros in 60 KiB: under the body cap, so only a client that inflates it pays."""
    return gzip.compress(b"0" * (60 * 1024 * 1024), compresslevel=9)


def _gzip_bomb() -> Iterator[bytes]:
    bomb = _bomb()
    headers = b"Content-Type: application/json\r\nContent-Encoding: gzip\r\n"
    yield _answer(bomb, headers=headers)


def _not_http() -> Iterator[bytes]:
    yield b"\x00\xffSSH-2.0-OpenSSH_9.6\r\n" + bytes(range(256)) * 4


MODES: dict[str, Callable[[], Iterator[bytes]]] = {
    # Numbers no buyer would send, in every field.
    "code-exponent": _json(b'{"code": 1e' + b"9" * 60_000 + b", " + GOOD + b"}"),
    "code-exponent-million": _json(b'{"code": 1e' + b"9" * 1_000_000 + b"}"),
    "code-5000-digits": _json(b'{"code": ' + b"1" * 5000 + b", " + GOOD + b"}"),
    "code-digit-string": _json(b'{"code": "' + b"1" * 5000 + b'", ' + GOOD + b"}"),
    "amount-5000-digits": _json(
        b'{"code": 1000, "bid_amount": ' + b"7" * 5000 + b", " + GOOD + b"}"
    ),
    "amount-1e999": _json(b'{"code": 1000, "bid_amount": 1e999, ' + GOOD + b"}"),
    "amount-tiny-exponent": _json(b'{"code": 1000, "bid_amount": 1e-99999, ' + GOOD + b"}"),
    "amount-nan": _json(b'{"code": 1000, "bid_amount": NaN, ' + GOOD + b"}"),
    "amount-infinity": _json(b'{"code": 1000, "bid_amount": Infinity, ' + GOOD + b"}"),
    "amount-string-exponent": _json(b'{"code": 1000, "bid_amount": "1e999999999", ' + GOOD + b"}"),
    "destination-number": _json(
        b'{"code": 1000, "bid_amount": 30, "destination": 1e99999, "message": "x"}'
    ),
    "message-huge-int": _json(b'{"code": 2000, "message": ' + b"9" * 5000 + b"}"),
    "retry-after-absurd": lambda: iter(
        [
            b"HTTP/1.1 429 Too Many Requests\r\nRetry-After: "
            + b"9" * 5000
            + b'\r\nContent-Length: 14\r\n\r\n{"code": 5001}'
        ]
    ),
    # Shapes.
    "deep-nesting": _json(b'{"code": 1000, "x": ' + b"[" * 30_000 + b"]" * 30_000 + b"}"),
    "not-utf8": _json(b'{"code": 1000, "bid_amount": 40, "destination": "\xff\xfe\xfd"}'),
    "duplicate-keys": _json(b'{"code": 2000, "code": 1000, "bid_amount": 50, ' + GOOD + b"}"),
    # Transport.
    "endless-headers": _endless_headers,
    "endless-header-line": _endless_header_line,
    "endless-body": _endless_body,
    "endless-chunks": _endless_chunks,
    "slow-headers": _slow_headers,
    "gzip-bomb": _gzip_bomb,
    "not-http": _not_http,
}


def _serve(conn: socket.socket) -> None:
    with conn:
        conn.settimeout(30)
        request = b""
        while b"\r\n\r\n" not in request:
            chunk = conn.recv(65536)
            if not chunk:
                return
            request += chunk
        head, _, body = request.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        length = next(
            (
                int(line.split(b":")[1])
                for line in lines
                if line.lower().startswith(b"content-length")
            ),
            0,
        )
        while len(body) < length:
            body += conn.recv(65536)
        mode = lines[0].split(b" ")[1].split(b"/")[1].decode()
        answer = MODES.get(mode, _json(b'{"code": 2000}'))
        try:
            for piece in answer():
                conn.sendall(piece)
        except OSError:
            return  # the client hung up, as it should


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=64)
    _bomb()  # made once, before the first request waits for it
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=_serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
