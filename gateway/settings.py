"""Settings from the environment, with the embedded defaults (SQLite, in-process,
reference systems)."""

from __future__ import annotations

import os
from pathlib import Path

import msgspec

__all__ = ["Settings"]

DEFAULT_DB = Path("var") / "meterline.db"


class Settings(msgspec.Struct, kw_only=True, frozen=True):
    database_url: str = f"sqlite+aiosqlite:///{DEFAULT_DB}"
    redis_url: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    # Edge limits: bodies above this many bytes answer 413 before they are read whole.
    max_body_bytes: int = 10_000_000
    # Ingest limits: a batch of more events than this answers 413 and stores nothing.
    max_batch_events: int = 10_000
    # Idempotency keys are kept at least this long (the design asks for 24 h or more).
    idempotency_ttl_hours: int = 48
    log_level: str = "INFO"

    @classmethod
    def from_env(cls, env: dict[str, str] | None = None, **overrides) -> Settings:
        env = dict(os.environ if env is None else env)
        values: dict[str, object] = {}
        for field in msgspec.structs.fields(cls):
            raw = env.get(f"METERLINE_{field.name.upper()}")
            if raw is None and field.name in ("database_url", "redis_url"):
                raw = env.get(field.name.upper())
            if raw is not None and raw != "":
                values[field.name] = raw
        values.update(overrides)
        return msgspec.convert(values, cls, strict=False)
