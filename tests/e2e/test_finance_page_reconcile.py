"""The finance page shows a period's latest reconciliation, with when it was made, and
reconciles only when asked ("Reconcile now": a form carrying the session's CSRF token,
for ``finance:write``). Looking at the page leaves a standing variance's occurrences as
they were and spends no ERP call (the reference ERP runs behind the fault injector,
which counts every call). Over HTTP, in process: no browser needed."""

from __future__ import annotations

import re

from canonical.time import Period, utcnow
from process_apis.exceptions.service import raise_exception
from tests.support.app import gateway_client
from tests.support.auth import bearer
from tests.support.finance_page import CSRF, sign_in
from tests.support.seeding import USAGE_PLAN, seed

ACTION_KEY = re.compile(r'name="action_key" value="([^"]+)"')
FIGURE = re.compile(r'data-figure="reconciliation">([^<]+)<')
# A quota the tests never reach: it only puts the fault injector (and its call count)
# in front of the reference ERP.
COUNTED_ERP = {
    "erp_faults": "quota_per_second=1000",
    "event_max_age_days": 100,
    "worker_in_process": False,
}


def last_month() -> Period:
    now = Period.containing(utcnow())
    return Period(now.year - 1, 12) if now.month == 1 else Period(now.year, now.month - 1)


async def _billed_with_a_late_event(client, period: Period) -> None:
    """Three calls of cus_de billed and posted, then a late one: reconciling finds the
    quantity variance ``<period>:cus_de:calls`` until a memo bills it."""
    c = client.container
    await seed(c, USAGE_PLAN)
    operator = await bearer(client, c, ["usage:write"])

    def calls(*days: int) -> list[dict]:
        return [
            {
                "id": f"call-{day}",
                "source": "page",
                "event_type": "api.request",
                "customer_id": "cus_de",
                "timestamp": f"{period}-{day:02d}T12:00:00Z",
            }
            for day in days
        ]

    await client.post("/process/usage/v1/events", json=calls(2, 3, 4), headers=operator)
    await c.billing_runs.run(period)
    await c.outbox.drain()
    late = await client.post("/process/usage/v1/events", json=calls(28), headers=operator)
    assert late.status_code == 200 and late.json()["accepted"] == 1


async def _occurrences(client, subject: str) -> int | None:
    found = await client.container.finance.exceptions(kind="reconciliation_variance")
    return next((e.occurrences for e in found.data if e.subject == subject), None)


async def test_the_page_shows_the_latest_reconciliation_and_reconciles_when_asked(sqlite_url):
    period = last_month()
    subject = f"{period}:cus_de:calls"
    async with gateway_client(sqlite_url, authenticated=False, **COUNTED_ERP) as client:
        c = client.container
        await _billed_with_a_late_event(client, period)
        desk = await c.clients.create("desk", ["finance:read", "finance:write"])
        await sign_in(client, desk.client_id, desk.client_secret)
        url = f"/finance?period={period}"

        calls = c.erp.stats["calls"]
        page = await client.get(url)
        assert page.status_code == 200, page.text
        assert FIGURE.search(page.text).group(1) == "not reconciled"
        assert "The period has not been reconciled yet." in page.text
        assert "Reconcile now" in page.text
        assert c.erp.stats["calls"] == calls
        assert await _occurrences(client, subject) is None

        form = {
            "csrf_token": CSRF.search(page.text).group(1),
            "action_key": ACTION_KEY.search(page.text).group(1),
            "back": url,
            "period": str(period),
        }
        # Without the session's token the form is refused, and nothing is reconciled.
        forged = await client.post("/finance/reconcile", data={**form, "csrf_token": "forged"})
        assert forged.status_code == 403 and "csrf_failed" in forged.text
        assert c.erp.stats["calls"] == calls

        done = await client.post("/finance/reconcile", data=form)
        assert done.status_code == 303, done.text
        assert c.erp.stats["calls"] > calls
        assert await _occurrences(client, subject) == 1
        report = await c.reconciliation.latest(period)
        assert report is not None and report.status == "variances"
        made = f"{report.generated_at:%Y-%m-%d %H:%M:%S} UTC"
        shown = await client.get(done.headers["location"])
        assert f"Period {period} reconciled at {made}" in shown.text
        assert f"Reconciled at {made}" in shown.text
        assert FIGURE.search(shown.text).group(1) == "variances"
        assert "cus_de · calls" in shown.text  # the variance table

        # The same form again (a double click): replayed, not reconciled twice.
        calls = c.erp.stats["calls"]
        assert (await client.post("/finance/reconcile", data=form)).status_code == 303
        assert c.erp.stats["calls"] == calls
        assert await _occurrences(client, subject) == 1

        # Looking again and again shows that reconciliation and makes none.
        for _ in range(2):
            again = await client.get(url)
            assert f"Reconciled at {made}" in again.text
            assert FIGURE.search(again.text).group(1) == "variances"
        assert c.erp.stats["calls"] == calls
        assert await _occurrences(client, subject) == 1

        # A later "Reconcile now" (a new page, a new form) counts the variance again and
        # is the one shown.
        page = await client.get(url)
        form["action_key"] = ACTION_KEY.search(page.text).group(1)
        assert (await client.post("/finance/reconcile", data=form)).status_code == 303
        assert await _occurrences(client, subject) == 2
        latest = await c.reconciliation.latest(period)
        assert latest is not None and latest.generated_at > report.generated_at
        later = await client.get(url)
        assert f"Reconciled at {latest.generated_at:%Y-%m-%d %H:%M:%S} UTC" in later.text


