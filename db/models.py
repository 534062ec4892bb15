"""SQLAlchemy 2 models: jobs, metrics, predictions, artifacts and the registry of trained models."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from enum import IntEnum, StrEnum
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship


class JobPriority(IntEnum):
    """Order within one owner's share: high before normal before low (owners take turns whatever these are)."""

    LOW = 0
    NORMAL = 1
    HIGH = 2


class JobStatus(StrEnum):
    """A job's life: waiting (on the jobs it was submitted after), queued, running, then one of the three ends."""

    WAITING = "waiting"
    QUEUED = "queued"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


JOB_STATUSES = tuple(s.value for s in JobStatus)
FINISHED = (JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED)
SCOPES = ("read", "submit", "admin")  # each allows what the ones before it do


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_id() -> str:
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator):
    """Timestamps come back aware (UTC) from SQLite too, which stores them without their offset."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


class Base(DeclarativeBase):
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}


class Job(Base):
    __tablename__ = "jobs"
    id: Mapped[str] = mapped_column(String(32), primary_key=True, default=new_id)
    kind: Mapped[str] = mapped_column(String(32), index=True)
    params: Mapped[dict[str, Any]] = mapped_column(default=dict)
    status: Mapped[str] = mapped_column(String(16), default="queued", index=True)
    progress: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    result: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    worker: Mapped[str | None] = mapped_column(String(255))
    error: Mapped[str | None] = mapped_column(Text)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # Position among siblings: the fold of a k-fold child, the shard of a classify child.
    part: Mapped[int | None] = mapped_column(Integer)
    # How many items a part covers (a shard's files, 1 for a fold): progress sums these, never the params.
    size: Mapped[int | None] = mapped_column(Integer)
    # The lease of whoever runs it: refreshed by heartbeats, taken over only when stale or its process is dead.
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    runner: Mapped[str | None] = mapped_column(String(255))  # host:pid of the process running it
    lease: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # bumped by every claim
    attempts: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # re-queued after going silent
    # The name of the API token that submitted it (None: the local CLI, which needs no token).
    submitted_by: Mapped[str | None] = mapped_column(String(64), index=True)
    # The jobs that must succeed before this one is queued (it is `waiting` until then).
    waits_for: Mapped[list[Any] | None] = mapped_column(default=None)
    # Versions, machine, precision, seed and data fingerprint of the process that ran it (ml.provenance).
    provenance: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # What a user calls it and notes about it; its tags are rows of job_tags (loaded with it).
    name: Mapped[str | None] = mapped_column(String(128), index=True)
    note: Mapped[str | None] = mapped_column(Text)
    tag_rows: Mapped[list[JobTag]] = relationship(lazy="selectin", cascade="all, delete-orphan",
                                                  order_by="JobTag.tag")
    # The epochs finished so far (training kinds), each a dict of figures, written as each epoch ends.
    history: Mapped[list[Any] | None] = mapped_column(default=None)
    # The kind's headline figures once it succeeded (name -> number): what list filters and sorts compare.
    summary: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # A sweep trial's Optuna record beside its params and history: its pruner's attributes, `pruned` once it was.
    trial: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    # Fair share (worker.scheduler): its rank within its owner's share (a JobPriority), inherited by its children
    # and parts; the queue a worker slot takes it from; the Celery task running it now (what a cancel stops).
    priority: Mapped[int] = mapped_column(Integer, default=1, server_default="1")
    queue: Mapped[str | None] = mapped_column(String(16))
    task_id: Mapped[str | None] = mapped_column(String(64))

    @property
    def tags(self) -> list[str]:
        return [t.tag for t in self.tag_rows]


class JobTag(Base):
    __tablename__ = "job_tags"
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    tag: Mapped[str] = mapped_column(String(64), primary_key=True, index=True)


class Metric(Base):
    __tablename__ = "metrics"
    __table_args__ = (Index("ix_metrics_job_fold", "job_id", "fold"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(String(64))
    value: Mapped[float] = mapped_column(Float)
    class_name: Mapped[str | None] = mapped_column(String(128))
    fold: Mapped[int | None] = mapped_column(Integer)
    split: Mapped[str] = mapped_column(String(32), default="test")


class Prediction(Base):
    __tablename__ = "predictions"
    # Every query is within one job: paged in (shard, id) order (which is path order), filtered by class,
    # confidence or set size, counted by class. (No index on path: PostgreSQL refuses btree entries over ~2700
    # bytes, and a path may be 4096.)
    __table_args__ = (Index("ix_predictions_job_shard_id", "job_id", "shard", "id"),
                      Index("ix_predictions_job_set_size", "job_id", "set_size"),
                      Index("ix_predictions_job_predicted", "job_id", "predicted"),
                      Index("ix_predictions_job_confidence", "job_id", "confidence"))
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"))
    shard: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    predicted: Mapped[str | None] = mapped_column(String(128), index=True)
    confidence: Mapped[float | None] = mapped_column(Float)
    top_k: Mapped[list[Any] | None] = mapped_column()
    decision: Mapped[str | None] = mapped_column(String(128))
    true_label: Mapped[str | None] = mapped_column(String(128))
    error: Mapped[str | None] = mapped_column(Text)
    # The conformal prediction set (classes) and its size, which queries filter on.
    prediction_set: Mapped[list[Any] | None] = mapped_column()
    set_size: Mapped[int | None] = mapped_column(Integer)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (UniqueConstraint("key", name="uq_artifacts_key"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # What the API serves it by: random, so that one artifact's address says nothing about another's.
    key: Mapped[str] = mapped_column(String(32), default=new_id)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    path: Mapped[str] = mapped_column(Text)
    # Which unit of work wrote it (fold/shard), so that a re-run replaces exactly its own rows.
    part: Mapped[int | None] = mapped_column(Integer)


class StoredFile(Base):
    """A job's output file kept in the artifact store (CONVLENS_ARTIFACT_STORE database or a URL): its path under
    a home (`runs/ID/...`) and its content's SHA-256, by which the store keeps it and machines cache it."""

    __tablename__ = "stored_files"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    # Paths may be longer than PostgreSQL's btree entries allow: unique by their SHA-256.
    path_hash: Mapped[str] = mapped_column(String(64), unique=True)
    path: Mapped[str] = mapped_column(Text)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Blob(Base):
    """A file's content in the database store, in BLOB_CHUNK pieces (written and read one piece at a time)."""

    __tablename__ = "blobs"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    size: Mapped[int] = mapped_column(BigInteger)


