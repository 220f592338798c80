"""The one place the layers are wired: engine, system ports, process services and
experience services, built from settings. Routes receive these by name through
Litestar's dependency injection (see ``dependencies``)."""

from __future__ import annotations

from datetime import timedelta

import msgspec
from litestar.di import Provide
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker

from canonical.persistence import create_engine, session_factory
from experience_apis.portal.service import PortalService
from gateway.settings import Settings
from process_apis.billing.runs import BillingRunService
from process_apis.customers import CustomerDirectory
from process_apis.exceptions.service import ExceptionService
from process_apis.idempotency import DatabaseIdempotencyStore, IdempotencyStore
from process_apis.invoices.store import InvoiceStore
from process_apis.posting.service import PostingService
from process_apis.usage.service import UsageService
from system_apis.billing.port import BillingPort
from system_apis.billing.reference import ReferenceBilling
from system_apis.crm.port import CrmPort
from system_apis.crm.reference import ReferenceCrm
from system_apis.erp.port import ErpPort
from system_apis.erp.reference import ReferenceErp
from system_apis.tax.port import TaxPort
from system_apis.tax.reference import ReferenceTax

__all__ = ["Container", "build_container"]


class Container(msgspec.Struct, kw_only=True):
    settings: Settings
    engine: AsyncEngine
    sessions: async_sessionmaker
    crm: CrmPort
    billing: BillingPort
    tax: TaxPort
    erp: ErpPort
    usage: UsageService
    idempotency: IdempotencyStore
    exceptions: ExceptionService
    invoices: InvoiceStore
    posting: PostingService
    billing_runs: BillingRunService
    portal: PortalService

    def dependencies(self) -> dict[str, Provide]:
        """Every service a route may ask for, by parameter name."""
        names = (
            "sessions",
            "crm",
            "billing",
            "tax",
            "erp",
            "usage",
            "idempotency",
            "exceptions",
            "invoices",
            "posting",
            "billing_runs",
            "portal",
        )
        provided = {name: _constant(getattr(self, name)) for name in names}
        provided["max_batch_events"] = _constant(self.settings.max_batch_events)
        return provided

    async def aclose(self) -> None:
        await self.engine.dispose()


def _constant(value) -> Provide:
    def provide():
        return value

    return Provide(provide, use_cache=True, sync_to_thread=False)


def build_container(settings: Settings) -> Container:
    engine = create_engine(settings.database_url)
    sessions = session_factory(engine)
    crm = ReferenceCrm(sessions)
    billing = ReferenceBilling(sessions)
    tax = ReferenceTax(sessions)
    erp = ReferenceErp(sessions)
    invoices = InvoiceStore(sessions)
    posting = PostingService(sessions, erp, crm)
    exceptions = ExceptionService(sessions)
    usage = UsageService(sessions, crm, billing, exceptions)
    return Container(
        settings=settings,
        engine=engine,
        sessions=sessions,
        crm=crm,
        billing=billing,
        tax=tax,
        erp=erp,
        usage=usage,
        idempotency=DatabaseIdempotencyStore(
            sessions, ttl=timedelta(hours=settings.idempotency_ttl_hours)
        ),
        exceptions=exceptions,
        invoices=invoices,
        posting=posting,
        billing_runs=BillingRunService(sessions, crm, billing, tax, erp, posting, usage),
        portal=PortalService(invoices, CustomerDirectory(crm)),
    )
