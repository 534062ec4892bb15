"""The model registry: every train job's model is registered, a named job's as NAME:VERSION (a sweep's trials
under the sweep's name), with movable aliases (NAME@champion); an unnamed job's under no shared name, referenced
by its job id or short id, so no unrelated run ever moves what a name means. A model reference names one:
`NAME` (its latest version), `NAME:VERSION`, `NAME@ALIAS`, a job id; jobs store the train job's id it resolves
to, so what a job used never moves.
"""

from __future__ import annotations

import re
from datetime import datetime

from pydantic import BaseModel, Field
from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from convlens.db.models import Job, ModelAlias, TrainedModelRow
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.worker import audit
from convlens.worker.artifacts import ModelFile, artifact_store, resolve_model
from convlens.worker.errors import JobError
from convlens.worker.job_ids import expand
from convlens.worker.paths import JOB_ID, REF_HELP, check_model, local

REF = re.compile(r"(?P<name>[a-z0-9][a-z0-9._-]{0,127})(?::(?P<version>[0-9]{1,9})|@(?P<alias>[a-z0-9_-]{1,64}))?")
ALIAS = re.compile(r"[a-z0-9_-]{1,64}")


class ModelNotFound(ConvlensError):
    """A model looked up by a reference that names no registered model."""

    http_status = 404


class UnknownModel(ConvlensError):
    """A job's --model that names no registered model (nor a job or a file): a bad field of the request."""


def model_name(text: str) -> str:
    """A registry name from a job's name or preset: lower case, runs of other characters as one '-'."""
    slug = re.sub(r"[^a-z0-9._-]+", "-", text.lower().removesuffix(".keras")).strip("-._")[:128]
    return slug or "model"  # never ending in .keras, which would read as a file


class ModelView(BaseModel):
    """A registered model with what a user of it must know: its input, classes, calibration and figures."""

    ref: str = Field(description="NAME:VERSION, or the train job's short id for an unnamed one")
    name: str | None
    version: int | None
    aliases: list[str]
    job_id: str = Field(description="the train job that made it")
    preset: str
    class_names: list[str]
    input: str = Field(description="what the model takes")
    temperature: float | None = None
    thresholds: list[float] | None = None
    conformal_alpha: float | None = None
    n_calibration: int | None = None
    accuracy: float | None = None
    macro_f1: float | None = None
    ece: float | None = Field(None, description="test ECE after temperature scaling")
    path: str
    present: bool = Field(description="whether its file is there")
    created_at: datetime | None = None


INPUT = ("32x32 RGB, float pixels divided by 255 (in [0, 1]) outside the model; it outputs class probabilities "
         "(softmax, before temperature scaling)")


def register(s: Session, job_id: str, path: str, preset: str, class_names: list[str],
             thresholds: list[float] | None) -> None:
    """Registers a train job's model as the next version of its name (a redelivered step keeps its version)."""
    row = s.scalars(select(TrainedModelRow).where(TrainedModelRow.job_id == job_id)).first()
    if row is not None:
        row.path, row.preset, row.class_names, row.thresholds = path, preset, class_names, thresholds
        return
    job = s.get(Job, job_id)
    parent = s.get(Job, job.parent_id) if job is not None and job.parent_id else None
    trial = None
    if parent is not None and parent.kind == "sweep":  # a sweep's trials are versions of the sweep's name
        name = model_name(parent.name or f"sweep-{parent.id[:8]}")
        trial = job.part  # trial N is version N + 1, where that version is free
    elif job is not None and job.name:
        name = model_name(job.name)
    else:  # unnamed: its id is its reference, and no shared name moves under anyone
        s.add(TrainedModelRow(job_id=job_id, path=path, preset=preset, class_names=class_names,
                              thresholds=thresholds, name=None, version=None))
        return
    for attempt in range(20):  # two models of one name registered at once: the loser takes the next version
        version = (s.scalar(select(func.max(TrainedModelRow.version)).where(TrainedModelRow.name == name)) or 0) + 1
        if attempt == 0 and trial is not None:
            version = trial + 1
        try:
            with s.begin_nested():
                s.add(TrainedModelRow(job_id=job_id, path=path, preset=preset, class_names=class_names,
                                      thresholds=thresholds, name=name, version=version))
            return
        except IntegrityError:
            continue
    raise RuntimeError(f"could not register a version of model {name!r}")


def find(s: Session, ref: str) -> TrainedModelRow | None:
    """The registered model a NAME[:VERSION|@ALIAS] reference names, or None."""
    m = REF.fullmatch(ref)
    if m is None:
        return None
    q = select(TrainedModelRow).where(TrainedModelRow.name == m["name"])
    if m["version"]:
        q = q.where(TrainedModelRow.version == int(m["version"]))
    elif m["alias"]:
        alias = s.get(ModelAlias, (m["name"], m["alias"]))
        if alias is None:
            return None
        q = q.where(TrainedModelRow.version == alias.version)
    return s.scalars(q.order_by(TrainedModelRow.version.desc())).first()


