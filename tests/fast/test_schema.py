"""The migrations make exactly the schema the models declare (so a new column cannot be forgotten in either)."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine

from convlens.db.models import Base
from convlens.db.session import downgrade, upgrade


def test_migrations_match_the_models_and_go_back_down(tmp_path):
    url = f"sqlite:///{tmp_path / 'schema.db'}"
    upgrade(url)
    with create_engine(url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diff == [], diff
    downgrade(url)
    with create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT name FROM sqlite_master WHERE name = 'jobs'").all() == []
