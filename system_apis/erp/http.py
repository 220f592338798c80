"""The ERP port over HTTP: calls a remote ERP System API (``/system/erp/v1``)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

from canonical.errors import NotFound
from canonical.model import ErpDocument, ErpInvoice, ErpItem, LegalEntity
from system_apis.erp.port import (
    AccountingPeriod,
    DocumentList,
    ErpInvoiceInput,
    ItemInput,
    ItemList,
    LegalEntityInput,
    LegalEntityList,
    PeriodStatus,
    PeriodStatusInput,
    TrialBalance,
)
from system_apis.remote import RemoteSystem

__all__ = ["HttpErp"]

PAGE = 100


def _seg(value: str) -> str:
    return quote(value, safe="")


def _params(**values: Any) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


class HttpErp:
    def __init__(self, remote: RemoteSystem) -> None:
        self._remote = remote

    async def put_legal_entity(self, entity: LegalEntity) -> LegalEntity:
        return await self._remote.call(
            "PUT",
            f"/legal-entities/{_seg(entity.id)}",
            json=LegalEntityInput.of(entity),
            type=LegalEntity,
        )

    async def get_legal_entity(self, entity_id: str) -> LegalEntity:
        return await self._remote.call(
            "GET", f"/legal-entities/{_seg(entity_id)}", type=LegalEntity
        )

    async def list_legal_entities(self) -> list[LegalEntity]:
        return await self._all("/legal-entities", LegalEntityList, lambda e: e.id)

    async def put_item(self, item: ErpItem) -> ErpItem:
        return await self._remote.call(
            "PUT",
            f"/items/{_seg(item.code)}",
            json=ItemInput(name=item.name, revenue_account=item.revenue_account),
            type=ErpItem,
        )

    async def list_items(self) -> list[ErpItem]:
        return await self._all("/items", ItemList, lambda i: i.code)

    async def set_period_status(
        self, legal_entity_id: str, period: str, status: PeriodStatus
    ) -> AccountingPeriod:
        return await self._remote.call(
            "PUT",
            f"/legal-entities/{_seg(legal_entity_id)}/periods/{_seg(period)}",
            json=PeriodStatusInput(status=status),
            type=AccountingPeriod,
        )

    async def get_period(self, legal_entity_id: str, period: str) -> AccountingPeriod:
        return await self._remote.call(
            "GET",
            f"/legal-entities/{_seg(legal_entity_id)}/periods/{_seg(period)}",
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
        return await self._remote.call("GET", f"/documents/{_seg(document_id)}", type=ErpDocument)

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
            params=_params(limit=limit, starting_after=starting_after, customer_id=customer_id),
        )
        return page.data, page.has_more

    async def account_balances(
        self, legal_entity_id: str | None = None, currency: str | None = None
    ) -> dict[str, Decimal]:
        answer = await self._remote.call(
            "GET",
            "/trial-balance",
            type=TrialBalance,
            params=_params(legal_entity_id=legal_entity_id, currency=currency),
        )
        return answer.balances

    async def _all(self, path: str, page_type: type, key) -> list:
        """Follows the cursor until ``has_more`` is false."""
        found: list = []
        after: str | None = None
        while True:
            page = await self._remote.call(
                "GET", path, params=_params(limit=PAGE, starting_after=after), type=page_type
            )
            found += page.data
            if not page.has_more or not page.data:
                return found
            after = key(page.data[-1])
