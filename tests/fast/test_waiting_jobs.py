"""Jobs that wait for jobs: stored `waiting`, queued once what they wait for succeeded, failed with its reason
when it failed or was cancelled; a model named by a job id must be a train job's."""

from __future__ import annotations

import pytest
from helpers import image_folder, saved_model
from sqlalchemy import func, select

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope
from convlens.worker import dependencies, lifecycle, steps
from convlens.worker.dependencies import DependencyRefused


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("CONVLENS_DATABASE_URL", raising=False)
    monkeypatch.delenv("CONVLENS_ALLOWED_ROOTS", raising=False)
    ensure_current()
    image_folder(tmp_path / "images", per_class=4)
    return tmp_path / "images"


def _job(job_id: str) -> Job:
    with session_scope() as s:
        return s.get(Job, job_id)


def _count() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_waiting_jobs_start_after_success_and_fail_after_failure(folder, tmp_path):
    train = steps.create_job("train", {"dataset": str(folder), "epochs": 1})
    layers = steps.create_job("layers", {"model": train, "dataset": str(folder)})  # waits for its model's job
    classify = steps.create_job("classify", {"folder": str(folder), "model": str(saved_model(
        tmp_path / "m.keras", ["cat", "dog"]))}, after=[layers])  # waits on a waiting job: a chain
    assert _job(train).status == "queued"
    assert (_job(layers).status, _job(layers).waits_for) == ("waiting", [train])
    assert (_job(classify).status, _job(classify).waits_for) == ("waiting", [layers])
    assert dependencies.release() == []  # nothing ended yet
    lifecycle.fail(train, "the disk was full")
    assert dependencies.release() == []
    for job_id, waited in ((layers, train), (classify, layers)):
        job = _job(job_id)
        assert job.status == "failed" and waited in job.error and job.finished_at is not None
    assert "the disk was full" in _job(layers).error

    again = steps.create_job("train", {"dataset": str(folder), "epochs": 1})
    after = steps.create_job("layers", {"model": str(tmp_path / "m.keras"), "dataset": str(folder)}, after=[again])
    steps.execute_inline(again)
    assert _job(again).status == "succeeded"
    assert dependencies.release() == [(after, "layers")] and _job(after).status == "queued"
    assert dependencies.release() == []  # moved once only


def test_cancelled_dependency_fails_the_waiting_job(folder):
    train = steps.create_job("train", {"dataset": str(folder), "epochs": 1})
    waiting = steps.create_job("train", {"dataset": str(folder), "epochs": 1}, after=[train])
    lifecycle.mark_cancelled(train)
    dependencies.release()
    assert _job(waiting).status == "failed" and "cancelled" in _job(waiting).error


def test_bad_references_are_refused_before_any_row(folder):
    train = steps.create_job("train", {"dataset": str(folder), "epochs": 1})
    other = steps.create_job("kfold", {"dataset": str(folder), "folds": 2, "epochs": 1}, after=[train])
    before = _count()
    cases = [("layers", {"model": other}, None, "not a train or import job"),
             ("layers", {"model": "0" * 32}, None, "no job with that id"),
             ("train", {"dataset": str(folder)}, ["f" * 32], "no such job"),
             ("train", {"dataset": str(folder)}, ["nope"], "no such job")]
    for kind, params, after, message in cases:
        with pytest.raises(DependencyRefused, match=message):
            steps.create_job(kind, {"dataset": str(folder), **params}, after=after)
    with pytest.raises(DependencyRefused, match="cannot"):  # a job run here and now cannot wait
        steps.create_job("layers", {"model": train, "dataset": str(folder)}, may_wait=False)
    lifecycle.fail(train, "boom")
    with pytest.raises(DependencyRefused, match="failed"):
        steps.create_job("layers", {"model": train, "dataset": str(folder)})
    assert _count() == before


def test_a_waiting_job_is_never_started_by_a_stray_message(folder):
    train = steps.create_job("train", {"dataset": str(folder), "epochs": 1})
    waiting = steps.create_job("train", {"dataset": str(folder), "epochs": 1}, after=[train])
    assert steps.begin(waiting) == [] and _job(waiting).status == "waiting"
