"""Route helpers shared by every layer's ``routes`` modules: the cursor-pagination
query parameters (``?limit=&starting_after=``) and the list envelope."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Parameter

__all__ = ["Limit", "StartingAfter"]

Limit = Annotated[
    int, Parameter(ge=1, le=100, description="Page size (1-100).", required=False)
]
StartingAfter = Annotated[
    str | None,
    Parameter(
        description="Cursor: the id of the last item of the previous page.",
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
        required=False,
    ),
]
