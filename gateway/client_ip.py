"""The client's IP address, trusting ``X-Forwarded-For`` only from configured proxies.

Anyone can send ``X-Forwarded-For``; only a proxy we run appends to it truthfully. So
the header is read only when the TCP peer is a trusted proxy, and then from the right:
each trusted hop is skipped, and the first address that is not a trusted proxy is the
client. Entries further left were written by that client and prove nothing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from litestar.types import Scope

__all__ = ["TrustedProxies", "client_ip"]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

UNKNOWN = "unknown"


def _is_port_suffix(text: str) -> bool:
    return text == "" or (
        text.startswith(":") and text[1:].isascii() and text[1:].isdigit() and len(text) <= 6
    )


def parse_ip(value: str) -> IPAddress | None:
    """An address as proxies and servers write it (``1.2.3.4``, ``1.2.3.4:80``, ``::1``,
    ``[::1]:443``), IPv4-mapped IPv6 as plain IPv4; ``None`` when it is not one."""
    value = value.strip().strip('"')
    if value.startswith("["):
        host, bracket, port = value[1:].partition("]")
        if not bracket or not _is_port_suffix(port):
            return None
        value = host
    elif value.count(":") == 1:  # IPv4 with a port; bare IPv6 has two colons or more
        value, port = value.split(":", 1)
        if not _is_port_suffix(":" + port):
            return None
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class TrustedProxies:
    """The peers allowed to set ``X-Forwarded-For``: IPs and CIDRs, comma-separated.

    A malformed entry is a configuration error and raises ``ValueError`` at startup
    rather than silently trusting less (or more) than intended."""

    def __init__(self, spec: str | Iterable[str] = "") -> None:
        entries = spec.split(",") if isinstance(spec, str) else list(spec)
        networks: list[IPNetwork] = []
        for entry in entries:
            entry = entry.strip()
            if not entry:
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError as exc:
                raise ValueError(f"trusted_proxies: not an IP or CIDR: {entry!r}") from exc
        self.networks = tuple(networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def __contains__(self, address: IPAddress | None) -> bool:
        if address is None:
            return False
        return any(address in network for network in self.networks)


def _forwarded_for(scope: Scope) -> list[str]:
    # Several X-Forwarded-For lines are one comma-separated list, in order (RFC 9110 §5.3).
    entries: list[str] = []
    for name, value in scope.get("headers", ()):
        if name.lower() == b"x-forwarded-for":
            entries.extend(value.decode("latin-1").split(","))
    return [entry.strip() for entry in entries if entry.strip()]


def client_ip(scope: Scope, trusted: TrustedProxies) -> str:
    """The client's address for ``scope``, normalised (``ipaddress`` text form)."""
    client = scope.get("client")
    raw_peer = client[0] if client else ""
    peer = parse_ip(raw_peer) if raw_peer else None
    if peer is None:
        # No TCP peer (a test transport, a Unix socket): one shared bucket is the safe side.
        return raw_peer or UNKNOWN
    if peer not in trusted:
        return str(peer)
    nearest = peer
    for entry in reversed(_forwarded_for(scope)):
        address = parse_ip(entry)
        if address is None:
            # A trusted hop wrote something that is not an address: keep the hop that
            # handed it over, so garbage cannot mint a fresh identity per request.
            return str(nearest)
        if address not in trusted:
            return str(address)
        nearest = address
    # Every hop is a trusted proxy (or there was no header): the furthest one is the client.
    return str(nearest)
