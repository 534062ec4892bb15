"""The HTTP API in-process (FastAPI's TestClient) over a SQLite file: validation, typed responses, queries."""

from __future__ import annotations

import subprocess
import sys

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from convlens.db.models import Job
from convlens.db.session import ensure_current, session_scope


@pytest.fixture
def client(tmp_path, monkeypatch):
    monkeypatch.setenv("CONVLENS_HOME", str(tmp_path))
    monkeypatch.setenv("CONVLENS_ALLOWED_ROOTS", str(tmp_path / "images"))
    ensure_current()
    from convlens.api.http import app
    from convlens.api.tokens import create_token

    return TestClient(app, headers={"Authorization": f"Bearer {create_token('tester', 'admin').token}"})


def _jobs() -> int:
    with session_scope() as s:
        return s.scalar(select(func.count()).select_from(Job))


def test_every_response_has_a_schema(client):
    doc = client.get("/openapi.json").json()
    for path, ops in doc["paths"].items():
        for method, op in ops.items():
            ok = next(v for k, v in op["responses"].items() if k.startswith("2"))
            assert ok.get("content"), (method, path)
            if path not in ("/artifacts/{key}", "/", "/metrics", "/jobs/{job_id}/predictions.csv",
                            "/jobs/{job_id}/predictions.parquet"):
                assert "$ref" in ok["content"]["application/json"]["schema"], (method, path)
    schemas = doc["components"]["schemas"]
    assert {"JobView", "TrainResult", "KfoldResult", "LayersResult", "ClassifyResult", "ShardResult",
            "ProgressEvent", "MetricRow", "PredictionRow"} <= set(schemas)


def test_bad_params_write_nothing(client, tmp_path):
    cases = [({"kind": "paint", "params": {}}, 422), ({"kind": "train", "params": {"epochs": "many"}}, 422),
             ({"kind": "train", "params": {"colour": 1}}, 422), ({"kind": "train", "params": {"seed": -1}}, 422),
             ({"kind": "classify", "params": {"folder": str(tmp_path), "model": "x"}}, 422),
             ({"kind": "classify", "params": {"folder": str(tmp_path), "model": "/etc/x.keras"}}, 403),
             ({"kind": "layers", "params": {}}, 422)]
    for body, status in cases:
        r = client.post("/jobs", json=body)
        assert r.status_code == status, (body, r.text)
        assert r.json()["detail"]
    r = client.post("/jobs", json={"kind": "train", "params": {"epochs": 0, "colour": 1}})
    assert "epochs" in r.json()["detail"]["message"] and "colour" in r.json()["detail"]["message"]
    assert _jobs() == 0
    assert client.get("/jobs/nope").status_code == 404
    assert client.get("/jobs").json() == {"jobs": [], "limit": 50, "offset": 0}


def test_a_stored_job_reads_back_typed(client, tmp_path):
    from convlens.db.rows import MetricRow, PredictionRow
    from convlens.worker import lifecycle, steps
    from convlens.worker.kinds.base import Output
    from convlens.worker.kinds.classify import ClassifyResult

    (tmp_path / "images").mkdir()
    job_id = steps.create_job("classify", {"folder": str(tmp_path / "images"), "model": steps.create_job(
        "train", {"dataset": str(tmp_path / "images")})})
    rows = [PredictionRow(path=f"/x/{c}/{i}.png", predicted="cat", confidence=0.4 + i / 10, true_label=c,
                          top_k=[("cat", 0.4 + i / 10)]) for i in range(5) for c in ("cat", "dog")]
    rows.append(PredictionRow(path="/x/bad.png", error="not an image"))
    result = ClassifyResult(files=11, classified=10, unreadable=1, per_class={"cat": 10}, shards=1)
    with session_scope() as s:
        steps.store(s, job_id, 0, Output(result=result, predictions=rows))
        steps.store(s, job_id, None, Output(result=result, metrics=[MetricRow(name="count", value=10,
                                                                               class_name="cat", split="classify")]))
        lifecycle.finish(s.get(Job, job_id), result)
    job = client.get(f"/jobs/{job_id}").json()
    assert job["status"] == "succeeded" and job["result"]["per_class"] == {"cat": 10}
    assert job["progress"]["fraction"] == 1.0
    metrics = client.get(f"/jobs/{job_id}/metrics").json()["metrics"]
    assert metrics == [{"name": "count", "value": 10.0, "class": "cat", "fold": None, "split": "classify"}]
    preds = lambda **q: client.get(f"/jobs/{job_id}/predictions", params=q).json()["predictions"]  # noqa: E731
    assert len(preds()) == 11 and [p["path"] for p in preds(errors=True)] == ["/x/bad.png"]
    assert {p["true_label"] for p in preds(misclassified=True)} == {"dog"}
    assert all(p["confidence"] >= 0.7 for p in preds(min_confidence=0.7)) and len(preds(min_confidence=0.7)) == 4
    assert len(preds(limit=4, offset=8)) == 3
    # Storing the same part again replaces its rows instead of adding to them.
    with session_scope() as s:
        steps.store(s, job_id, 0, Output(result=result, predictions=rows[:3]))
    assert len(preds()) == 3


