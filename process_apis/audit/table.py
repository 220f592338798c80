"""The audit log's tables, in the process layer's ``MetaData``.

``audit_log`` holds the hash-chained entries; ``seq`` is assigned by the appender
(previous + 1), never by the database, so a removed entry leaves a gap. ``audit_head``
is one row (``id = 1``) naming the last entry's seq and hash, updated in the same
transaction as every append: it is the lock that serialises appenders, and it lets
verification notice a truncated tail, which a chain alone cannot.

Both tables are append-only for the application (``audit_head`` is only ever moved
forward): in production the application's database role should hold only INSERT and
SELECT on ``audit_log`` (and SELECT, UPDATE on ``audit_head``).
"""

from __future__ import annotations

from sqlalchemy import CheckConstraint, Column, Index, Integer, String, Table

from canonical.persistence import JSONDoc, UTCDateTime
from process_apis.tables import metadata

__all__ = ["HEAD_ID", "audit_head", "audit_log"]

HEAD_ID = 1

audit_log = Table(
    "audit_log",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),
    Column("at", UTCDateTime, nullable=False),
    Column("actor", String(128), nullable=False),  # OAuth client id, or system | cli | worker
    Column("action", String(64), nullable=False),  # e.g. invoice.finalized
    Column("subject_type", String(64), nullable=False),
    Column("subject_id", String(255), nullable=False),
    Column("data", JSONDoc, nullable=False),
    Column("correlation_id", String(128), index=True),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    Index("ix_audit_log_subject", "subject_type", "subject_id", "seq"),
)

audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", Integer, nullable=False),
    Column("hash", String(64), nullable=False),
    CheckConstraint(f"id = {HEAD_ID}", name="single_row"),
)
