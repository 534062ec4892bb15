"""Read-side queries shared by the CLI and the HTTP API."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from db.models import Artifact, Job, Metric, Prediction
from db.session import session_scope


def job_dict(job: Job, with_result: bool = True) -> dict[str, Any]:
    out = {
        "id": job.id, "kind": job.kind, "status": job.status, "progress": job.progress,
        "params": job.params if job.kind not in ("classify_shard",) else {"files": len(job.params.get("files", []))},
        "created_at": _iso(job.created_at), "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at), "worker": job.worker, "error": job.error,
        "parent_id": job.parent_id, "part": job.part,
    }
    if with_result:
        out["result"] = job.result
    return out


def _iso(value) -> str | None:
    return value.isoformat() if value else None


def list_jobs(status: str | None = None, kind: str | None = None, parent_id: str | None = None,
              limit: int = 50, offset: int = 0, top_level: bool = True) -> list[dict[str, Any]]:
    with session_scope() as s:
        q = select(Job).order_by(Job.created_at.desc(), Job.id)
        if status:
            q = q.where(Job.status == status)
        if kind:
            q = q.where(Job.kind == kind)
        if parent_id:
            q = q.where(Job.parent_id == parent_id)
        elif top_level:
            q = q.where(Job.parent_id.is_(None))
        return [job_dict(j, with_result=False) for j in s.scalars(q.limit(limit).offset(offset))]


def get_job(job_id: str) -> dict[str, Any] | None:
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None:
            return None
        out = job_dict(job)
        children = s.scalars(select(Job).where(Job.parent_id == job_id).order_by(Job.part)).all()
        out["children"] = [job_dict(c, with_result=False) for c in children]
        out["artifacts"] = [{"id": a.id, "kind": a.kind, "path": a.path, "part": a.part}
                            for a in s.scalars(select(Artifact).where(Artifact.job_id == job_id)
                                               .where(Artifact.kind != "gradcam_overlay").order_by(Artifact.id))]
        return out


def metrics(job_id: str) -> list[dict[str, Any]]:
    with session_scope() as s:
        rows = s.scalars(select(Metric).where(Metric.job_id == job_id).order_by(Metric.split, Metric.fold,
                                                                                  Metric.class_name, Metric.name))
        return [{"name": m.name, "value": m.value, "class": m.class_name, "fold": m.fold, "split": m.split}
                for m in rows]


def predictions(job_id: str, label: str | None = None, min_confidence: float | None = None,
                misclassified: bool = False, errors: bool | None = None, limit: int | None = None,
                offset: int = 0) -> list[dict[str, Any]]:
    with session_scope() as s:
        q = select(Prediction).where(Prediction.job_id == job_id).order_by(Prediction.path)
        if label:
            q = q.where(Prediction.predicted == label)
        if min_confidence is not None:
            q = q.where(Prediction.confidence >= min_confidence)
        if misclassified:
            q = q.where(Prediction.true_label.is_not(None), Prediction.predicted != Prediction.true_label)
        if errors is True:
            q = q.where(Prediction.error.is_not(None))
        elif errors is False:
            q = q.where(Prediction.error.is_(None))
        q = q.offset(offset)
        if limit:
            q = q.limit(limit)
        return [{"path": p.path, "predicted": p.predicted, "confidence": p.confidence, "top_k": p.top_k,
                 "decision": p.decision, "true_label": p.true_label, "error": p.error, "shard": p.shard}
                for p in s.scalars(q)]


def artifact(artifact_id: int) -> dict[str, Any] | None:
    with session_scope() as s:
        a = s.get(Artifact, artifact_id)
        return None if a is None else {"id": a.id, "job_id": a.job_id, "kind": a.kind, "path": a.path}


def overlay_artifacts(job_id: str, limit: int = 20) -> list[dict[str, Any]]:
    with session_scope() as s:
        q = select(Artifact).where(Artifact.job_id == job_id, Artifact.kind == "gradcam_overlay").limit(limit)
        return [{"id": a.id, "path": a.path} for a in s.scalars(q)]
