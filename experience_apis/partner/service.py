"""Partner queries, answered through process services only and always inside the
caller's tenant.

Every method takes the caller's ``partner_id`` (from the verified token, never from the
request) and refuses a caller without one: this API has no first-party reading, so a
missing claim is a 403 ``partner_claim_required``, not an unfiltered view of every
tenant. Another partner's customer or document answers the 404 of an unknown id
(``process_apis.partners``)."""

from __future__ import annotations

from datetime import date

from canonical import errors
from canonical.time import Period, utcnow
from experience_apis.partner.views import (
    PartnerBillingSummary,
    PartnerCustomer,
    PartnerCustomerList,
    PartnerInvoice,
    PartnerInvoiceList,
    PartnerUsageSummary,
    billing_summary,
    customer_view,
    invoice_detail,
    invoice_summary,
    usage_summary,
)
from process_apis.partners import PartnerTenancy
from process_apis.receivables import Receivables
from process_apis.usage.summaries import UsageSummaries
from process_apis.usage.terms import TermsReader, usage_period

__all__ = ["PartnerService"]


def _tenant(partner_id: str | None) -> str:
    if not partner_id:
        raise errors.Forbidden(
            "the Partner API answers partner clients only: this access token carries no "
            "partner_id claim",
            code="partner_claim_required",
        )
    return partner_id


class PartnerService:
    def __init__(
        self,
        tenancy: PartnerTenancy,
        receivables: Receivables,
        terms: TermsReader,
        usage: UsageSummaries,
    ) -> None:
        self._tenancy = tenancy
        self._receivables = receivables
        self._terms = terms
        self._usage = usage

    async def customers(
        self, partner_id: str | None, *, limit: int = 20, starting_after: str | None = None
    ) -> PartnerCustomerList:
        page, has_more = await self._tenancy.customers(
            _tenant(partner_id), limit=limit, starting_after=starting_after
        )
        return PartnerCustomerList(data=[customer_view(c) for c in page], has_more=has_more)

    async def customer(self, partner_id: str | None, customer_id: str) -> PartnerCustomer:
        return customer_view(await self._tenancy.customer(_tenant(partner_id), customer_id))

    async def billing_summary(
        self, partner_id: str | None, customer_id: str
    ) -> PartnerBillingSummary:
        customer = await self._tenancy.customer(_tenant(partner_id), customer_id)
        as_of = utcnow()
        balances = await self._receivables.balances(customer.id)
        last = await self._receivables.last_invoice(customer.id)
        return billing_summary(customer.id, as_of, balances, last)

    async def invoices(
        self,
        partner_id: str | None,
        customer_id: str,
        *,
        status: str | None = None,
        period: Period | None = None,
        limit: int = 20,
        starting_after: str | None = None,
    ) -> PartnerInvoiceList:
        period_start: date | None = period.first_day if period else None
        page, has_more = await self._tenancy.invoices(
            _tenant(partner_id),
            customer_id,
            status=status,
            period_start=period_start,
            limit=limit,
            starting_after=starting_after,
        )
        return PartnerInvoiceList(data=[invoice_summary(d) for d in page], has_more=has_more)

    async def invoice(self, partner_id: str | None, invoice_id: str) -> PartnerInvoice:
        document, customer = await self._tenancy.invoice(_tenant(partner_id), invoice_id)
        payments = await self._receivables.payments(invoice_id)
        return invoice_detail(document, customer, payments)

    async def usage(
        self, partner_id: str | None, customer_id: str, period: Period | None = None
    ) -> PartnerUsageSummary:
        customer = await self._tenancy.customer(_tenant(partner_id), customer_id)
        as_of = utcnow()
        period = usage_period(period, as_of)
        # The portal's usage read, without the daily series: both list the same meters.
        terms = await self._terms.read(customer.id, period)
        meters = await self._usage.period(terms)
        return usage_summary(customer.id, period, as_of, meters)
