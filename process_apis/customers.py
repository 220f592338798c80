"""Customer lookups for the layers above, which never call the CRM port themselves."""

from __future__ import annotations

from canonical.model import Customer
from system_apis.crm.port import CrmPort

__all__ = ["CustomerDirectory"]


class CustomerDirectory:
    def __init__(self, crm: CrmPort) -> None:
        self._crm = crm

    async def get(self, customer_id: str) -> Customer:
        return await self._crm.get_customer(customer_id)
