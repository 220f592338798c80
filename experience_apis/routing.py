"""HTTP helpers shared by the Experience API routes."""

from __future__ import annotations

from typing import Annotated

from litestar.params import Dependency

from canonical.access import Caller as AuthenticatedCaller

__all__ = ["Caller"]

# The authenticated client, provided by the gateway from the verified access token (never
# request data); its ``partner_id`` confines partners to their own customers.
Caller = Annotated[AuthenticatedCaller, Dependency(skip_validation=True)]
