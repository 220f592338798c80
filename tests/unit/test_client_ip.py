"""Client IP behind proxies: X-Forwarded-For counts only when a trusted proxy sent it."""

from __future__ import annotations

import pytest

from gateway.client_ip import TrustedProxies, client_ip, parse_ip


def scope(peer: str | None, *forwarded_for: str) -> dict:
    return {
        "type": "http",
        "client": (peer, 50_000) if peer is not None else None,
        "headers": [(b"x-forwarded-for", value.encode("latin-1")) for value in forwarded_for],
    }


PROXIES = TrustedProxies("10.0.0.0/8, 192.168.1.5, 2001:db8:ffff::/48")


def test_by_default_nobody_is_trusted_and_the_peer_is_the_client():
    assert client_ip(scope("203.0.113.7", "198.51.100.1"), TrustedProxies()) == "203.0.113.7"
    assert client_ip(scope("10.0.0.1", "198.51.100.1"), TrustedProxies("")) == "10.0.0.1"


def test_spoofed_header_from_an_untrusted_peer_is_ignored():
    assert client_ip(scope("203.0.113.7", "10.0.0.1"), PROXIES) == "203.0.113.7"
    assert client_ip(scope("203.0.113.7", "198.51.100.1, 10.0.0.2"), PROXIES) == "203.0.113.7"


def test_one_trusted_proxy_names_the_client():
    assert client_ip(scope("10.1.2.3", "198.51.100.1"), PROXIES) == "198.51.100.1"


def test_chain_is_walked_from_the_right_skipping_trusted_hops():
    # The client forged "1.1.1.1"; the first untrusted address from the right is the client.
    xff = "1.1.1.1, 198.51.100.1, 192.168.1.5, 10.9.9.9"
    assert client_ip(scope("10.0.0.1", xff), PROXIES) == "198.51.100.1"


def test_several_header_lines_form_one_list():
    assert client_ip(scope("10.0.0.1", "1.1.1.1", "198.51.100.1, 10.2.2.2"), PROXIES) == (
        "198.51.100.1"
    )


def test_all_hops_trusted_gives_the_furthest_hop():
    assert client_ip(scope("10.0.0.1", "10.0.0.3, 10.0.0.2"), PROXIES) == "10.0.0.3"


def test_trusted_peer_without_header_is_the_client():
    assert client_ip(scope("10.0.0.1"), PROXIES) == "10.0.0.1"
    assert client_ip(scope("10.0.0.1", " , "), PROXIES) == "10.0.0.1"


def test_ipv6_peers_proxies_and_clients():
    assert client_ip(scope("2001:db8:ffff::1", "2001:db8::42"), PROXIES) == "2001:db8::42"
    assert client_ip(scope("2001:db8:ffff::1", "[2001:DB8::42]:443"), PROXIES) == "2001:db8::42"
    # Not inside the trusted /48: the header is ignored.
    assert client_ip(scope("2001:db8:fffe::1", "198.51.100.1"), PROXIES) == "2001:db8:fffe::1"


def test_ipv4_mapped_ipv6_is_plain_ipv4():
    assert client_ip(scope("::ffff:10.0.0.1", "198.51.100.1"), PROXIES) == "198.51.100.1"
    assert client_ip(scope("10.0.0.1", "::ffff:198.51.100.1"), PROXIES) == "198.51.100.1"


def test_ports_are_dropped():
    assert client_ip(scope("10.0.0.1", "198.51.100.1:4711"), PROXIES) == "198.51.100.1"


@pytest.mark.parametrize(
    "garbage", ["unknown", "not-an-ip", "999.1.1.1", "1.2.3.4:http", "[::1", "_hidden", "1.2.3"]
)
def test_malformed_entry_stops_at_the_hop_that_forwarded_it(garbage):
    # Garbage must not become an identity of its own (one fresh bucket per request).
    assert client_ip(scope("10.0.0.1", f"198.51.100.1, {garbage}"), PROXIES) == "10.0.0.1"
    assert client_ip(scope("10.0.0.1", f"{garbage}, 10.0.0.2"), PROXIES) == "10.0.0.2"
    # Further left than the first untrusted address, it does not matter.
    assert client_ip(scope("10.0.0.1", f"{garbage}, 198.51.100.1"), PROXIES) == "198.51.100.1"


def test_missing_or_odd_peer():
    assert client_ip(scope(None), PROXIES) == "unknown"
    assert client_ip({"type": "http", "headers": []}, PROXIES) == "unknown"
    assert client_ip(scope("testclient", "198.51.100.1"), PROXIES) == "testclient"


@pytest.mark.parametrize(
    ("raw", "parsed"),
    [
        ("192.0.2.1", "192.0.2.1"),
        (" 192.0.2.1 ", "192.0.2.1"),
        ("192.0.2.1:80", "192.0.2.1"),
        ("::1", "::1"),
        ("[::1]", "::1"),
        ("[::1]:8080", "::1"),
        ('"[2001:db8::1]:1"', "2001:db8::1"),
        ("", None),
        ("[::1]x", None),
        ("192.0.2.1:", None),
        ("192.0.2.1:\uff11\uff12", None),  # non-ASCII digits
    ],
)
def test_parse_ip(raw, parsed):
    result = parse_ip(raw)
    assert (str(result) if result is not None else None) == parsed


def test_trusted_proxies_rejects_bad_configuration():
    with pytest.raises(ValueError, match="not an IP or CIDR"):
        TrustedProxies("10.0.0.0/8, proxy.internal")
    assert not TrustedProxies(" , ")
    assert TrustedProxies(["127.0.0.1"])
