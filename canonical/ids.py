"""Prefixed, opaque identifiers (``cus_...``, ``inv_...``) that sort by creation time."""

from uuid6 import uuid7

__all__ = ["PREFIXES", "new_id", "new_uuid7"]

PREFIXES = {
    "customer": "cus",
    "subscription": "sub",
    "amendment": "amd",
    "meter": "mtr",
    "plan": "plan",
    "event": "evt",
    "run": "run",
    "invoice": "inv",
    "line": "il",
    "exception": "exc",
    "legal_entity": "le",
    "document": "doc",
    "journal": "jnl",
    "payment": "pay",
}


def new_uuid7() -> str:
    return str(uuid7())


def new_id(prefix: str) -> str:
    """A new identifier such as ``inv_0192f1c3...``; ``prefix`` is used as given."""
    return f"{prefix}_{uuid7().hex}"
