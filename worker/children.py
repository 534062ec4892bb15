"""A composite job's children as its kind sees them (`next`, `compose`): typed results once they succeeded."""

from __future__ import annotations

from convlens.db.models import Job, JobStatus
from convlens.worker.kinds import get_kind
from convlens.worker.kinds.base import Done


def child_view(c: Job) -> Done:
    kind = get_kind(c.kind)
    result = kind.result_model.model_validate(c.result) if c.status == JobStatus.SUCCEEDED and c.result else None
    return Done(c.id, c.kind, result, c.worker, c.status, c.part, c.params, c.history or [], c.trial or {})
