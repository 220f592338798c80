"""Argon2 at its smallest cost, for tests that register many clients: the registry keeps
hashing and verifying secrets exactly as in production, only with cheap parameters.
Tests of the stored hash itself do not use this.

Import ``cheap_argon2`` into a test module and apply it with
``pytestmark = pytest.mark.usefixtures("cheap_argon2")`` (or per test)."""

from __future__ import annotations

import pytest
from argon2 import PasswordHasher

from gateway.auth import clients


@pytest.fixture
def cheap_argon2(monkeypatch):
    monkeypatch.setattr(
        clients, "_hasher", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )
