"""Portal queries, answered through process services only, each as a cached view.

Every answer follows the same steps:

1. read the version stamps (``DataVersions``) *first*, so whatever is read next is at
   least as new as them;
2. check the caller may see the customer (a partner only its own: anything else is the
   404 of an unknown id), on every request, never from the cache;
3. read the master data the view depends on (the customer, its terms), cheap lookups;
4. answer the view kept under a key of all of the above, or compute and keep it.

Document views key on the documents stamp, usage views on the usage stamp (kept only
if usage was settled before their data was read: else computed, not kept). See
docs/adr/0014."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from canonical import errors
from canonical.time import Period, as_utc, utcnow
from experience_apis.caching import CachedView, ViewCache, cache_key
from experience_apis.portal.summary_views import summary_view
from experience_apis.portal.usage_views import estimate_view, usage_view
from experience_apis.portal.views import (
    PortalEventList,
    PortalInvoiceList,
    detail,
    event_view,
    summary,
)
from process_apis.invoices.queries import ISSUED, DocumentQueries, IssuedDocument
from process_apis.invoices.store import InvoiceStore
from process_apis.lineage.service import LineageService
from process_apis.partners import PartnerTenancy
from process_apis.receivables import Receivables
from process_apis.usage.estimates import ChargeEstimates
from process_apis.usage.summaries import UsageSummaries
from process_apis.usage.terms import TermsReader, usage_period
from process_apis.versions import DataVersions

__all__ = ["PortalService"]

# The earliest time a view reaches back to (before it, no period exists here).
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class PortalService:
    def __init__(
        self,
        *,
        tenancy: PartnerTenancy,
        invoices: InvoiceStore,
        documents: DocumentQueries,
        receivables: Receivables,
        lineage: LineageService,
        terms: TermsReader,
        usage: UsageSummaries,
        estimates: ChargeEstimates,
        versions: DataVersions,
        cache: ViewCache,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._tenancy = tenancy
        self._invoices = invoices
        self._documents = documents
        self._receivables = receivables
        self._lineage = lineage
        self._terms = terms
        self._usage = usage
        self._estimates = estimates
        self._versions = versions
        self._cache = cache
        self._clock = clock

    async def _view(
        self,
        view: str,
        stamp: int,
        inputs: tuple,
        build: Callable[[], Awaitable[Any]],
        *,
        usage: bool = False,
    ) -> CachedView:
        """``build()``'s view, kept under ``view``, the data ``stamp`` and ``inputs``; a
        ``usage`` view only if usage is settled when it is built."""
        settled = self._versions.usage_settled if usage else None
        return await self._cache.view(cache_key(view, stamp, *inputs), build, settled=settled)

    # --- documents ----------------------------------------------------------------

    async def summary(self, customer_id: str, *, partner_id: str | None = None) -> CachedView:
        versions = await self._versions.read()
        customer = await self._tenancy.customer(partner_id, customer_id)
        terms = await self._terms.read(customer.id, Period.containing(self._clock()))

        async def build():
            balances = await self._receivables.balances(customer.id)
            latest = await self._receivables.last_invoice(customer.id)
            return summary_view(customer, terms, balances, latest)

        return await self._view("portal.summary", versions.documents, (customer, terms), build)

    async def customer_invoices(
        self,
        customer_id: str,
        *,
        partner_id: str | None = None,
        status: str | None = None,
        period: Period | None = None,
        limit: int = 20,
        starting_after: str | None = None,
    ) -> CachedView:
        versions = await self._versions.read()
        await self._tenancy.customer(partner_id, customer_id)

        async def build():
            # ``status`` is one of ISSUED (the route's filter); the query keeps drafts out.
            page, has_more = await self._documents.customer_documents(
                customer_id,
                statuses=ISSUED if status is None else (status,),
                period_start=period.first_day if period else None,
                limit=limit,
                starting_after=starting_after,
            )
            return PortalInvoiceList(data=[summary(d) for d in page], has_more=has_more)

        inputs = (customer_id, status, period, limit, starting_after)
        return await self._view("portal.invoices", versions.documents, inputs, build)

    async def invoice(self, invoice_id: str, *, partner_id: str | None = None) -> CachedView:
        versions = await self._versions.read()
        owner, customer = await self._tenancy.document_owner(partner_id, invoice_id)

        async def build():
            # Issued, and the caller's: the owner lookup above said so.
            invoice = await self._invoices.get(invoice_id)
            document = IssuedDocument(invoice=invoice, issued_at=owner.issued_at)
            memos = await self._documents.corrections(invoice_id)
            payments = await self._receivables.payments(invoice_id)
            return detail(document, customer, memos, payments)

        inputs = (invoice_id, customer)
        return await self._view("portal.invoice", versions.documents, inputs, build)

    async def line_events(
        self,
        invoice_id: str,
        line_id: str,
        *,
        partner_id: str | None = None,
        limit: int = 50,
        starting_after: int | None = None,
    ) -> CachedView:
        versions = await self._versions.read(usage=True)
        await self._tenancy.document_owner(partner_id, invoice_id)

        async def build():
            events, has_more = await self._lineage.line_events(
                invoice_id, line_id, limit=limit, starting_after=starting_after
            )
            return PortalEventList(data=[event_view(e) for e in events], has_more=has_more)

        # Documents too: a correction marks the late events its memo's lines bill.
        inputs = (versions.documents, invoice_id, line_id, limit, starting_after)
        return await self._view("portal.line_events", versions.usage, inputs, build, usage=True)

    # --- usage ----------------------------------------------------------------------

    async def usage(
        self, customer_id: str, *, partner_id: str | None = None, period: Period | None = None
    ) -> CachedView:
        versions = await self._versions.read(usage=True)
        customer = await self._tenancy.customer(partner_id, customer_id)
        now = self._clock()
        today, period = now.date(), usage_period(period, now)
        terms = await self._terms.read(customer.id, period)
        is_open = period == Period.containing(now)

        async def build():
            series = await self._usage.period(terms, today)
            return usage_view(customer.id, period, is_open, series)

        # The open period's series grows by a day at midnight: today is an input. The
        # meters listed include those the period's documents bill: their stamp is one.
        inputs = (terms, versions.documents, today if is_open else None)
        return await self._view("portal.usage", versions.usage, inputs, build, usage=True)

    async def estimate(
        self, customer_id: str, *, partner_id: str | None = None, as_of: datetime | None = None
    ) -> CachedView:
        versions = await self._versions.read(usage=True)
        customer = await self._tenancy.customer(partner_id, customer_id)
        now = self._clock()
        as_of = _check_as_of(as_of, now)
        terms = await self._terms.read(customer.id, Period.containing(as_of or now))

        async def build():
            charges, totals = await self._estimates.estimate(terms, as_of)
            return estimate_view(customer.id, terms.period, as_of or self._clock(), charges, totals)

        inputs = (terms, as_of)
        return await self._view("portal.estimate", versions.usage, inputs, build, usage=True)


def _check_as_of(as_of: datetime | None, now: datetime) -> datetime | None:
    """``as_of`` in UTC; refused outside [1970, now] (no estimate of the future)."""
    if as_of is None:
        return None
    try:
        as_of = as_utc(as_of)
        valid = EPOCH <= as_of <= now
    except (OverflowError, ValueError):
        valid = False
    if not valid:
        raise errors.BusinessRuleViolation(
            f"as_of must lie between {EPOCH:%Y-%m-%d} and now", code="as_of_out_of_range"
        )
    return as_of