def _row(s: Session, ref: str) -> TrainedModelRow:
    """The registered model a reference names: NAME[:VERSION|@ALIAS], a train job's id or short id."""
    row = None if JOB_ID.fullmatch(ref) else find(s, ref)
    if row is None:
        job_id = ref if JOB_ID.fullmatch(ref) else expand(ref)
        row = s.scalars(select(TrainedModelRow).where(TrainedModelRow.job_id == job_id)).first()
    if row is None:
        raise ModelNotFound(f"no registered model {ref!r}: a model is {REF_HELP}", field="model")
    return row


def resolve(ref: str) -> str | None:
    """The train job id of a registered model's reference; None when it names none."""
    with session_scope() as s:
        row = find(s, ref)
        return row.job_id if row else None


def resolve_ref(ref: str) -> str:
    """A job's model reference as stored: SWEEP:best and registered names as the train job's id; a job id or a
    file as it is (checked by the kind)."""
    if ref.endswith(":best"):
        from convlens.worker.sweeps import best_trial

        return best_trial(f"{expand(ref.removesuffix(':best'))}:best")
    if JOB_ID.fullmatch(ref) or ref.endswith(".keras"):
        return ref
    job_id = resolve(ref)  # a registered name, even one that looks like hex, before a short job id
    if job_id is None:
        expanded = expand(ref)
        job_id = expanded if expanded != ref else None
    if job_id is None:
        raise UnknownModel(f"--model {ref}: no registered model of that name; a model is {REF_HELP}", field="model")
    return job_id


def ref_of(row: TrainedModelRow) -> str:
    """How a user names a registered model: NAME:VERSION, or its train job's short id when it has no name."""
    return f"{row.name}:{row.version}" if row.name else row.job_id[:8]


def _view(s: Session, row: TrainedModelRow) -> ModelView:
    job = s.get(Job, row.job_id)
    r = (job.result if job else None) or {}
    after = ((r.get("calibration") or {}).get("after") or {})
    conformal = r.get("conformal") or {}
    aliases = s.scalars(select(ModelAlias.alias).where(ModelAlias.name == row.name,
                                                       ModelAlias.version == row.version).order_by(ModelAlias.alias))
    return ModelView(ref=ref_of(row), name=row.name, version=row.version, aliases=list(aliases),
                     job_id=row.job_id, preset=row.preset, class_names=row.class_names, input=INPUT,
                     temperature=r.get("temperature"), thresholds=row.thresholds,
                     conformal_alpha=conformal.get("alpha"), n_calibration=conformal.get("n_calibration"),
                     accuracy=r.get("accuracy"), macro_f1=r.get("macro_f1"), ece=after.get("ece"),
                     path=str(local(row.path)), present=artifact_store().exists(row.path),
                     created_at=row.created_at)


def list_models(name: str | None = None) -> list[ModelView]:
    with session_scope() as s:
        q = select(TrainedModelRow).order_by(TrainedModelRow.name, TrainedModelRow.version.desc())
        if name:
            q = q.where(TrainedModelRow.name == name)
        return [_view(s, row) for row in s.scalars(q)]


def show(ref: str) -> ModelView:
    with session_scope() as s:
        return _view(s, _row(s, ref))


def set_alias(ref: str, alias: str) -> ModelView:
    """Points NAME@ALIAS at the model `ref` names (moving it from another version of that name)."""
    if not ALIAS.fullmatch(alias):
        raise ConvlensError(f"alias {alias!r}: 1-64 of a-z, 0-9, '_' and '-'", field="alias")
    with session_scope() as s:
        row = _row(s, ref)
        if row.name is None:
            raise ConvlensError(f"model {ref_of(row)} has no name to alias: name its train job (--name) to "
                                "register it as NAME:VERSION", field="alias")
        existing = s.get(ModelAlias, (row.name, alias))
        if existing is None:
            s.add(ModelAlias(name=row.name, alias=alias, version=row.version))
        else:
            existing.version = row.version
        s.flush()
        audit.record(audit.Action.ALIAS, f"{row.name}@{alias}", s, version=row.version)
        return _view(s, row)


def delete_model(ref: str) -> str:
    """Removes a version from the registry (and its aliases); its train job and file stay. Returns NAME:VERSION."""
    with session_scope() as s:
        row = _row(s, ref)
        s.execute(delete(ModelAlias).where(ModelAlias.name == row.name, ModelAlias.version == row.version))
        s.delete(row)
        return ref_of(row)


def model_file(ref: str, strict_paths: bool) -> ModelFile:
    """The model file a reference names, checked as a job's --model is (strict: a request from HTTP)."""
    try:
        return resolve_model(check_model(resolve_ref(ref), require_roots=strict_paths))
    except JobError as exc:
        raise UnknownModel(str(exc), field="model") from None