def test_dashboard_pages_refuse_hostile_input_without_a_500(client, tmp_path):
    """Pages and their image routes: every malformed or hostile request is a 4xx page, never a 500."""
    from convlens.db.rows import PredictionRow
    from convlens.worker import lifecycle, steps
    from convlens.worker.kinds.base import Output
    from convlens.worker.kinds.classify import ClassifyResult

    (tmp_path / "images").mkdir()
    (tmp_path / "secret.png").write_bytes(b"not yours")
    job_id = steps.create_job("classify", {"folder": str(tmp_path / "images"), "model": steps.create_job(
        "train", {"dataset": str(tmp_path / "images")})})
    rows = [PredictionRow(path=str(tmp_path / "secret.png"), predicted="cat", confidence=0.9)]
    result = ClassifyResult(files=1, classified=1, unreadable=0, per_class={"cat": 1}, shards=1,
                            overlay_dir="/etc")
    with session_scope() as s:
        steps.store(s, job_id, 0, Output(result=result, predictions=rows))
        lifecycle.finish(s.get(Job, job_id), result)
    row_id = client.get(f"/jobs/{job_id}/predictions").json()["predictions"][0]["id"]
    page = f"/ui/jobs/{job_id}"
    cases = {
        "/?status=bogus": 422, "/?offset=-1": 422, "/?kind=%00": 422, f"{page}?after=1.x": 422,
        f"{page}?after=99999999999999999999.1": 422, f"{page}?min_confidence=nan": 422,
        f"{page}?min_confidence=abc": 422, f"{page}?min_confidence=2": 422,
        "/ui/jobs/..%2F..%2Fetc": 404, "/ui/jobs/" + "f" * 32: 404,
        f"{page}/images/0": 404, f"{page}/images/99999999999999999999999": 404, f"{page}/images/abc": 422,
        # A row whose file lies outside the job's folder is not served, nor an overlay outside CONVLENS_HOME.
        f"{page}/images/{row_id}": 404, f"{page}/overlays/{row_id}": 404,
        f"/ui/jobs/{'0' * 32}/images/{row_id}": 404,
        "/ui/compare?ids=nothex": 404, f"/ui/compare?ids={'a' * 32}&ids={job_id}": 404,
        "/ui/compare?" + "&".join(["ids=" + "a" * 32] * 9): 422,
    }
    for url, status in cases.items():
        r = client.get(url)
        assert r.status_code == status, (url, r.status_code, r.text[:300])
        assert r.headers["content-type"].startswith("text/html") and "Content-Security-Policy" in r.headers
    assert client.get(f"/ui/compare?ids={job_id}").status_code == 422  # not a train job: says so
    ok = client.get(f"{page}?label=%F0%9F%90%88&min_confidence=0.5&misclassified=1&uncertain=1&errors=1")
    assert ok.status_code == 200 and "No predictions match" in ok.text
    assert client.get(page).status_code == 200 and f"/ui/jobs/{job_id}/images/{row_id}" in client.get(page).text
    anonymous = TestClient(client.app)
    for url in ("/", page, "/ui/workers", f"{page}/images/{row_id}", "/metrics"):
        assert anonymous.get(url).status_code == 401, url