class BlobChunk(Base):
    __tablename__ = "blob_chunks"
    sha256: Mapped[str] = mapped_column(String(64), primary_key=True)
    seq: Mapped[int] = mapped_column(Integer, primary_key=True)
    data: Mapped[bytes] = mapped_column(LargeBinary)


class Token(Base):
    """An API credential. Only its SHA-256 is stored; names are never reused, so jobs name their submitter."""

    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    scope: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # At most this many of its top-level jobs unfinished at once (waiting, queued or running); None: no limit.
    max_jobs: Mapped[int | None] = mapped_column(Integer)


class AuditEvent(Base):
    """Who did what, when, from where: appended by every change a person makes, never updated or deleted."""

    __tablename__ = "audit_events"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    actor: Mapped[str | None] = mapped_column(String(64), index=True)  # the token's name; None: the local CLI
    action: Mapped[str] = mapped_column(String(32), index=True)
    target: Mapped[str | None] = mapped_column(String(255))  # a job id, model reference or token name
    detail: Mapped[dict[str, Any] | None] = mapped_column(default=None)
    address: Mapped[str | None] = mapped_column(String(64))  # the client's address (HTTP); None: the local CLI


class TrainedModelRow(Base):
    """A registered model: NAME:VERSION, the train job that made it and its file."""

    __tablename__ = "models"
    __table_args__ = (UniqueConstraint("name", "version", name="uq_models_name_version"),)
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    job_id: Mapped[str] = mapped_column(ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    path: Mapped[str] = mapped_column(Text)
    preset: Mapped[str] = mapped_column(String(64))
    class_names: Mapped[list[Any]] = mapped_column()
    thresholds: Mapped[list[Any] | None] = mapped_column()
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    name: Mapped[str | None] = mapped_column(String(128), index=True)
    version: Mapped[int | None] = mapped_column(Integer)


class ModelAlias(Base):
    """NAME@ALIAS: a movable pointer to one version of a registered model (e.g. @champion)."""

    __tablename__ = "model_aliases"
    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    alias: Mapped[str] = mapped_column(String(64), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class BrowserSession(Base):
    """A dashboard login: the cookie holds a random id (only its SHA-256 is stored), never the token itself."""

    __tablename__ = "sessions"
    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    hash: Mapped[str] = mapped_column(String(64), unique=True)
    token_id: Mapped[int] = mapped_column(ForeignKey("tokens.id", ondelete="CASCADE"), index=True)
    csrf: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
