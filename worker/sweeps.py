"""A sweep's trials in the database: the pruning check a trial runs after each epoch, a sweep's best trial as a
model reference, and a sweep's trials so far (its study itself is rebuilt by worker.kinds.sweep_study)."""

from __future__ import annotations

from sqlalchemy import select

from convlens.db.models import Job, JobStatus
from convlens.db.session import session_scope
from convlens.ml.errors import ConvlensError
from convlens.worker.children import child_view
from convlens.worker.kinds import get_kind
from convlens.worker.kinds.base import Done
from convlens.worker.kinds.sweep import SweepParams, SweepResult, sweep_result
from convlens.worker.kinds.sweep_study import study_of
from convlens.worker.paths import JOB_ID


class SweepError(ConvlensError):
    """A job named as a sweep that is none, or a `SWEEP:best` whose sweep has no best trial (yet)."""


def siblings(sweep_id: str) -> list[Done]:
    with session_scope() as s:
        return [child_view(c) for c in s.scalars(select(Job).where(Job.parent_id == sweep_id).order_by(Job.part))]


class Pruning:
    """A trial's pruning check after each epoch: its figure so far against its siblings', by the sweep's pruner."""

    def __init__(self, trial_id: str, sweep_id: str, params: SweepParams) -> None:
        self.trial_id, self.sweep_id, self.params = trial_id, sweep_id, params

    def __call__(self, epoch: int, figures: dict[str, float]) -> bool:
        p = self.params
        if p.pruner == "none" or p.metric not in figures:
            return False
        kids = siblings(self.sweep_id)
        me = next(k for k in kids if k.job_id == self.trial_id)
        me.history = [e for e in me.history if e["epoch"] < epoch] + [{"epoch": epoch, p.metric: figures[p.metric]}]
        me.status = JobStatus.RUNNING
        study = study_of(p, self.sweep_id, kids)
        pruned = bool(study.pruner.prune(study, study.trials[me.part or 0]))  # numpy bool from the median pruner
        record = {"attrs": dict(study.trials[me.part or 0].system_attrs)}  # a Hyperband rung it just completed
        if pruned:
            record["pruned_at"] = epoch
        with session_scope() as s:
            s.get(Job, self.trial_id).trial = record
        return pruned


def pruning_for(trial_id: str, parent_id: str | None) -> Pruning | None:
    """The pruning check of a train job that is a sweep's trial; None for any other train job."""
    if parent_id is None:
        return None
    with session_scope() as s:
        parent = s.get(Job, parent_id)
        if parent is None or parent.kind != "sweep":
            return None
        params = get_kind("sweep").parse(parent.params)
    return Pruning(trial_id, parent_id, params)


def best_trial(ref: str) -> str:
    """The train job of `SWEEP:best`: the best trial of a sweep that has succeeded."""
    sweep_id = ref.removesuffix(":best")
    with session_scope() as s:
        job = s.get(Job, sweep_id) if JOB_ID.fullmatch(sweep_id) else None
        if job is None or job.kind != "sweep":
            raise SweepError(f"--model {ref}: no sweep with id {sweep_id}", field="model")
        if job.status != JobStatus.SUCCEEDED or not (job.result or {}).get("best"):
            raise SweepError(f"--model {ref}: sweep {sweep_id} is {job.status}; its best trial is known once "
                              "it has succeeded", field="model")
        return job.result["best"]["job_id"]


def sweep_view(job_id: str) -> SweepResult:
    """A sweep's result: its stored one once it succeeded, else its trials so far."""
    with session_scope() as s:
        job = s.get(Job, job_id)
        if job is None or job.kind != "sweep":
            raise SweepError(f"job {job_id} is {'no job' if job is None else f'a {job.kind} job'}: trials belong "
                             "to sweeps")
        if job.status == JobStatus.SUCCEEDED and job.result:
            return SweepResult.model_validate(job.result)
        params = get_kind("sweep").parse(job.params)
    return sweep_result(params, siblings(job_id))
