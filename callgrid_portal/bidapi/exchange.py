"""What the Bid API transport takes and gives back: requests, responses, failures and caps."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum

MAX_HEADER_COUNT = 64
MAX_HEADER_BYTES = 16 * 1024
MAX_BODY_BYTES = 64 * 1024
MAX_CONNECTIONS_PER_THREAD = 256
DNS_CACHE_SECONDS = 30.0
RESOLVER_THREADS = 8

Resolver = Callable[[str, int], Sequence[str]]
AddressCheck = Callable[[str], "str | None"]


class Failure(StrEnum):
    """Why a request ended without a complete answer."""

    TIMEOUT = "timeout"
    CONNECT_TIMEOUT = "connect_timeout"
    NETWORK = "network"
    OVERSIZED = "oversized"
    HEADERS = "headers"
    REFUSED_ADDRESS = "refused_address"
    RESOLVE = "resolve"
    TLS = "tls"
    NOT_HTTP = "not_http"


@dataclass
class Request:
    """One HTTP POST to make, and when it must be over (``time.monotonic()`` values)."""

    key: Hashable
    url: str
    body: bytes
    headers: Sequence[str]
    budget_end: float
    start_at: float = 0.0
    check_address: AddressCheck | None = None


@dataclass
class Response:
    """How a request ended: an answer, or a failure with the bytes received before it."""

    request: Request
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    failure: Failure | None = None
    detail: str = ""
    started: float = 0.0
    ended: float = 0.0

    @property
    def duration(self) -> float:
        return self.ended - self.started


OnResponse = Callable[[Response], "Request | None"]
