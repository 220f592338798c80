"""The ERP port over HTTP: calls a remote ERP System API (``/system/erp/v1``)."""

from __future__ import annotations

from decimal import Decimal

from canonical.errors import NotFound
from canonical.model import (
    ErpDocument,
    ErpInvoice,
    ErpItem,
    ErpPayment,
    ErpPaymentIn,
    ErpRevenueJournal,
    LegalEntity,
    RevenueJournal,
)
from system_apis.erp.port import (
    AccountingPeriod,
    DocumentList,
    ErpInvoiceInput,
    ErpPaymentInput,
    ErpPaymentList,
    ItemInput,
    ItemList,
    LegalEntityInput,
    LegalEntityList,
    PeriodStatus,
    PeriodStatusInput,
    RevenueJournalInput,
    TrialBalance,
)
from system_apis.remote import PAGE_SIZE, RemoteSystem, segment

__all__ = ["HttpErp"]


class HttpErp:
    def __init__(self, remote: RemoteSystem) -> None:
        self._remote = remote

    async def put_legal_entity(self, entity: LegalEntity) -> LegalEntity:
        return await self._remote.call(
            "PUT",
            f"/legal-entities/{segment(entity.id)}",
            json=LegalEntityInput.of(entity),
            type=LegalEntity,
        )

    async def get_legal_entity(self, entity_id: str) -> LegalEntity:
        return await self._remote.call(
            "GET", f"/legal-entities/{segment(entity_id)}", type=LegalEntity
        )

    async def list_legal_entities(self) -> list[LegalEntity]:
        return await self._remote.collect("/legal-entities", LegalEntityList)

    async def put_item(self, item: ErpItem) -> ErpItem:
        return await self._remote.call(
            "PUT",
            f"/items/{segment(item.code)}",
            json=ItemInput(name=item.name, revenue_account=item.revenue_account),
            type=ErpItem,
        )

    async def list_items(self) -> list[ErpItem]:
        return await self._remote.collect("/items", ItemList, key=lambda i: i.code)

    async def set_period_status(
        self, legal_entity_id: str, period: str, status: PeriodStatus
    ) -> AccountingPeriod:
        return await self._remote.call(
            "PUT",
            f"/legal-entities/{segment(legal_entity_id)}/periods/{segment(period)}",
            json=PeriodStatusInput(status=status),
            type=AccountingPeriod,
        )

    async def get_period(self, legal_entity_id: str, period: str) -> AccountingPeriod:
        return await self._remote.call(
            "GET",
            f"/legal-entities/{segment(legal_entity_id)}/periods/{segment(period)}",
            type=AccountingPeriod,
        )

    async def post_invoice(self, invoice: ErpInvoice) -> ErpDocument:
        return await self._remote.call(
            "POST", "/documents", json=ErpInvoiceInput.of(invoice), type=ErpDocument
        )

    async def find_document(self, external_ref: str) -> ErpDocument | None:
        try:
            return await self._remote.call(
                "GET",
                "/documents/lookup",
                params={"external_ref": external_ref},
                type=ErpDocument,
            )
        except NotFound:
            return None

    async def get_document(self, document_id: str) -> ErpDocument:
        return await self._remote.call(
            "GET", f"/documents/{segment(document_id)}", type=ErpDocument
        )

    async def list_documents(
        self,
        *,
        limit: int = 50,
        starting_after: str | None = None,
        customer_id: str | None = None,
    ) -> tuple[list[ErpDocument], bool]:
        page = await self._remote.call(
            "GET",
            "/documents",
            type=DocumentList,
            params={"limit": limit, "starting_after": starting_after, "customer_id": customer_id},
        )
        return page.data, page.has_more

    async def record_payment(self, payment: ErpPaymentIn) -> ErpPayment:
        return await self._remote.call(
            "POST", "/payments", json=ErpPaymentInput.of(payment), type=ErpPayment
        )

    async def list_payments(
        self, *, after: str | None = None, limit: int = 100
    ) -> tuple[list[ErpPayment], bool]:
        # The contract serves at most PAGE_SIZE a page; ``has_more`` tells the rest.
        page = await self._remote.call(
            "GET",
            "/payments",
            type=ErpPaymentList,
            params={"limit": min(limit, PAGE_SIZE), "starting_after": after},
        )
        return page.data, page.has_more

    async def post_revenue_journal(self, journal: RevenueJournal) -> ErpRevenueJournal:
        return await self._remote.call(
            "POST",
            "/revenue-journals",
            json=RevenueJournalInput.of(journal),
            type=ErpRevenueJournal,
        )

    async def find_revenue_journal(self, external_ref: str) -> ErpRevenueJournal | None:
        try:
            return await self._remote.call(
                "GET",
                "/revenue-journals/lookup",
                params={"external_ref": external_ref},
                type=ErpRevenueJournal,
            )
        except NotFound:
            return None

    async def account_balances(
        self, legal_entity_id: str | None = None, currency: str | None = None
    ) -> dict[str, Decimal]:
        answer = await self._remote.call(
            "GET",
            "/trial-balance",
            type=TrialBalance,
            params={"legal_entity_id": legal_entity_id, "currency": currency},
        )
        return answer.balances
