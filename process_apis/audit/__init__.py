"""The audit log of state changes: append in the changing transaction, verify the chain.
See ``log`` for the hash chain and what it guarantees."""

from process_apis.audit.log import (
    GENESIS_HASH,
    AuditEntry,
    AuditEvent,
    AuditLog,
    AuditLogCorrupt,
    AuditProblem,
    VerifyResult,
    acting_as,
    append,
    append_many,
    audit_actor,
    verify,
)

__all__ = [
    "GENESIS_HASH",
    "AuditEntry",
    "AuditEvent",
    "AuditLog",
    "AuditLogCorrupt",
    "AuditProblem",
    "VerifyResult",
    "acting_as",
    "append",
    "append_many",
    "audit_actor",
    "verify",
]