def test_labels_search_and_history_over_http(client):
    from convlens.api.tokens import create_token
    from convlens.worker import lifecycle, steps
    from convlens.worker.labels import JobLabels

    mine = steps.create_job("train", {"epochs": 2}, labels=JobLabels(name="mine", tags=["lr-sweep"]))
    with session_scope() as s:  # as a worker leaves it: a summary to sort by, two epochs of history
        job = s.get(Job, mine)
        job.submitted_by, job.history = "tester", [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.5}]
        job.summary = {"accuracy": 0.5}
    other = steps.create_job("train", {"epochs": 4}, labels=JobLabels(tags=["other"]))
    lifecycle.mark_cancelled(other)
    listed = client.get("/jobs", params={"tag": "lr-sweep"}).json()["jobs"]
    assert [j["id"] for j in listed] == [mine] and listed[0]["name"] == "mine"
    by_filter = client.get("/jobs", params={"filter": "params.epochs >= 2 and tags != lr-sweep"}).json()["jobs"]
    assert [j["id"] for j in by_filter] == [other]
    assert [j["id"] for j in client.get("/jobs", params={"sort": "-params.epochs"}).json()["jobs"]] == [other, mine]
    bad = client.get("/jobs", params={"filter": "accuracy > 1"})
    assert bad.status_code == 422 and "filter 'accuracy'" in bad.json()["detail"]["message"]
    assert client.get(f"/jobs/{mine}/history").json()["epochs"] == [{"epoch": 1, "loss": 2.0},
                                                                     {"epoch": 2, "loss": 1.5}]
    edited = client.patch(f"/jobs/{mine}", json={"name": "", "add_tags": ["keep"], "note": "so so"}).json()
    assert (edited["name"], edited["tags"], edited["note"]) == (None, ["keep", "lr-sweep"], "so so")
    assert client.patch(f"/jobs/{mine}", json={"add_tags": ["no spaces"]}).status_code == 422
    # A submit token edits its own jobs only; a read token none.
    submitter = {"Authorization": f"Bearer {create_token('someone', 'submit').token}"}
    assert client.patch(f"/jobs/{mine}", json={"note": "mine now"}, headers=submitter).status_code == 403
    reader = {"Authorization": f"Bearer {create_token('reader', 'read').token}"}
    assert client.patch(f"/jobs/{mine}", json={"note": "x"}, headers=reader).status_code == 403
    assert client.get(f"/jobs/{mine}").json()["note"] == "so so"


def test_a_job_waits_for_another_named_by_its_short_id(client):
    """The short ids the CLI and dashboard print name jobs in a request too (`after`), resolved where jobs are made."""
    first = "feed" + "0" * 28
    with session_scope() as s:
        s.add(Job(id=first, kind="train", status="running", params={}))  # a waiting job is sent to no broker
    second = client.post("/jobs", json={"kind": "train", "params": {"epochs": 1}, "after": [first[:8]]})
    assert second.status_code == 201, second.text
    assert second.json()["status"] == "waiting"
    with session_scope() as s:
        assert s.get(Job, second.json()["id"]).waits_for == [first]
    unknown = client.post("/jobs", json={"kind": "train", "params": {}, "after": ["ffff"]})
    assert unknown.status_code == 422 and unknown.json()["detail"]["message"] == "after ffff: no such job"


def test_cancelling_an_ended_job_changes_nothing_and_says_so(client):
    """HTTP and the CLI give the same verdict (409 / exit 2, one line); the job keeps its status."""
    done = "d0" + "0" * 30
    with session_scope() as s:
        s.add(Job(id=done, kind="train", status="succeeded", params={}))
    said = f"job {done} already succeeded: nothing to cancel"
    r = client.post(f"/jobs/{done}/cancel")
    assert r.status_code == 409 and r.json()["detail"]["message"] == said
    cli = subprocess.run([sys.executable, "-m", "convlens.api.cli", "jobs", "cancel", done[:6]], capture_output=True,
                         text=True, timeout=120)  # the fixture's CONVLENS_HOME
    assert cli.returncode == 2 and cli.stderr.strip() == f"error: {said}"
    assert client.get(f"/jobs/{done}").json()["status"] == "succeeded"


def test_the_workers_page_says_why_the_broker_is_away_at_once(client, monkeypatch):
    from convlens.worker.app import app as celery_app

    monkeypatch.setattr(celery_app.conf, "broker_url", "redis://:secret@127.0.0.1:1/0")
    page = client.get("/ui/workers")
    assert page.status_code == 200 and "cannot be reached: Error 111 connecting to 127.0.0.1:1" in page.text, page.text
    assert "secret" not in page.text and "Workers cannot be asked while the broker is away" in page.text
