"""Argon2 at its smallest cost, for every test: the registry keeps hashing and verifying
secrets exactly as in production, only with cheap parameters, so the many tests that
register clients (``gateway_client`` registers one unless told otherwise) do not each
pay a production-cost hash and verification.

tests/conftest.py imports ``cheap_argon2``, which makes it apply to every test. A test of
the stored hash itself puts the production hasher back with its own ``monkeypatch``
(see tests/integration/test_clients_cli.py); processes started by tests (the
``meterline`` command, uvicorn) always use the production hasher."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from gateway.auth import clients


@pytest.fixture(autouse=True)
def cheap_argon2(monkeypatch):
    monkeypatch.setattr(
        clients, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
