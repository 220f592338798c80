"""A correlation trace asks the ERP only about documents Meterline posted, by the ERP's
own id: none for documents still in the outbox."""

from __future__ import annotations

from canonical.time import Period, utcnow
from process_apis.lineage.service import LineageService
from tests.support.app import gateway_client
from tests.support.seeding import USAGE_PLAN, seed


class Counted:
    """The reference ERP, its document reads counted."""

    def __init__(self, erp) -> None:
        self._erp = erp
        self.reads: list[str] = []

    def __getattr__(self, name):
        return getattr(self._erp, name)

    async def find_document(self, external_ref):
        self.reads.append(f"find:{external_ref}")
        return await self._erp.find_document(external_ref)

    async def get_document(self, document_id):
        self.reads.append(f"get:{document_id}")
        return await self._erp.get_document(document_id)


async def test_a_trace_reads_only_posted_documents_from_the_erp(database_url):
    async with gateway_client(database_url, worker_in_process=False) as client:
        c = client.container
        await seed(c, USAGE_PLAN)
        await c.billing_runs.run(Period.containing(utcnow()))
        [correlation_id] = {
            i["correlation_id"]
            for i in (await client.get("/process/billing/v1/invoices")).json()["data"]
        }
        erp = Counted(c.erp)
        lineage = LineageService(c.sessions, erp)

        unposted = await lineage.trace(correlation_id)
        assert len(unposted.documents.data) == 2
        assert unposted.erp_documents.data == []
        assert erp.reads == []  # nothing posted: nothing to ask

        await c.outbox.drain()
        posted = await lineage.trace(correlation_id)
        invoices = {d.id: d.erp_document_id for d in posted.documents.data}
        assert {d.external_ref: d.id for d in posted.erp_documents.data} == invoices
        assert sorted(erp.reads) == sorted(f"get:{i}" for i in invoices.values())
