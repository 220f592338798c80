"""The namespace views are cached under in a shared Redis: one per database and code."""

from __future__ import annotations

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


def test_other_code_is_another_namespace(monkeypatch):
    url = "sqlite+aiosqlite:////srv/meterline.db"
    before = view_namespace(url)
    monkeypatch.setattr(fingerprint, "_code", lambda: "the next release")
    assert view_namespace(url) != before
    assert Path(__file__).resolve().parents[2] == fingerprint._ROOT
