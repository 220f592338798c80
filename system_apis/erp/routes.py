"""The ERP System API (``/system/erp/v1``): the ERP port over HTTP.

The port arrives by dependency injection as ``erp``; canonical errors raised here become
problem+json at the gateway.
"""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post, put
from litestar.exceptions import NotFoundException
from litestar.params import Dependency, Parameter

from canonical.access import requires
from canonical.errors import NotFound
from canonical.model import ErpDocument, ErpItem, ErpPayment, ErpRevenueJournal, LegalEntity
from system_apis.erp.port import (
    CODE_PATTERN,
    PERIOD_PATTERN,
    AccountingPeriod,
    DocumentList,
    ErpInvoiceInput,
    ErpPaymentInput,
    ErpPaymentList,
    ErpPort,
    ItemInput,
    ItemList,
    LegalEntityInput,
    LegalEntityList,
    PeriodStatusInput,
    RevenueJournalInput,
    TrialBalance,
)
from system_apis.routing import MAX_DOCUMENT_BYTES, Limit, StartingAfter, page_in_memory

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("system:read")
WRITE = requires("system:write")

Erp = Annotated[ErpPort, Dependency(skip_validation=True)]
# A caller-chosen id must be able to be a key; lookups take any string (unknown: 404).
NewId = Annotated[str, Parameter(max_length=64, pattern=CODE_PATTERN)]
PeriodPath = Annotated[str, Parameter(pattern=PERIOD_PATTERN, description="YYYY-MM")]
IdFilter = Annotated[str | None, Parameter(max_length=64, pattern=CODE_PATTERN, required=False)]
CurrencyFilter = Annotated[str | None, Parameter(pattern=r"^[A-Z]{3}$", required=False)]
ExternalRefQuery = Annotated[str, Parameter(pattern=r"^[!-~]{1,128}$")]


@put("/legal-entities/{entity_id:str}", security=WRITE, operation_id="erpPutLegalEntity")
async def put_legal_entity(erp: Erp, entity_id: NewId, data: LegalEntityInput) -> LegalEntity:
    return await erp.put_legal_entity(data.with_id(entity_id))


@get("/legal-entities/{entity_id:str}", security=READ, operation_id="erpGetLegalEntity")
async def get_legal_entity(erp: Erp, entity_id: str) -> LegalEntity:
    return await erp.get_legal_entity(entity_id)


@get("/legal-entities", security=READ, operation_id="erpListLegalEntities")
async def list_legal_entities(
    erp: Erp, limit: Limit = 50, starting_after: StartingAfter = None
) -> LegalEntityList:
    data, has_more = page_in_memory(
        await erp.list_legal_entities(), lambda e: e.id, limit, starting_after
    )
    return LegalEntityList(data=data, has_more=has_more)


@put("/items/{code:str}", security=WRITE, operation_id="erpPutItem")
async def put_item(erp: Erp, code: NewId, data: ItemInput) -> ErpItem:
    """Create or replace an item and the revenue account its sales book to."""
    return await erp.put_item(data.with_code(code))


@get("/items", security=READ, operation_id="erpListItems")
async def list_items(erp: Erp, limit: Limit = 50, starting_after: StartingAfter = None) -> ItemList:
    data, has_more = page_in_memory(await erp.list_items(), lambda i: i.code, limit, starting_after)
    return ItemList(data=data, has_more=has_more)


@put(
    "/legal-entities/{entity_id:str}/periods/{period:str}",
    security=WRITE,
    operation_id="erpSetPeriodStatus",
)
async def set_period_status(
    erp: Erp, entity_id: str, period: PeriodPath, data: PeriodStatusInput
) -> AccountingPeriod:
    """Open or close an accounting period; posting into a closed period is refused."""
    return await erp.set_period_status(entity_id, period, data.status)


@get(
    "/legal-entities/{entity_id:str}/periods/{period:str}",
    security=READ,
    operation_id="erpGetPeriod",
)
async def get_period(erp: Erp, entity_id: str, period: PeriodPath) -> AccountingPeriod:
    return await erp.get_period(entity_id, period)


