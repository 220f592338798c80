"""Route helpers shared by every layer's ``routes`` modules: the cursor-pagination
query parameters (``?limit=&starting_after=``), the billing-period pattern, paging of
short in-memory lists, optional enumerated filters and the 422 a read can state."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import Annotated, Any, TypeVar

from litestar.exceptions import HTTPException
from litestar.params import Parameter
from litestar.status_codes import HTTP_422_UNPROCESSABLE_ENTITY

__all__ = [
    "MAX_DOCUMENT_BYTES",
    "PERIOD_PATTERN",
    "Limit",
    "RefusedByRule",
    "StartingAfter",
    "one_of",
    "page_in_memory",
]

T = TypeVar("T")

# Bodies of the JSON document APIs (master data, quotes, run requests) are small; anything
# larger is refused with 413 before it is read whole. Ingest states its own, larger limit.
MAX_DOCUMENT_BYTES = 1_000_000

# A billing period: a calendar month, YYYY-MM, of the years 1900-2999 (as runs take it).
PERIOD_PATTERN = r"^(19|2[0-9])[0-9]{2}-(0[1-9]|1[0-2])$"

Limit = Annotated[int, Parameter(ge=1, le=100, description="Page size (1-100).", required=False)]
StartingAfter = Annotated[
    str | None,
    Parameter(
        description="Cursor: the id of the last item of the previous page.",
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        required=False,
    ),
]


class RefusedByRule(HTTPException):
    """Named in ``raises=[...]`` by a read a business rule can refuse (a period that has
    not started): the contract then documents its 422 problem. Never raised: the error
    itself is the layer's ``BusinessRuleViolation``."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY


def page_in_memory(
    items: Iterable[T], key: Callable[[T], str], limit: int, starting_after: str | None
) -> tuple[list[T], bool]:
    """One page (and whether more follow) of a short list already sorted by ``key``, for
    ports that hand over a whole list (master data, one customer's subscriptions)."""
    rest = [i for i in items if starting_after is None or key(i) > starting_after]
    return rest[:limit], len(rest) > limit


def one_of(*values: str, description: str | None = None) -> Any:
    """An optional query parameter taking one of ``values`` (absent: no filter).

    Typed ``str | None`` with a pattern rather than ``Literal[...] | None``: Litestar reads
    query values leniently, and ``?status=null`` would silently mean "no filter" for a
    ``Literal`` union instead of being refused as not one of ``values``."""
    return Annotated[
        str | None,
        Parameter(
            required=False,
            description=description,
            pattern="^(" + "|".join(re.escape(v) for v in values) + ")$",
            schema_extra={"enum": list(values)},
        ),
    ]
