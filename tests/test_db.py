"""Migrations on SQLite and PostgreSQL, no drift between models and migrations, the docker-compose file."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from alembic import command
from sqlalchemy import inspect

from convlens.db.session import alembic_config, current_revision, downgrade, engine, head_revision, upgrade
from services import create_pg_database, drop_pg_database

pytestmark = pytest.mark.services

TABLES = {"jobs", "metrics", "predictions", "artifacts", "models", "alembic_version"}


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
    else:
        pg = create_pg_database()
        yield pg
        drop_pg_database(pg)


def test_upgrade_check_downgrade(url):
    upgrade(url)
    assert current_revision(url) == head_revision()
    assert TABLES <= set(inspect(engine(url)).get_table_names())
    command.check(alembic_config(url))  # raises when models and migrations differ
    downgrade(url, "base")
    assert current_revision(url) is None
    assert set(inspect(engine(url)).get_table_names()) <= {"alembic_version"}
    upgrade(url)
    assert current_revision(url) == head_revision()


def test_cli_db_commands(url, tmp_path):
    import os
    import sys

    env = {**os.environ, "CONVLENS_DATABASE_URL": url, "CONVLENS_HOME": str(tmp_path)}
    run = lambda *a: subprocess.run([sys.executable, "-m", "convlens.api.cli", *a], env=env, capture_output=True,  # noqa: E731
                                    text=True, timeout=120)
    behind = run("jobs", "list")
    assert behind.returncode == 2 and "behind" not in behind.stdout and "convlens db upgrade" in behind.stderr
    assert run("db", "upgrade").returncode == 0
    assert run("jobs", "list").returncode == 0
    assert run("db", "downgrade", "base").returncode == 0
    assert "current none" in run("db", "current").stdout


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose (Debian package) missing")
def test_docker_compose_config_is_valid():
    proc = subprocess.run(["docker-compose", "config", "-q"], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    services = subprocess.run(["docker-compose", "config", "--services"], capture_output=True, text=True).stdout
    assert set(services.split()) == {"redis", "rabbitmq", "postgres", "api", "worker", "worker-cpu"}
    import yaml

    config = yaml.safe_load(subprocess.run(["docker-compose", "config"], capture_output=True, text=True).stdout)
    for name in ("api", "worker", "worker-cpu"):  # nothing shared but the database and the broker
        service = config["services"][name]
        assert service["environment"]["CONVLENS_ARTIFACT_STORE"] == "database"
        named = [v for v in service["volumes"] if (v.get("source") if isinstance(v, dict) else v.split(":")[0])
                 in config.get("volumes", {})]
        assert not named, (name, named)
