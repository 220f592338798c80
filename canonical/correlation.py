"""The correlation ID of the work in progress, carried by a context variable.

The gateway sets it per request; workers set it per job. Every record a layer creates
stores ``current()``, and every call to a wrapped system forwards it.
"""

from __future__ import annotations

import re
from contextvars import ContextVar

from canonical.ids import new_uuid7

__all__ = ["HEADER", "VALID", "current", "ensure", "use"]

HEADER = "X-Correlation-ID"
VALID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

_current: ContextVar[str | None] = ContextVar("correlation_id", default=None)


def current() -> str | None:
    return _current.get()


def ensure() -> str:
    """The current correlation ID, or a fresh UUIDv7 bound to this context."""
    value = _current.get()
    if value is None:
        value = new_uuid7()
        _current.set(value)
    return value


def use(value: str):
    """Bind ``value`` for the current context; returns a token for ``reset``."""
    return _current.set(value)


def reset(token) -> None:
    _current.reset(token)