async def test_a_read_only_client_is_not_offered_reconciling_and_cannot_post_it(sqlite_url):
    period = last_month()
    async with gateway_client(sqlite_url, authenticated=False, **COUNTED_ERP) as client:
        c = client.container
        auditor = await c.clients.create("auditor", ["finance:read"])
        await sign_in(client, auditor.client_id, auditor.client_secret)
        page = await client.get(f"/finance?period={period}")
        assert page.status_code == 200 and "Reconcile now" not in page.text
        calls = c.erp.stats["calls"]
        answer = await client.post(
            "/finance/reconcile",
            data={
                "csrf_token": CSRF.search(page.text).group(1),
                "back": "/finance",
                "period": str(period),
            },
        )
        assert answer.status_code == 403 and "finance:write" in answer.text
        assert c.erp.stats["calls"] == calls
        assert await c.reconciliation.latest(period) is None


async def test_an_action_posted_without_its_forms_key_acts_nothing(sqlite_url):
    """The key makes an action once per rendered form; a post without it (or with a
    malformed one) is refused rather than acted on unguarded."""
    period = last_month()
    async with gateway_client(sqlite_url, authenticated=False, **COUNTED_ERP) as client:
        c = client.container
        async with c.sessions.begin() as session:
            await raise_exception(session, "unknown_customer", "cus_keyless", "unknown", {})
        [record], _ = await c.exceptions.list(kind="unknown_customer")
        desk = await c.clients.create("desk", ["finance:read", "finance:write"])
        await sign_in(client, desk.client_id, desk.client_secret)
        page = await client.get(f"/finance?period={period}")
        csrf = CSRF.search(page.text).group(1)
        calls = c.erp.stats["calls"]

        for key in ({}, {"action_key": ""}, {"action_key": "not a key"}):
            form = {"csrf_token": csrf, "back": "/finance", **key}
            answer = await client.post("/finance/reconcile", data={**form, "period": str(period)})
            assert answer.status_code == 400 and "action_key_invalid" in answer.text
            answer = await client.post(
                f"/finance/exceptions/{record.id}/resolve", data={**form, "note": "elsewhere"}
            )
            assert answer.status_code == 400 and "Form refused" in answer.text

        assert c.erp.stats["calls"] == calls
        assert await c.reconciliation.latest(period) is None
        assert (await c.exceptions.get(record.id)).status == "open"

        # The same post with the form's key goes through.
        form = {"csrf_token": csrf, "back": "/finance", "note": "elsewhere"}
        form["action_key"] = ACTION_KEY.search(page.text).group(1)
        answer = await client.post(f"/finance/exceptions/{record.id}/resolve", data=form)
        assert answer.status_code == 303, answer.text
        assert (await c.exceptions.get(record.id)).status == "resolved"
