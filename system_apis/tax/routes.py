"""The tax engine as a System API: ``/system/tax/v1``.

Handlers get the port by dependency injection (``tax``) and raise canonical errors; the
gateway renders problems."""

from __future__ import annotations

from typing import Annotated

from litestar import Router, get, post
from litestar.params import Dependency, Parameter

from canonical.access import requires
from system_apis.routing import MAX_DOCUMENT_BYTES
from system_apis.tax.port import TaxLineList, TaxPort, TaxQuoteSpec, VatCheck, VatNumber

__all__ = ["router"]

# Scopes a token needs here (published in the contract, enforced at the gateway).
READ = requires("system:read")

# The port the app provides; it is an implementation, not request data, so the signature
# model must not try to validate it (a Protocol has no isinstance check).
Port = Annotated[TaxPort, Dependency(skip_validation=True)]

VatPath = Annotated[
    str,
    Parameter(
        description="A VAT number with its country prefix, e.g. DE136695976.",
        pattern=VatNumber.__metadata__[0].pattern,
    ),
]


@post("/quotes", security=READ, summary="Quote tax per line", status_code=200)
async def quote(tax: Port, data: TaxQuoteSpec) -> TaxLineList:
    """One tax line per request line, same order. Every quote is logged for audit."""
    return TaxLineList(data=await tax.quote(data.to_request()), has_more=False)


@get(
    "/vat-numbers/{vat_id:str}",
    security=READ,
    summary="Validate an EU VAT number (format and checksum)",
)
async def validate_vat(tax: Port, vat_id: VatPath) -> VatCheck:
    return await tax.validate_vat(vat_id)


router = Router(
    request_max_body_size=MAX_DOCUMENT_BYTES,
    path="/system/tax/v1",
    route_handlers=[quote, validate_vat],
    tags=["system-tax"],
    opt={"rate_limit": "system"},
)
