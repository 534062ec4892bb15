"""Fixtures the fast tier shares."""

from __future__ import annotations

import pytest


@pytest.fixture
def home(tmp_path, monkeypatch):
    """A fresh CONVLENS_HOME with its SQLite database at the current revision."""
    from convlens.db.session import ensure_current

    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    ensure_current()
    return tmp_path / "home"
