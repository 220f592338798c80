"""Process API: billing runs and invoices (``/process/billing/v1``)."""

from __future__ import annotations

from typing import Annotated

import msgspec
from litestar import Request, Response, Router, get, post
from litestar.datastructures import ResponseHeader
from litestar.params import Parameter

from canonical.access import requires
from canonical.model import Base, Invoice, Page
from canonical.time import Period
from process_apis.billing.runner import BillingRunner
from process_apis.billing.runs import BillingRun, BillingRunService
from process_apis.invoices.lifecycle import InvoiceLifecycle
from process_apis.invoices.store import InvoiceStore
from process_apis.routing import Idempotency, RequiredIdempotencyKey, respond_idempotently
from system_apis.routing import MAX_DOCUMENT_BYTES, PERIOD_PATTERN, Limit, StartingAfter, one_of

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("billing:read")
RUN = requires("billing:run")
ACT = requires("finance:write")

PeriodText = Annotated[str, msgspec.Meta(pattern=PERIOD_PATTERN)]
InvoiceStatusFilter = one_of("draft", "finalized", "posted", "partially_paid", "paid", "void")
CustomerId = Annotated[str, msgspec.Meta(min_length=1, max_length=64)]


class RunRequest(Base):
    period: PeriodText
    customer_ids: Annotated[list[CustomerId], msgspec.Meta(max_length=1000)] | None = None


class _RunId(msgspec.Struct):
    id: str


class RunList(Page):
    data: list[BillingRun]


class InvoiceList(Page):
    data: list[Invoice]


@post(
    "/runs",
    security=RUN,
    opt={"rate_limit": "billing_run"},
    status_code=202,
    summary="Start a billing run for a calendar month (asynchronous: follow it by its id)",
    response_headers=[
        ResponseHeader(
            name="Location",
            description="The run, to follow its progress",
            required=True,
            documentation_only=True,
        )
    ],
)
async def create_run(
    request: Request,
    data: RunRequest,
    billing_runs: BillingRunService,
    billing_runner: BillingRunner | None,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[BillingRun]:
    period = Period.parse(data.period)

    async def produce():
        run = await billing_runs.start(period, data.customer_ids)
        if billing_runner is not None:  # else a worker process picks it up
            billing_runner.kick()
        return 202, run

    response = await respond_idempotently(
        request, idempotency, idempotency_key, produce, required=True
    )
    if response.status_code == 202:  # also on a replay: where to follow the run
        run_id = msgspec.json.decode(response.content, type=_RunId).id
        response.headers["Location"] = f"{request.url.path.rstrip('/')}/{run_id}"
    return response


@get("/runs", security=READ, summary="List billing runs")
async def list_runs(
    billing_runs: BillingRunService, limit: Limit = 50, starting_after: StartingAfter = None
) -> RunList:
    runs, has_more = await billing_runs.list(limit=limit, starting_after=starting_after)
    return RunList(data=runs, has_more=has_more)


@get("/runs/{run_id:str}", security=READ, summary="Get a billing run with its counts")
async def get_run(billing_runs: BillingRunService, run_id: str) -> BillingRun:
    return await billing_runs.get(run_id)


@get("/invoices", security=READ, summary="List invoices")
async def list_invoices(
    invoices: InvoiceStore,
    customer_id: Annotated[str | None, Parameter(max_length=64, required=False)] = None,
    run_id: Annotated[str | None, Parameter(max_length=64, required=False)] = None,
    status: InvoiceStatusFilter = None,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
) -> InvoiceList:
    page, has_more = await invoices.list(
        customer_id=customer_id,
        run_id=run_id,
        status=status,
        limit=limit,
        starting_after=starting_after,
    )
    return InvoiceList(data=page, has_more=has_more)


@get("/invoices/{invoice_id:str}", security=READ, summary="Get an invoice with its lines and tax")
async def get_invoice(invoices: InvoiceStore, invoice_id: str) -> Invoice:
    return await invoices.get(invoice_id)


class VoidRequest(Base):
    # Why, for the record (kept on the document and audited).
    reason: Annotated[str, msgspec.Meta(min_length=1, max_length=500)]


class Voided(Base):
    invoice: Invoice
    # The credit memo reversing it in the ERP, when it had been posted.
    credit_memo: Invoice | None


@post(
    "/invoices/{invoice_id:str}/finalize",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Finalize a draft invoice (it is then posted to the ERP)",
)
async def finalize_invoice(
    request: Request,
    invoice_id: str,
    lifecycle: InvoiceLifecycle,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[Invoice]:
    async def produce():
        return 200, await lifecycle.finalize(invoice_id)

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


@post(
    "/invoices/{invoice_id:str}/void",
    security=ACT,
    opt={"rate_limit": "write"},
    status_code=200,
    summary="Void an invoice; a posted one is reversed in the ERP by a credit memo",
)
async def void_invoice(
    request: Request,
    invoice_id: str,
    data: VoidRequest,
    lifecycle: InvoiceLifecycle,
    idempotency: Idempotency,
    idempotency_key: RequiredIdempotencyKey = None,
) -> Response[Voided]:
    async def produce():
        invoice, memo = await lifecycle.void(invoice_id, data.reason)
        return 200, Voided(invoice=invoice, credit_memo=memo)

    return await respond_idempotently(request, idempotency, idempotency_key, produce, required=True)


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/process/billing/v1",
    route_handlers=[
        create_run,
        list_runs,
        get_run,
        list_invoices,
        get_invoice,
        finalize_invoice,
        void_invoice,
    ],
    tags=["process-billing"],
)
