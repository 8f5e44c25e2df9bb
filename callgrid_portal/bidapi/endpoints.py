"""The endpoint guard: where a bid may be sent, checked when a buyer is saved and at every send.

A buyer's endpoint URL is data an operator typed, so it must never make the portal post into a
private network or a cloud metadata service (server-side request forgery). The rules:

- the scheme is https, or http for a host in ``CALLGRID_INSECURE_HOSTS``; no credentials;
- the host is in ``CALLGRID_ENDPOINT_ALLOWLIST``;
- every address the host resolves to is public, unless that address itself is allow-listed
  (the simulator on ``127.0.0.1``); link-local, multicast, unspecified and the cloud metadata
  addresses are refused even when allow-listed. IPv4-mapped IPv6 spellings
  (``::ffff:169.254.169.254``) are read as the IPv4 address they carry.

The transport connects only to addresses this guard passed (see
:mod:`callgrid_portal.bidapi.transport`), so a second DNS lookup cannot rebind a checked name.
This module knows nothing of Django: the policy is built from settings by ``buyers``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

# Cloud metadata services that sit outside the link-local range: AWS over IPv6 and
# Alibaba Cloud. 169.254.169.254 (AWS, GCP, Azure, ...) is link-local and refused as such.
METADATA_ADDRESSES = frozenset(
    {ipaddress.ip_address("fd00:ec2::254"), ipaddress.ip_address("100.100.100.200")}
)


@functools.lru_cache(maxsize=4096)
def parse_address(text: str) -> IPAddress | None:
    """``text`` as an IP address (brackets and IPv4-mapped IPv6 unwrapped), or ``None``."""
    try:
        address = ipaddress.ip_address(text.strip().strip("[]"))
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@dataclass(frozen=True)
class EndpointPolicy:
    """The allow-list and the hosts where plain http is allowed, as the guard reads them."""

    allowlist: frozenset[str]
    insecure_hosts: frozenset[str]

    @classmethod
    def from_lists(cls, allowlist: Iterable[str], insecure_hosts: Iterable[str]) -> EndpointPolicy:
        return cls(
            allowlist=frozenset(_host_key(h) for h in allowlist if h.strip()),
            insecure_hosts=frozenset(_host_key(h) for h in insecure_hosts if h.strip()),
        )

    def url_problem(self, url: str) -> str | None:
        """Why a bid may not go to ``url`` (scheme, credentials, allow-list), or ``None``.

        Asked before every bid, so the answers are remembered per policy and URL.
        """
        return _url_problem(self, url)

    def text_address_problem(self, text: str) -> str | None:
        """:meth:`address_problem` for an address written as text (remembered, as above)."""
        return _text_address_problem(self, text)

    def _url_problem(self, url: str) -> str | None:
        try:
            parts = urlsplit(url)
            host = (parts.hostname or "").lower()
            parts.port  # noqa: B018 - a port out of range raises here, not at send time
        except (TypeError, ValueError):
            return "the endpoint is not a valid http(s) URL"
        if parts.scheme not in ("http", "https") or not host:
            return "the endpoint is not an http(s) URL"
        if parts.username or parts.password:
            return "the endpoint URL must not carry credentials"
        key = _host_key(host)
        if key not in self.allowlist:
            shown = ", ".join(sorted(self.allowlist)) or "empty"
            return f"host {host} is not in CALLGRID_ENDPOINT_ALLOWLIST ({shown})"
        if parts.scheme == "http" and key not in self.insecure_hosts:
            return (
                f"plain http to {host} is not allowed; use https or list it in "
                "CALLGRID_INSECURE_HOSTS"
            )
        address = parse_address(host)
        if address is not None:
            return self.address_problem(address)
        return None

    def address_problem(self, address: IPAddress) -> str | None:
        """Why a bid may not be sent to ``address`` (already resolved), or ``None``."""
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            address = address.ipv4_mapped
        if address.is_link_local or address in METADATA_ADDRESSES:
            return (
                f"{address} is a link-local or cloud metadata address and cannot be a bid endpoint"
            )
        if address.is_multicast or address.is_unspecified:
            return f"{address} cannot be a bid endpoint"
        if address.is_global or str(address) in self.allowlist:
            return None
        return (
            f"{address} is a loopback, private or reserved address not listed in "
            "CALLGRID_ENDPOINT_ALLOWLIST"
        )

    def allowed_addresses(self, addresses: Iterable[str]) -> tuple[list[str], str | None]:
        """The addresses of ``addresses`` a bid may go to, and why the first refused one was."""
        allowed: list[str] = []
        first_problem: str | None = None
        for text in addresses:
            address = parse_address(text)
            problem = "not an IP address" if address is None else self.address_problem(address)
            if problem is None:
                allowed.append(str(address))
            elif first_problem is None:
                first_problem = problem
        return allowed, first_problem


@functools.lru_cache(maxsize=4096)
def _url_problem(policy: EndpointPolicy, url: str) -> str | None:
    return policy._url_problem(url)


@functools.lru_cache(maxsize=4096)
def _text_address_problem(policy: EndpointPolicy, text: str) -> str | None:
    address = parse_address(text)
    return "not an IP address" if address is None else policy.address_problem(address)


def _host_key(host: str) -> str:
    """A host as the allow-list compares it: lower case, an IP address in its plain form."""
    address = parse_address(host)
    return str(address) if address is not None else host.strip().lower().rstrip(".")
