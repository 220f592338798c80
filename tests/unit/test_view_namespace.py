"""The namespace views are cached under in a shared Redis: one per database and code."""

from __future__ import annotations

import shutil
from pathlib import Path

from gateway import fingerprint
from gateway.fingerprint import view_namespace


def test_one_database_is_one_namespace_whoever_connects():
    a = view_namespace("postgresql+asyncpg://meterline:secret@db.internal:5432/billing")
    assert a == view_namespace("postgresql+psycopg://reader:other@db.internal:5432/billing")
    assert a != view_namespace("postgresql+asyncpg://meterline:secret@db.internal:5432/staging")
    assert a != view_namespace("postgresql+asyncpg://meterline:secret@db.other:5432/billing")


def test_a_relative_sqlite_file_is_named_by_where_it_is(tmp_path, monkeypatch):
    relative = "sqlite+aiosqlite:///var/meterline.db"
    monkeypatch.chdir(tmp_path)
    here = view_namespace(relative)
    assert here == view_namespace(f"sqlite+aiosqlite:///{tmp_path / 'var/meterline.db'}")
    (tmp_path / "other").mkdir()
    monkeypatch.chdir(tmp_path / "other")
    assert view_namespace(relative) != here


def test_other_code_is_another_namespace(tmp_path, monkeypatch):
    """The code's part is the source of the view packages under ``_ROOT``: a copy of
    them is the same namespace, and an edit to any module another one."""
    assert Path(__file__).resolve().parents[2] == fingerprint._ROOT
    url = "sqlite+aiosqlite:////srv/meterline.db"
    fingerprint._code.cache_clear()  # the tree as it is now
    before = view_namespace(url)
    for package in fingerprint._VIEW_CODE:
        shutil.copytree(
            fingerprint._ROOT / package,
            tmp_path / package,
            ignore=shutil.ignore_patterns("__pycache__"),
        )
    monkeypatch.setattr(fingerprint, "_ROOT", tmp_path)
    fingerprint._code.cache_clear()
    try:
        assert view_namespace(url) == before
        module = tmp_path / "experience_apis" / "portal" / "views.py"
        module.write_text(module.read_text() + "\n# the next release\n")
        fingerprint._code.cache_clear()
        assert view_namespace(url) != before
    finally:
        fingerprint._code.cache_clear()  # the real tree's hash for the tests after
