"""The finance operations page in a real browser (headless Chromium) against a real
gateway process: signing in with a finance client's credentials, working an exception,
the CSRF and session guards, signing out.

The gateway runs as its own uvicorn process on a throwaway SQLite file, seeded first:
the billing world (two customers on the usage plan), usage on a few days of the month,
the month billed and posted to the ERP, and two exceptions — an unknown customer (whose
customer has been created since, so a retry clears it) and an unknown event type (which
no retry can fix)."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from canonical.model import Customer
from canonical.time import Period, utcnow
from tests.support.app import UNLIMITED, gateway_client
from tests.support.auth import issue_token
from tests.support.browser import chromium_page, require_browser
from tests.support.databases import throwaway_sqlite
from tests.support.processes import gateway_processes
from tests.support.seeding import USAGE_PLAN, moments, seed

FINANCE_API = "/experience/finance/v1"


class World:
    """What the seeding made: the finance client's credentials and the expected figures."""

    client_id: str
    secret: str
    reader_id: str
    reader_secret: str
    events: int
    period: str


async def _seed(url: str) -> World:
    world = World()
    period = Period.containing(utcnow())
    world.period = str(period)
    async with gateway_client(url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        at = moments(period, 6)
        events = [
            {
                "id": f"call-{n}",
                "source": "e2e",
                "event_type": "api.request",
                "customer_id": "cus_de" if n % 2 else "cus_fr",
                "timestamp": t,
            }
            for n, t in enumerate(at)
        ]
        events.append(
            {
                "id": "late-signup-1",
                "source": "e2e",
                "event_type": "api.request",
                "customer_id": "cus_late",
                "timestamp": at[0],
            }
        )
        events.append(
            {
                "id": "gpu-1",
                "source": "e2e",
                "event_type": "gpu.seconds",
                "customer_id": "cus_de",
                "timestamp": at[1],
            }
        )
        answer = await client.post("/process/usage/v1/events", json=events)
        assert answer.status_code == 200 and answer.json()["accepted"] == len(events)
        world.events = len(events)
        await c.billing_runs.run(period)
        await c.outbox.drain()
        # The customer the events named is created now: a retry will match them.
        await c.crm.put_customer(
            Customer(
                id="cus_late",
                name="Late Signup GmbH",
                legal_entity_id="le_de",
                billing_country="DE",
                currency="EUR",
            )
        )
        finance = await c.clients.create("finance desk", ["finance:read", "finance:write"])
        reader = await c.clients.create("finance auditor", ["finance:read"])
    world.client_id, world.secret = finance.client_id, finance.client_secret
    world.reader_id, world.reader_secret = reader.client_id, reader.client_secret
    return world


@pytest.fixture
async def served(tmp_path):
    """``(base_url, world)``: a seeded gateway process."""
    require_browser()
    async with throwaway_sqlite(tmp_path) as url:
        world = await _seed(url)
        env = {
            "METERLINE_DATABASE_URL": url,
            "METERLINE_LOG_LEVEL": "WARNING",
            **{f"METERLINE_{k.upper()}": v for k, v in UNLIMITED.items()},
        }
        async with gateway_processes(env, tmp_path / "gateway.log") as (http,):
            yield str(http.base_url).rstrip("/"), world, http


async def _sign_in(page, client_id: str, secret: str) -> None:
    await page.fill("#client_id", client_id)
    await page.fill("#client_secret", secret)
    await page.click("button:has-text('Sign in')")


async def test_sign_in_see_an_exception_retry_it_and_see_it_resolved(served):
    base_url, world, http = served
    async with chromium_page(base_url) as page:
        # Not signed in: the page sends the browser to the sign-in form, and back after.
        await page.goto("/finance")
        assert re.search(r"/finance/sign-in\?next=%2Ffinance$", page.url), page.url

        await _sign_in(page, world.client_id, "not-the-secret")
        assert "/finance/sign-in" in page.url
        assert "not right" in await page.inner_text("[role=alert]")

        await _sign_in(page, world.client_id, world.secret)
        await page.wait_for_url(re.compile(r"/finance$"))
        assert world.client_id in await page.inner_text("header")
        # The overview counts what was sent, and the charts are drawn.
        figure = await page.inner_text("[data-figure=usage-events]")
        assert int(figure.replace(",", "")) == world.events
        assert await page.locator("svg.chart rect.bar").count() >= 28
        # Looking reconciles nothing; "Reconcile now" does, and the page shows when.
        assert await page.inner_text("[data-figure=reconciliation]") == "not reconciled"
        await page.click("button:has-text('Reconcile now')")
        notice = page.locator("#notice")
        await notice.wait_for()
        assert f"Period {world.period} reconciled at" in await notice.inner_text()
        assert await page.inner_text("[data-figure=reconciliation]") == "balanced"
        made = await page.inner_text("[data-figure=reconciled-at]")
        assert made.startswith("Reconciled at")
        # Shown again as it was made, not made again.
        await page.goto("/finance")
        assert await page.inner_text("[data-figure=reconciled-at]") == made

        # The session cookie: HttpOnly, SameSite=Strict, only for the page's paths.
        [cookie] = [
            c for c in await page.context.cookies() if c["name"] == "meterline_finance_session"
        ]
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        assert cookie["path"] == "/finance"

        row = page.locator("#exceptions tr", has_text="cus_late")
        assert "unknown_customer" in await row.inner_text()
        assert "open" in await row.locator(".status").inner_text()
        exception_id = (await row.get_attribute("id")) or ""
        assert exception_id.startswith("exc_")

        await row.locator("button:has-text('Retry')").click()
        notice = page.locator("#notice")
        await notice.wait_for()
        assert exception_id in await notice.inner_text()
        assert await notice.locator(".status").inner_text() == "resolved"
        # Gone from the open exceptions; the other one is still there.
        assert await page.locator(f"#exceptions tr#{exception_id}").count() == 0
        assert await page.locator("#exceptions tr", has_text="gpu.seconds").count() == 1

        # The finance API agrees (with a Bearer token: the cookie opens no API).
        token = await issue_token(http, world.client_id, world.secret)
        headers = {"Authorization": f"Bearer {token}"}
        answer = await http.get(f"{FINANCE_API}/exceptions/{exception_id}", headers=headers)
        assert answer.json()["status"] == "resolved"
        resolved_at = datetime.fromisoformat(answer.json()["resolved_at"].replace("Z", "+00:00"))
        assert resolved_at <= utcnow()


async def test_forms_without_the_session_token_are_refused_and_sign_out_ends_it(served):
    base_url, world, http = served
    async with chromium_page(base_url) as page:
        await page.goto("/finance/sign-in")
        await _sign_in(page, world.client_id, world.secret)
        await page.wait_for_url(re.compile(r"/finance$"))
        row = page.locator("#exceptions tr", has_text="gpu.seconds")
        exception_id = await row.get_attribute("id")

        # A resolve form whose CSRF token is not the session's is refused.
        form = row.locator("form[action$='/resolve']")
        await form.locator("input[name=csrf_token]").evaluate("(e) => { e.value = 'forged'; }")
        await form.locator("input[name=note]").fill("not billed by Meterline")
        await form.locator("button").click()
        await page.locator("h2", has_text="Form refused").wait_for()
        # So is a post with the session cookie but no token at all (what another site's
        # form would send, were the cookie not SameSite=Strict).
        refused = await page.context.request.post(
            f"/finance/exceptions/{exception_id}/resolve",
            form={"note": "forged", "back": "/finance"},
            max_redirects=0,
        )
        assert refused.status == 403
        token = await issue_token(http, world.client_id, world.secret)
        headers = {"Authorization": f"Bearer {token}"}
        still = await http.get(f"{FINANCE_API}/exceptions/{exception_id}", headers=headers)
        assert still.json()["status"] == "open"

        # With the real token the same action goes through.
        await page.goto("/finance")
        form = page.locator(f"tr#{exception_id} form[action$='/resolve']")
        await form.locator("input[name=note]").fill("billed by the legacy system")
        await form.locator("button").click()
        await page.locator("#notice .status", has_text="resolved").wait_for()

        await page.click("button:has-text('Sign out')")
        await page.wait_for_url(re.compile(r"/finance/sign-in\?signed_out=1$"))
        assert "signed out" in await page.inner_text("[role=alert]")
        names = {c["name"] for c in await page.context.cookies()}
        assert "meterline_finance_session" not in names
        await page.goto("/finance")
        assert "/finance/sign-in" in page.url


async def test_a_read_only_finance_client_sees_the_page_but_no_actions(served):
    base_url, world, _ = served
    async with chromium_page(base_url) as page:
        await page.goto("/finance")
        await _sign_in(page, world.reader_id, world.reader_secret)
        await page.wait_for_url(re.compile(r"/finance$"))
        assert "read only" in await page.inner_text("header")
        assert await page.locator("#exceptions tr", has_text="cus_late").count() == 1
        assert await page.locator("#exceptions table button").count() == 0
        assert await page.locator("button:has-text('Reconcile now')").count() == 0
        # Posting the action anyway is refused for want of finance:write.
        csrf = await page.locator("header input[name=csrf_token]").get_attribute("value")
        row_id = await page.locator("#exceptions tr", has_text="cus_late").get_attribute("id")
        answer = await page.context.request.post(
            f"/finance/exceptions/{row_id}/retry",
            form={"csrf_token": csrf or "", "back": "/finance"},
            max_redirects=0,
        )
        assert answer.status == 403
        assert "finance:write" in await answer.text()
