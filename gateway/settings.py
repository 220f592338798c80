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
    # Event-time policy: older events, or events further in the future, are rejected.
    event_max_age_days: int = 35
    event_max_future_seconds: int = 300
    # Concurrent ingest transactions (group commit writers); 0 chooses: one on SQLite
    # (a single writer anyway), four on PostgreSQL.
    ingest_writers: int = 0
    # Where ingest hands accepted batches for storing: "direct" (a group commit in this
    # process) or "redis-streams" (a Redis stream that every gateway process and
    # `meterline worker` consume; needs redis_url). See docs/adr/0007.
    ingest_backbone: str = "direct"
    # redis-streams: seconds a request waits for a writer to confirm its commit before
    # it answers 503 ``unavailable``.
    ingest_reply_timeout_seconds: float = 30.0
    # redis-streams: a batch a writer read but did not acknowledge within this many
    # seconds (the writer died) is taken over by another writer. Not below the reply
    # timeout, so a taken-over batch never answers a request that still waits.
    ingest_claim_timeout_seconds: float = 60.0
    # redis-streams: batches the ingest stream may hold waiting for a writer; beyond,
    # ingest answers 503 ``unavailable`` (the stream is never trimmed: that would drop
    # accepted events).
    ingest_stream_max_batches: int = 2_000
    # Idempotency keys are kept at least this long (the design asks for 24 h or more).
    idempotency_ttl_hours: int = 48
    log_level: str = "INFO"

    # --- Billing runs and ERP posting -------------------------------------------------
    # Run queued billing runs and drain the ERP outbox in this process (the embedded
    # default). Off when dedicated ``meterline worker`` processes do it.
    worker_in_process: bool = True
    # Seconds between two looks for work when nothing woke the runner or the worker.
    worker_interval_seconds: float = 5.0
    # A billing run's runner renews its lease; a run whose lease ran out is resumed.
    billing_run_lease_seconds: float = 60.0
    # Grace window: invoices stay drafts this many days after their period ends, and
    # every run of the period re-rates them with the events since; the first run after
    # it finalizes them (the worker starts one). 0: invoices are finalized at once.
    billing_grace_days: float = 0.0
    # The ERP's API quota: the outbox worker never calls faster.
    erp_quota_per_second: float = 10.0
    # Calls per document in one go (backoff with jitter between them), then the next
    # attempt is scheduled in the outbox.
    erp_post_attempts: int = 4
    # Consecutive ERP failures that open the circuit breaker, and seconds it stays open.
    erp_breaker_threshold: int = 5
    erp_breaker_reset_seconds: float = 30.0
    # Fault injection into the reference ERP, for chaos tests and demos (never set it in
    # production), e.g. "latency_ms=5,error_rate=0.1,quota_per_second=20,
    # ambiguous_rate=0.05,seed=1,maintenance=2026-11-21T10:00:00Z/2026-11-21T10:05:00Z".
    erp_faults: str = ""

    # --- OAuth 2.0 -------------------------------------------------------------------
    # Issuer identifier of the built-in authorization server (``iss`` of its tokens and
    # base of its metadata); the gateway's public URL in production.
    oauth_issuer: str = "http://127.0.0.1:8000"
    # ``aud`` every access token must carry to be accepted here.
    oauth_audience: str = "meterline"
    access_token_ttl_seconds: int = 900
    # Validate tokens of an external authorization server instead (both must be set):
    # its issuer identifier and its JWKS URL. The built-in token endpoint then refuses.
    oauth_external_issuer: str | None = None
    oauth_external_jwks_url: str | None = None
    # Seconds between two JWKS refreshes triggered by an unknown ``kid``.
    jwks_refresh_min_seconds: float = 10.0

    # --- Rate limits (``limits`` syntax: "100/second", several joined by ";") --------
    # "moving-window" (exact) or "sliding-window-counter" (cheaper, approximate).
    rate_limit_strategy: str = "moving-window"
    rate_limit_ingest: str = "1000/second"
    rate_limit_read: str = "200/second"
    rate_limit_write: str = "50/second"
    rate_limit_billing_run: str = "30/minute"
    rate_limit_system: str = "500/second"
    rate_limit_partner: str = "20/second"
    # Token endpoint: per source IP before authentication, per client after it.
    rate_limit_token_ip: str = "60/minute"
    rate_limit_token_client: str = "30/minute"
    # Prefix of every Redis key the gateway writes (rate-limit counters and more).
    redis_key_prefix: str = "meterline"
    # Peers allowed to set X-Forwarded-For (comma-separated IPs or CIDRs); by default
    # nobody is, and the client IP is the TCP peer.
    trusted_proxies: str = ""

    # --- Experience API view cache (docs/adr/0014) ------------------------------------
    # Bytes of rendered views kept in each process (0: none), and Redis behind it, shared
    # by every process, when redis_url is set (unless turned off). Entries are keyed by
    # data versions, so they are never stale; the TTL (seconds) only bounds memory.
    experience_cache_bytes: int = 64_000_000
    experience_cache_redis: bool = True
    experience_cache_ttl_seconds: float = 600.0

    # --- Edge --------------------------------------------------------------------------
    # Origins allowed to call the APIs from a browser (comma-separated); none by default.
    cors_origins: str = ""
    # Send Strict-Transport-Security (only behind TLS).
    hsts: bool = False
    # The finance page's cookies are Secure when true; unset, when the page is served
    # over https (set true behind a proxy that terminates TLS).
    finance_page_secure_cookie: bool | None = None

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
