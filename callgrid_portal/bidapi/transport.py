"""The one HTTP transport of every bid: libcurl's multi interface through pycurl.

Every send (an auction's bids, a waterfall's, a test bid, a health check) goes through
:meth:`Transport.exchange`, which runs all the requests it is given in one event loop on the
calling thread, with:

- **one total deadline per request** (``CURLOPT_TIMEOUT_MS``) covering connect, TLS, the status
  line, the headers and the body, so a buyer that dribbles bytes ends at its budget;
- **caps** on the number and size of response headers (:data:`MAX_HEADER_COUNT`,
  :data:`MAX_HEADER_BYTES`) and on the body (:data:`MAX_BODY_BYTES`), checked as the bytes
  arrive; nothing is decompressed (bids ask for ``identity``, a gzip bomb stays small);
- **pooled keep-alive connections**: each thread keeps one libcurl multi handle, whose
  connection cache serves every request that thread makes;
- **the endpoint guard on the address connected to**: host names are resolved here, each
  address is checked with the request's ``check_address`` and libcurl is pinned to the
  addresses that passed (``CURLOPT_RESOLVE``); ``CURLOPT_PREREQFUNCTION`` checks the address
  of the connection again just before the request is written, reused connections included;
- **follow-up requests** (a retry after a backoff) scheduled into the same loop, so an
  auction's retries share its deadline without threads.

No proxy from the environment is used, redirects are not followed and no cookie is kept: the
buyer's configuration alone decides where a bid goes. libcurl and its pycurl binding are
maintained by the curl project; healthchecks' ``hc/lib/curl.py`` uses them the same way.
"""

from __future__ import annotations

import concurrent.futures
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable

import certifi

from callgrid_portal.bidapi.curl_loop import Loop
from callgrid_portal.bidapi.exchange import (
    DNS_CACHE_SECONDS,
    MAX_BODY_BYTES,
    MAX_HEADER_BYTES,
    MAX_HEADER_COUNT,
    RESOLVER_THREADS,
    AddressCheck,
    Failure,
    OnResponse,
    Request,
    Resolver,
    Response,
)

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEADER_BYTES",
    "MAX_HEADER_COUNT",
    "AddressCheck",
    "Failure",
    "Request",
    "Response",
    "Transport",
    "default_transport",
    "system_resolver",
]


def system_resolver(host: str, port: int) -> list[str]:
    """The addresses ``host`` resolves to, in the system resolver's order."""
    found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in found))


class Transport:
    """Sends requests; one per process is enough (see :func:`default_transport`).

    ``ca_file`` is the certificate bundle that HTTPS answers must chain to (certifi's by
    default; tests pass their own CA). ``resolver`` maps a host and port to addresses (tests
    pass one whose answers change).
    """

    def __init__(
        self,
        *,
        ca_file: str | None = None,
        resolver: Resolver = system_resolver,
        dns_cache_seconds: float = DNS_CACHE_SECONDS,
    ) -> None:
        self.ca_file = ca_file or certifi.where()
        self.resolver = resolver
        self.dns_cache_seconds = dns_cache_seconds
        self._local = threading.local()
        self._dns: dict[tuple[str, int], tuple[float, list[str]]] = {}
        self._dns_lock = threading.Lock()

    def exchange(
        self,
        requests: Iterable[Request],
        on_response: OnResponse,
        *,
        on_sent: Callable[[], None] | None = None,
    ) -> None:
        """Run ``requests`` at once and hand each ending to ``on_response`` as it comes.

        ``on_response`` may return a follow-up request (a retry), which joins the loop at its
        ``start_at``. ``on_sent`` runs once, after the requests that can go at once have been
        written to connections already open, while the buyers think. Callbacks run on the
        calling thread; one that raises stops the exchange and the exception propagates.
        """
        Loop.for_thread(self._local, self).run(list(requests), on_response, on_sent)

    def resolve(self, host: str, port: int, *, timeout: float) -> list[str]:
        """The addresses of ``host``, from a short cache (libcurl keeps one for 60 s too).

        A lookup runs on a resolver thread and is waited for at most ``timeout`` seconds
        (the request's budget): a slow DNS server must not hold an auction past its deadline.
        Raises ``OSError`` when the name cannot be resolved in time.
        """
        now = time.monotonic()
        with self._dns_lock:
            cached = self._dns.get((host, port))
        if cached is not None and cached[0] > now:
            return cached[1]
        lookup = _resolver_pool.get().submit(self.resolver, host, port)
        try:
            addresses = list(lookup.result(timeout=max(timeout, 0.001)))
        except concurrent.futures.TimeoutError:
            lookup.cancel()
            raise OSError(f"no DNS answer within {timeout:.1f} s") from None
        if self.dns_cache_seconds > 0:
            with self._dns_lock:
                self._dns[(host, port)] = (now + self.dns_cache_seconds, addresses)
        return addresses


class _ResolverPool:
    """The threads that run DNS lookups, made on first use in each process (forks lose them)."""

    def __init__(self) -> None:
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pid = 0
        self._lock = threading.Lock()

    def get(self) -> concurrent.futures.ThreadPoolExecutor:
        if self._pool is None or self._pid != os.getpid():
            with self._lock:
                if self._pool is None or self._pid != os.getpid():
                    self._pool = concurrent.futures.ThreadPoolExecutor(
                        max_workers=RESOLVER_THREADS, thread_name_prefix="bid-dns"
                    )
                    self._pid = os.getpid()
        return self._pool


_resolver_pool = _ResolverPool()
_default: Transport | None = None
_default_lock = threading.Lock()


def default_transport() -> Transport:
    """This process's transport, made on first use."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                _default = Transport()
    return _default
