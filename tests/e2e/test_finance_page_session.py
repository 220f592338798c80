"""The finance page's sign-in, session cookie and guards, over HTTP (in-process, no
browser): what every page route does without a session, with a Bearer token instead, or
with a token lacking the scope; the sign-in's refusals; the cookie's attributes; the
page's security headers; cross-site and token-less forms refused; sign-in rate limited."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from litestar.routes import HTTPRoute

from process_apis.exceptions.service import raise_exception
from tests.support.app import gateway_client
from tests.support.auth import issue_token
from tests.support.finance_page import CSRF, FORM_NONCE, SESSION, set_cookie, sign_in


def session_routes(app) -> list[tuple[str, str]]:
    """(method, concrete path) of every route that takes the page's session cookie."""
    found = []
    for route in app.routes:
        if isinstance(route, HTTPRoute):
            for handler in route.route_handlers:
                if handler.opt.get("session_cookie"):
                    path = re.sub(r"\{[^}]+\}", "exc_none", route.path)
                    found += [(method, path) for method in sorted(handler.http_methods)]
    return found


async def test_no_page_route_is_reachable_without_a_session(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        routes = session_routes(client.app)
        assert {path for _, path in routes} == {
            "/finance",
            "/finance/sign-out",
            "/finance/exceptions/exc_none/retry",
            "/finance/exceptions/exc_none/resolve",
            "/finance/reconcile",
        }
        desk = await client.container.clients.create("desk", ["finance:read", "finance:write"])
        api_token = await issue_token(client, desk.client_id, desk.client_secret)
        auditor = await client.container.clients.create("auditor", ["billing:read"])
        other_token = await issue_token(client, auditor.client_id, auditor.client_secret)
        for method, path in routes:
            # No session, or a Bearer token (the API's way): off to the sign-in form.
            for headers in ({}, {"Authorization": f"Bearer {api_token}"}):
                answer = await client.request(method, path, headers=headers)
                assert answer.status_code == 303, (method, path, answer.text)
                location = answer.headers["location"]
                expected = "/finance/sign-in?next=%2Ffinance" if method == "GET" else ""
                assert location.startswith("/finance/sign-in") and expected in location
            # A session whose token lacks finance scopes: refused, as an HTML page.
            refused = await client.request(method, path, cookies={SESSION: other_token})
            assert refused.status_code == 403, (method, path)
            assert refused.headers["content-type"].startswith("text/html")
            assert "insufficient_scope" in refused.text and "finance:" in refused.text
        # A forged or expired session cookie leads to the sign-in form, and is dropped.
        answer = await client.get("/finance", cookies={SESSION: "not.a.token"})
        assert answer.status_code == 303
        assert set_cookie(answer, SESSION).startswith(f'{SESSION}=""')


async def test_sign_in_refusals_say_why_and_set_no_session(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        clients = client.container.clients
        desk = await clients.create("desk", ["finance:read"])
        billing = await clients.create("billing", ["billing:read", "billing:run"])
        gone = await clients.create("gone", ["finance:read"])
        await clients.set_active(gone.client_id, False)
        cases = [
            (desk.client_id, "wrong", 401, "not right"),
            ("cli_nobody", "whatever", 401, "not right"),
            (billing.client_id, billing.client_secret, 403, "finance:read"),
            (gone.client_id, gone.client_secret, 403, "disabled"),
        ]
        for client_id, secret, status, says in cases:
            answer = await sign_in(client, client_id, secret)
            assert answer.status_code == status, (client_id, answer.text)
            assert says in answer.text
            assert SESSION not in {c.split("=")[0] for c in answer.headers.get_list("set-cookie")}
        # The form's nonce must be the one its cookie holds (login CSRF).
        client.cookies.clear()
        answer = await client.post(
            "/finance/sign-in",
            data={"client_id": desk.client_id, "client_secret": desk.client_secret, "nonce": "x"},
        )
        assert answer.status_code == 403 and "expired" in answer.text


@pytest.mark.parametrize(
    ("asked", "landing"),
    [
        (
            "/finance?period=2026-01&kind=unknown_customer",
            "/finance?period=2026-01&kind=unknown_customer",
        ),
        ("https://elsewhere.example/finance", "/finance"),
        ("//elsewhere.example/finance", "/finance"),
        ("/finance-lookalike", "/finance"),
        ("/finance/sign-in", "/finance"),
    ],
)
async def test_sign_in_returns_only_to_the_page_itself(sqlite_url, asked, landing):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        desk = await client.container.clients.create("desk", ["finance:read"])
        answer = await sign_in(client, desk.client_id, desk.client_secret, asked)
        assert answer.status_code == 303 and answer.headers["location"] == landing


async def test_session_cookie_attributes_and_page_headers(sqlite_url):
    async with gateway_client(
        sqlite_url, authenticated=False, access_token_ttl_seconds=600
    ) as client:
        desk = await client.container.clients.create("desk", ["finance:read", "finance:write"])
        answer = await sign_in(client, desk.client_id, desk.client_secret)
        cookie = set_cookie(answer, SESSION).split("; ")
        assert {"HttpOnly", "Max-Age=600", "Path=/finance", "SameSite=strict"} <= set(cookie)
        assert "Secure" not in cookie  # plain http on a developer's machine

        page = await client.get("/finance")
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        policy = page.headers["content-security-policy"]
        assert "default-src 'none'" in policy and "frame-ancestors 'none'" in policy
        # The only style and script that may run are the page's own, by hash.
        for tag in ("style", "script"):
            body = re.search(rf"<{tag}>(.*?)</{tag}>", page.text, re.S).group(1)
            digest = base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()
            assert f"{tag}-src 'sha256-{digest}'" in policy
        assert "unsafe-inline" not in policy


async def test_cookies_are_secure_over_https_or_when_configured(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        desk = await client.container.clients.create("desk", ["finance:read"])
        client.base_url = "https://testserver"
        answer = await sign_in(client, desk.client_id, desk.client_secret)
        assert "Secure" in set_cookie(answer, SESSION).split("; ")
    async with gateway_client(
        sqlite_url, authenticated=False, finance_page_secure_cookie=True
    ) as client:
        desk = await client.container.clients.create("desk", ["finance:read"])
        form = await client.get("/finance/sign-in")
        assert "Secure" in set_cookie(form, "meterline_finance_sign_in").split("; ")
        # Over plain HTTP too, the session cookie is marked Secure. (The test client sends
        # no Secure cookie over http, so the form's cookie goes back by hand, as a
        # browser on the TLS side of a terminating proxy sends it.)
        nonce = FORM_NONCE.search(form.text).group(1)
        answer = await client.post(
            "/finance/sign-in",
            data={"client_id": desk.client_id, "client_secret": desk.client_secret, "nonce": nonce},
            headers={
                "Cookie": f"meterline_finance_sign_in={form.cookies['meterline_finance_sign_in']}"
            },
        )
        assert answer.status_code == 303, answer.text
        assert "Secure" in set_cookie(answer, SESSION).split("; ")


async def test_forms_from_another_site_or_without_the_token_are_refused(sqlite_url):
    async with gateway_client(sqlite_url, authenticated=False) as client:
        desk = await client.container.clients.create("desk", ["finance:read", "finance:write"])
        await sign_in(client, desk.client_id, desk.client_secret)
        csrf = CSRF.search((await client.get("/finance")).text).group(1)
        for form, headers in [
            ({}, {}),
            ({"csrf_token": csrf[:-2] + "xx"}, {}),
            ({"csrf_token": csrf}, {"Sec-Fetch-Site": "cross-site"}),
        ]:
            answer = await client.post("/finance/sign-out", data=form, headers=headers)
            assert answer.status_code == 403 and "csrf_failed" in answer.text
        assert (await client.get("/finance")).status_code == 200  # still signed in
        out = await client.post(
            "/finance/sign-out",
            data={"csrf_token": csrf},
            headers={"Sec-Fetch-Site": "same-origin"},
        )
        assert out.status_code == 303
        assert (await client.get("/finance")).status_code == 303


async def test_a_cookie_header_naming_the_session_twice_acts_as_one_session(sqlite_url):
    """The session that authenticates an action is the one its CSRF token is checked
    against: with two session cookies in the header (one tossed in by another page of the
    site), the action is done as the client whose token the form carried, never as the
    other one."""
    async with gateway_client(sqlite_url, authenticated=False) as client:
        clients = client.container.clients
        desk = await clients.create("desk", ["finance:read", "finance:write"])
        other = await clients.create("other desk", ["finance:read", "finance:write"])
        desk_token = await issue_token(client, desk.client_id, desk.client_secret)
        other_token = await issue_token(client, other.client_id, other.client_secret)
        async with client.container.sessions.begin() as session:
            await raise_exception(session, "unknown_customer", "cus_twice", "unknown", {})
        [record], _ = await client.container.exceptions.list(kind="unknown_customer")
        both = {"Cookie": f"{SESSION}={desk_token}; {SESSION}={other_token}"}
        page = await client.get("/finance", headers=both)
        assert page.status_code == 200 and other.client_id in page.text
        assert desk.client_id not in page.text
        csrf = CSRF.search(page.text).group(1)
        answer = await client.post(
            f"/finance/exceptions/{record.id}/resolve",
            data={
                "csrf_token": csrf,
                "action_key": "both1",
                "note": "billed elsewhere",
                "back": "/finance",
            },
            headers=both,
        )
        assert answer.status_code == 303, answer.text
        resolved = await client.container.exceptions.get(record.id)
        assert (resolved.status, resolved.resolved_by) == ("resolved", other.client_id)


async def test_sign_in_attempts_are_rate_limited_per_address(sqlite_url):
    async with gateway_client(
        sqlite_url, authenticated=False, rate_limit_token_ip="2/minute"
    ) as client:
        for _ in range(2):
            assert (await sign_in(client, "cli_guess", "guess")).status_code == 401
        answer = await sign_in(client, "cli_guess", "guess")
        assert answer.status_code == 429
        assert answer.headers["content-type"].startswith("text/html")
        assert int(answer.headers["retry-after"]) >= 1


async def test_a_clients_sign_ins_spend_its_token_budget(sqlite_url):
    """Signing in mints a token like the token endpoint does, and spends the same
    per-client budget: the page is no way around it."""
    async with gateway_client(
        sqlite_url, authenticated=False, rate_limit_token_client="2/minute"
    ) as client:
        desk = await client.container.clients.create("desk", ["finance:read"])
        other = await client.container.clients.create("other", ["finance:read"])
        await issue_token(client, desk.client_id, desk.client_secret)  # the endpoint's
        assert (await sign_in(client, desk.client_id, desk.client_secret)).status_code == 303
        refused = await sign_in(client, desk.client_id, desk.client_secret)
        assert refused.status_code == 429
        assert refused.headers["content-type"].startswith("text/html")
        assert SESSION not in refused.headers.get("set-cookie", "")
        # Another client's budget is its own.
        assert (await sign_in(client, other.client_id, other.client_secret)).status_code == 303
