"""A service many people share (issue 50), in-process over SQLite: fair-share order, priorities, quotas, the audit
log and the Python client's local mode. tests/test_shared_service.py runs it with real workers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fastapi.testclient import TestClient

from convlens.db.models import Job, JobPriority, JobStatus, utcnow
from convlens.db.session import session_scope


def _unit(owner: str | None, status: str = JobStatus.QUEUED, age_s: float = 0, priority: int = JobPriority.NORMAL,
          started_s_ago: float | None = None, kind: str = "train") -> str:
    now = utcnow()
    with session_scope() as s:
        job = Job(kind=kind, params={}, status=status, submitted_by=owner, queue="gpu", priority=priority,
                  created_at=now - timedelta(seconds=age_s),
                  started_at=None if started_s_ago is None else now - timedelta(seconds=started_s_ago))
        s.add(job)
        s.flush()
        return job.id


def test_owners_take_turns_and_priority_orders_within_an_owner(home):
    from convlens.worker.scheduler import choices

    # A submitted eight shards long ago and has just been served; B's single job came later.
    a_done = _unit("alice", JobStatus.SUCCEEDED, age_s=100, started_s_ago=5)
    a_shards = [_unit("alice", age_s=90 - i) for i in range(8)]
    b_job = _unit("bob", age_s=10)
    assert a_done and choices(a_shards[0])[0] == b_job  # A's message runs B's job: B waits one unit, not eight
    # With B running now, A goes next, oldest first; a high-priority unit of A's jumps A's own line only.
    with session_scope() as s:
        s.get(Job, b_job).status = JobStatus.RUNNING
    a_urgent = _unit("alice", age_s=1, priority=JobPriority.HIGH)
    assert choices(a_shards[3])[:3] == [a_urgent, a_shards[0], a_shards[1]]
    # A unit that is not queued is tried first (a redelivery resumes it after a crash); its message is still a
    # ticket for the queued ones when it has ended or runs elsewhere.
    assert choices(b_job)[:3] == [b_job, a_urgent, a_shards[0]]
    # The local CLI is an owner like any token.
    local = _unit(None, age_s=50)
    assert choices(a_shards[0])[0] == local


@pytest.fixture
def api(home, tmp_path, monkeypatch):
    from convlens.api.http import app
    from convlens.api.tokens import create_token

    monkeypatch.setenv("CONVLENS_ALLOWED_ROOTS", str(tmp_path))

    def client(name: str, scope: str, max_jobs: int | None = None) -> TestClient:
        return TestClient(app, headers={"Authorization": f"Bearer {create_token(name, scope, max_jobs).token}"})

    return client


def test_a_quota_a_priority_and_an_audit_trail(api):
    admin, alice, bob = api("root", "admin"), api("alice", "submit", max_jobs=2), api("bob", "submit")
    train = {"kind": "train", "params": {"epochs": 1, "limit": 100}}
    # 202 where this process's broker is another test's embedded Redis: stored as queued all the same.
    codes = [alice.post("/jobs", json=train).status_code for _ in range(3)]
    assert codes[0] in (201, 202) and codes[1] in (201, 202) and codes[2] == 429, codes
    refused = alice.post("/jobs", json=train).json()["detail"]["message"]
    assert refused == ("token 'alice' may have at most 2 unfinished jobs (waiting, queued or running) and has 2: "
                       "wait for one to end, or cancel one")
    assert {t["name"]: t["max_jobs"] for t in admin.get("/tokens").json()["tokens"]} == \
        {"root": None, "alice": 2, "bob": None}
    first = alice.get("/jobs").json()["jobs"][-1]["id"]
    assert alice.post(f"/jobs/{first}/cancel").status_code == 200
    assert alice.post("/jobs", json=train).status_code in (201, 202)  # a place came free
    low = bob.post("/jobs", json={**train, "priority": "low"}).json()
    assert low["priority"] == "low"
    assert bob.patch(f"/jobs/{low['id']}", json={"priority": "high"}).status_code == 403  # raising: admins only
    assert admin.patch(f"/jobs/{low['id']}", json={"priority": "high"}).json()["priority"] == "high"
    events = admin.get("/audit").json()["events"]
    assert [(e["actor"], e["action"]) for e in events[:4]] == [
        ("root", "edit"), ("bob", "submit"), ("alice", "submit"), ("alice", "cancel")]
    assert all(e["address"] == "testclient" for e in events[:4]) and events[0]["detail"] == {"priority": "high"}
    assert {e["target"] for e in events if e["action"] == "token.create"} == {"root", "alice", "bob"}
    assert [e["actor"] for e in admin.get("/audit?actor=bob").json()["events"]] == ["bob"]
    page = admin.get("/audit?limit=2").json()
    older = admin.get(f"/audit?limit=2&before={page['next_before']}").json()["events"]
    assert older and all(e["id"] < page["events"][-1]["id"] for e in older)
    assert alice.get("/audit").status_code == 403
    page = admin.get("/ui/audit?actor=alice&action=cancel")
    assert page.status_code == 200 and page.text.count("<td>cancel</td>") == 1 and f"/ui/jobs/{first}" in page.text
    assert "<tr><td>alice</td><td>submit</td><td>2</td><td>2</td>" in page.text  # the quota and what it counts
    assert alice.get("/ui/audit").status_code == 403 and 'href="/ui/audit"' not in alice.get("/").text


def test_the_client_on_this_home_answers_like_the_api(home):
    from convlens.client import Client, Invalid, NotFound

    c = Client()
    job_id = c.submit("train", epochs=1, limit=100, name="from a notebook", tags=["nb"], priority="high")
    job = c.job(job_id)
    assert (job.status, job.name, job.priority) == ("queued", "from a notebook", "high")
    table = c.jobs(tag=["nb"])
    assert list(table["id"]) == [job_id] and table.loc[0, "params.epochs"] == 1
    assert c.edit(job_id, add_tags=["kept"]).tags == ["kept", "nb"]
    assert c.cancel(job_id).status == "cancelled"
    with pytest.raises(NotFound, match="job ffff not found"):
        c.job("ffff")
    with pytest.raises(Invalid, match="epochs"):
        c.submit("train", epochs=0)
    with pytest.raises(Invalid, match="no operator"):
        c.jobs(filter="metrics.accuracy >> 3")
