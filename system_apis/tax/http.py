"""``TaxPort`` over HTTP: a remote tax engine serving the System API contract
(``/system/tax/v1``), reached through ``RemoteSystem``."""

from __future__ import annotations

import msgspec

from canonical.model import TaxLine
from system_apis.remote import RemoteSystem
from system_apis.tax.port import TaxLineList, TaxRequest, VatCheck, VatNumber, to_wire

__all__ = ["HttpTax"]


class HttpTax:
    def __init__(self, remote: RemoteSystem) -> None:
        self._remote = remote

    async def quote(self, request: TaxRequest) -> list[TaxLine]:
        page = await self._remote.call("POST", "/quotes", json=to_wire(request), type=TaxLineList)
        return page.data

    async def validate_vat(self, vat_id: str) -> VatCheck:
        # The path form carries no spaces; a value that still does not fit the contract
        # cannot be a VAT number, so it is answered here rather than sent.
        compact = vat_id.replace(" ", "")
        try:
            msgspec.convert(compact, VatNumber)
        except msgspec.ValidationError:
            return VatCheck(vat_id=vat_id, valid=False, country=None, normalized=None)
        check = await self._remote.call("GET", f"/vat-numbers/{compact}", type=VatCheck)
        return msgspec.structs.replace(check, vat_id=vat_id)
