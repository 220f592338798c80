"""Experience API for partners (resellers) about their customers (``/experience/partner/v1``).

Everything is confined to the partner of the access token's ``partner_id`` claim: a
customer or document of another tenant answers exactly the 404 of an unknown id, and a
token without the claim is refused (403 ``partner_claim_required``). The routes form
their own rate-limit class, ``partner`` (stricter than ``read``)."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get
from litestar.params import Parameter

from canonical.access import requires
from canonical.time import Period
from experience_apis.partner.service import PartnerService
from experience_apis.partner.views import (
    PartnerBillingSummary,
    PartnerCustomer,
    PartnerCustomerList,
    PartnerInvoice,
    PartnerInvoiceList,
    PartnerUsageSummary,
)
from experience_apis.routing import Caller
from process_apis.invoices.queries import ISSUED
from system_apis.routing import PERIOD_PATTERN, Limit, RefusedByRule, StartingAfter, one_of

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("partner:read")

TENANCY = (
    " Only the caller's own customers (the token's `partner_id` claim); another "
    "partner's answers 404 like an unknown id. A token without a partner claim is "
    "refused with 403 `partner_claim_required`."
)

# Identifiers as the systems of record issue them.
Id = Annotated[str, Parameter(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$", max_length=64)]
PeriodFilter = Annotated[
    str | None,
    Parameter(
        pattern=PERIOD_PATTERN,
        required=False,
        description="A billing period, YYYY-MM (calendar month, UTC).",
    ),
]
StatusFilter = one_of(*ISSUED, description="Only documents in this status.")


@get(
    "/customers",
    security=READ,
    summary="The partner's customers, by id",
    description="Cursor-paginated." + TENANCY,
)
async def customers(
    partner: PartnerService,
    caller: Caller,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> PartnerCustomerList:
    return await partner.customers(caller.partner_id, limit=limit, starting_after=starting_after)


@get(
    "/customers/{customer_id:str}",
    security=READ,
    summary="One of the partner's customers",
    description=TENANCY.strip(),
)
async def customer(partner: PartnerService, caller: Caller, customer_id: Id) -> PartnerCustomer:
    return await partner.customer(caller.partner_id, customer_id)


@get(
    "/customers/{customer_id:str}/billing-summary",
    security=READ,
    summary="A customer's balances per currency and its last invoice",
    description=(
        "Over the documents issued to the customer (a void that never reached the ERP "
        "aside): `invoiced` sums invoices and debit memos, `credited` credit memos, "
        "`paid` the payments received, and `open_balance` = invoiced - credited - paid "
        "(negative: the customer is in credit). A posted invoice that was voided counts "
        "with the credit memo reversing it, so the two cancel out. `open_documents` "
        "counts invoices and debit memos with an amount still due." + TENANCY
    ),
)
async def billing_summary(
    partner: PartnerService, caller: Caller, customer_id: Id
) -> PartnerBillingSummary:
    return await partner.billing_summary(caller.partner_id, customer_id)


@get(
    "/customers/{customer_id:str}/invoices",
    security=READ,
    summary="A customer's invoices and memos with their payment status, by id",
    description=(
        "Issued documents only (no drafts), cursor-paginated, optionally of one status "
        "and one billing period." + TENANCY
    ),
)
async def customer_invoices(
    partner: PartnerService,
    caller: Caller,
    customer_id: Id,
    status: StatusFilter = None,
    period: PeriodFilter = None,
    limit: Limit = 20,
    starting_after: StartingAfter = None,
) -> PartnerInvoiceList:
    return await partner.invoices(
        caller.partner_id,
        customer_id,
        status=status,
        period=Period.parse(period) if period else None,
        limit=limit,
        starting_after=starting_after,
    )


@get(
    "/customers/{customer_id:str}/usage",
    security=READ,
    summary="A customer's usage per meter in one billing period",
    raises=[RefusedByRule],
    description=(
        "Per meter its plans charge in the period: `quantity` aggregates the customer's "
        "events of the whole period as billing does (so far, while `in_progress`), and "
        "`invoiced_quantity` what the period's documents bill for it (credit memos "
        "subtracting; null when none does). The current period unless `period` is "
        "given; a period that has not started is refused (422 `period_not_started`)." + TENANCY
    ),
)
async def customer_usage(
    partner: PartnerService,
    caller: Caller,
    customer_id: Id,
    period: PeriodFilter = None,
) -> PartnerUsageSummary:
    return await partner.usage(
        caller.partner_id, customer_id, Period.parse(period) if period else None
    )


@get(
    "/invoices/{invoice_id:str}",
    security=READ,
    summary="An invoice or memo with its payment status and the payments received",
    description=TENANCY.strip(),
)
async def invoice(partner: PartnerService, caller: Caller, invoice_id: Id) -> PartnerInvoice:
    return await partner.invoice(caller.partner_id, invoice_id)


router = Router(
    path="/experience/partner/v1",
    route_handlers=[
        customers,
        customer,
        billing_summary,
        customer_invoices,
        customer_usage,
        invoice,
    ],
    tags=["experience-partner"],
    # Partners draw on their own, stricter budget (``rate_limit_partner``).
    opt={"rate_limit": "partner"},
)
