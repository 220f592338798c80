"""What tells one deployment's cached views from another's when they share a Redis.

Views are cached under keys made of version stamps and ids (``experience_apis.caching``),
which two databases can hold alike (demo data has fixed ids; stamps count from 1), and
whose rendering changes with the code. So every view is kept in a namespace of the
database it was read from and the code that rendered it: a staging and a demo gateway on
one Redis never answer each other's views, and during a rolling upgrade the new code
never serves a body the old one rendered."""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from sqlalchemy.engine import make_url

__all__ = ["view_namespace"]

_ROOT = Path(__file__).resolve().parents[1]
# The packages whose code decides what a view holds and how it is encoded.
_VIEW_CODE = ("canonical", "system_apis", "process_apis", "experience_apis")


@functools.cache
def _code() -> str:
    """A hash of the source of every module a view is computed by (a few ms, once)."""
    digest = hashlib.sha256()
    for package in _VIEW_CODE:
        for path in sorted((_ROOT / package).rglob("*.py")):
            digest.update(str(path.relative_to(_ROOT)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def view_namespace(database_url: str) -> str:
    """A short name for (the database, the code): the database by its URL without
    credentials (where it is, not who connects), the code by its source."""
    url = make_url(database_url)
    database = url.database or ""
    if url.get_backend_name() == "sqlite" and database and database != ":memory:":
        database = str(Path(database).resolve())  # a relative file is where it is run
    where = f"{url.get_backend_name()}://{url.host or ''}:{url.port or ''}/{database}"
    return hashlib.sha256(f"{where}\n{_code()}".encode()).hexdigest()[:16]
