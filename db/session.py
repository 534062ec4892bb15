"""Engines and sessions for CONVLENS_DATABASE_URL (default: SQLite under CONVLENS_HOME), and migrations."""

from __future__ import annotations

import fcntl
import os
import tempfile
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.orm import Session, sessionmaker

from convlens.ml.errors import ConvlensError
from convlens.ml.settings import settings

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


class DatabaseBehind(ConvlensError, RuntimeError):
    """The database schema is older than this code's migrations."""

    http_status = 503


def database_url() -> str:
    conf = settings()
    if conf.database_url:
        return conf.database_url
    conf.home_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    return f"sqlite:///{conf.home_dir / 'convlens.db'}"


def is_embedded(url: str | None = None) -> bool:
    """Whether url (default: the configured one) is the embedded SQLite file, which upgrades itself."""
    return settings().embedded_database and url in (None, database_url())


@lru_cache(maxsize=8)
def _engine(url: str) -> Engine:
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 60})

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn, _record):  # several worker processes share the file
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()
    else:
        if url.startswith("postgresql://"):
            url = "postgresql+psycopg://" + url[len("postgresql://"):]
        engine = create_engine(url, pool_pre_ping=True)
    _ENGINES.add(engine)
    return engine


_ENGINES: weakref.WeakSet[Engine] = weakref.WeakSet()


def _forget_inherited_connections() -> None:
    """A forked process (a Celery pool child) must not use its parent's pooled connections: the same socket
    in two processes mixes their conversations (SQLAlchemy's advice: dispose without closing, in the child)."""
    for engine in list(_ENGINES):
        engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_inherited_connections)


def engine(url: str | None = None) -> Engine:
    return _engine(url or database_url())


@contextmanager
def session_scope(url: str | None = None) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error."""
    session = sessionmaker(engine(url), expire_on_commit=False)()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


def alembic_config(url: str | None = None) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.set_main_option("sqlalchemy.url", (url or database_url()).replace("%", "%%"))
    return cfg


def current_revision(url: str | None = None) -> str | None:
    with engine(url).connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()


def upgrade(url: str | None = None, revision: str = "head") -> None:
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    command.downgrade(alembic_config(url), revision)


def _private(db: Path) -> None:
    """The database file readable by its owner only (SQLite gives its -wal and -shm files the same mode).
    Never opened here: closing a descriptor of it would drop this process's SQLite locks."""
    if not db.exists():
        os.close(os.open(db, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
    elif db.stat().st_mode & 0o077:
        os.chmod(db, 0o600)


def ensure_current(url: str | None = None) -> None:
    """Refuses a database behind the code's migrations; the embedded default is brought up to date itself."""
    url = url or database_url()
    if is_embedded(url):  # a read-only home says so (the OS's reason), not "unable to open database file"
        home = settings().home_dir
        try:
            tempfile.TemporaryFile(dir=home).close()
        except OSError as exc:
            raise OSError(exc.errno, exc.strerror, f"CONVLENS_HOME {home}") from None
    head = head_revision()
    if is_embedded(url):
        # Two processes may find a fresh home at once: one creates the tables while the other waits. Even the
        # first look is under the lock: a fresh file's first connections switch it to WAL, and SQLite answers
        # one of two simultaneous switches "database is locked" without waiting.
        with open(settings().home_dir / "convlens.db.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            _private(settings().home_dir / "convlens.db")
            if current_revision(url) != head:
                upgrade(url)
        return
    if current_revision(url) == head:
        return
    current = current_revision(url)
    raise DatabaseBehind(
        f"database {engine(url).url.render_as_string(hide_password=True)} is at revision {current or 'none'}, "
        f"this code needs {head}: run `convlens db upgrade`"
    )