@post("/documents", security=WRITE, operation_id="erpPostDocument")
async def post_document(erp: Erp, data: ErpInvoiceInput) -> ErpDocument:
    """Post an AR invoice or memo with its journal. Idempotent by ``external_ref``: a
    repeat returns the document already created."""
    return await erp.post_invoice(data.to_canonical())


@get("/documents/lookup", security=READ, operation_id="erpFindDocument", raises=[NotFoundException])
async def find_document(erp: Erp, external_ref: ExternalRefQuery) -> ErpDocument:
    """The document posted with this ``external_ref`` (404 when none was)."""
    found = await erp.find_document(external_ref)
    if found is None:
        raise NotFound(f"no document with external_ref {external_ref}", code="document_not_found")
    return found


@get("/documents/{document_id:str}", security=READ, operation_id="erpGetDocument")
async def get_document(erp: Erp, document_id: str) -> ErpDocument:
    return await erp.get_document(document_id)


@get("/documents", security=READ, operation_id="erpListDocuments")
async def list_documents(
    erp: Erp,
    limit: Limit = 50,
    starting_after: StartingAfter = None,
    customer_id: IdFilter = None,
) -> DocumentList:
    data, has_more = await erp.list_documents(
        limit=limit, starting_after=starting_after, customer_id=customer_id
    )
    return DocumentList(data=data, has_more=has_more)


@post("/payments", security=WRITE, operation_id="erpRecordPayment", raises=[NotFoundException])
async def record_payment(erp: Erp, data: ErpPaymentInput) -> ErpPayment:
    """Record a customer payment against an invoice or debit memo (Dr bank, Cr AR).
    Idempotent by ``external_ref``: a repeat returns the payment already recorded, another
    payment under the same ref is refused (409). An unknown document answers 404;
    overpaying the document, another currency, a credit memo or a closed period of
    ``received_on`` answer 422."""
    return await erp.record_payment(data.to_canonical())


@get("/payments", security=READ, operation_id="erpListPayments", raises=[NotFoundException])
async def list_payments(
    erp: Erp, limit: Limit = 50, starting_after: StartingAfter = None
) -> ErpPaymentList:
    """Payments in the order they were recorded: a poller resumes with ``starting_after``
    set to the last payment id it saw (404 when that is no payment's id)."""
    data, has_more = await erp.list_payments(after=starting_after, limit=limit)
    return ErpPaymentList(data=data, has_more=has_more)


@post("/revenue-journals", security=WRITE, operation_id="erpPostRevenueJournal")
async def post_revenue_journal(erp: Erp, data: RevenueJournalInput) -> ErpRevenueJournal:
    """Book a revenue recognition journal (per item: Cr revenue, Dr contract balance
    2400; negative amounts the other way). Idempotent by ``external_ref``: a repeat
    returns the journal already booked. A closed period, an unknown item or legal
    entity answer 422."""
    return await erp.post_revenue_journal(data.to_canonical())


@get(
    "/revenue-journals/lookup",
    security=READ,
    operation_id="erpFindRevenueJournal",
    raises=[NotFoundException],
)
async def find_revenue_journal(erp: Erp, external_ref: ExternalRefQuery) -> ErpRevenueJournal:
    """The revenue journal booked with this ``external_ref`` (404 when none was)."""
    found = await erp.find_revenue_journal(external_ref)
    if found is None:
        raise NotFound(
            f"no revenue journal with external_ref {external_ref}", code="journal_not_found"
        )
    return found


@get("/trial-balance", security=READ, operation_id="erpTrialBalance")
async def trial_balance(
    erp: Erp, legal_entity_id: IdFilter = None, currency: CurrencyFilter = None
) -> TrialBalance:
    """Debit minus credit per GL account; filter by currency for meaningful balances."""
    balances = await erp.account_balances(legal_entity_id, currency)
    return TrialBalance(legal_entity_id=legal_entity_id, currency=currency, balances=balances)


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/system/erp/v1",
    route_handlers=[
        put_legal_entity,
        get_legal_entity,
        list_legal_entities,
        put_item,
        list_items,
        set_period_status,
        get_period,
        post_document,
        find_document,
        get_document,
        list_documents,
        record_payment,
        list_payments,
        post_revenue_journal,
        find_revenue_journal,
        trial_balance,
    ],
    tags=["system-erp"],
    opt={"rate_limit": "system"},
)
