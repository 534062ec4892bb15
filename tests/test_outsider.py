"""What outsiders broke (issues 22 and 45), each as a regression test against a real `convlens api`, real workers and
both databases: swapped files that must serve nothing and split nothing, bounded decoding in the API, strict
cursors and filters, checks made at submit, a body cap, no lock inherited across a fork, a full disk; a model file
that is code, a sidecar linked to the database, a zip bomb, parallel huge uploads, NUL in the dashboard's search,
tokens in the access log and a symlinked class folder."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from PIL import Image
from sqlalchemy import select

from convlens.db.models import Artifact, Prediction
from convlens.db.session import session_scope
from services import ApiServer, Worker, cli, cli_json, private_site, tmpfs, wait_for

sys.path.insert(0, str(Path(__file__).parent / "fast"))
from helpers import image_folder, lambda_model, saved_model, zip_bomb  # noqa: E402

pytestmark = pytest.mark.services

BIG = (7990, 8000)  # 63.9 megapixels: under the worker's limit, a 200 kB PNG


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def site(request, tmp_path_factory):
    """An API and a worker on one database, an allowed root with a classified folder (Grad-CAM on)."""
    base = tmp_path_factory.mktemp(f"outsider-{request.param}")
    root = base / "allowed"
    image_folder(root / "images", per_class=3)
    Image.new("RGB", BIG, (90, 120, 200)).save(root / "images" / "cat" / "big.png")
    model = saved_model(root / "m.keras", ["cat", "dog"])
    with private_site(base, root, request.param) as env:
        worker = Worker(env, f"outsider-{request.param}@convlens-test", base)
        api = ApiServer(env, base)
        try:
            worker.wait_ready()
            c = api.client(api.token)
            made = c.post("/jobs", json={"kind": "classify", "params": {"folder": str(root / "images"),
                                                                        "model": str(model), "gradcam": True}})
            assert made.status_code == 201, made.text
            job = wait_for(lambda: (j := c.get(f"/jobs/{made.json()['id']}").json())["status"] in
                           ("succeeded", "failed") and j, 300, what="the classify job")
            assert job["status"] == "succeeded", job
            with session_scope() as s:
                rows = {Path(p.path).name: p.id for p in s.scalars(select(Prediction).where(
                    Prediction.job_id == job["id"]))}
            yield {"api": api, "env": env, "root": root, "model": model, "job": job, "rows": rows,
                   "db": request.param, "home": base / "home", "client": c}
        finally:
            api.stop()
            worker.stop()


def test_swapped_files_serve_nothing_and_split_nothing(site):
    c, home, job, root = site["client"], site["home"], site["job"], site["root"]
    assert site["job"]["result"]["unreadable"] == 0 and site["job"]["result"]["classified"] == 7
    image = root / "images" / "cat" / "cat_000.png"
    thumb = f"/ui/jobs/{job['id']}/images/{site['rows']['cat_000.png']}"
    assert c.get(thumb).status_code == 200
    with session_scope() as s:
        art = s.scalars(select(Artifact).where(Artifact.job_id == job["id"], Artifact.path.contains("cat_000"))).one()
    assert c.get(f"/artifacts/{art.key}").content.startswith(b"\x89PNG")
    # The image and the run file are swapped for a symlink to the database, then for a hard link to it.
    target = home / "convlens.db" if site["db"] == "sqlite" else home / "first-login-url.txt"
    image.unlink()
    image.symlink_to(target)
    run_file = home / art.path  # stored relative to the home (runs/ID/...)
    assert not Path(art.path).is_absolute()
    run_file.unlink()
    run_file.symlink_to(target)
    refused = [c.get(thumb), c.get(f"/artifacts/{art.key}")]
    assert [r.status_code for r in refused] == [404, 404] and all("outside" in r.text for r in refused)
    if site["db"] == "sqlite":  # a hard link lies inside the folder: refused as the database itself
        image.unlink()
        os.link(target, image)
        refused = c.get(thumb)
        assert refused.status_code == 404 and "own files (database or broker)" in refused.text, refused.text
    # Every process still shares one database: another process's connection comes and goes, the API stores a
    # job, and a third process reads it back; a token revoked by the CLI is refused by the API at once.
    cli(site["env"], "jobs", "list")
    made = c.post("/jobs", json={"kind": "classify", "params": {"folder": str(root / "images" / "dog"),
                                                                "model": str(site["model"])}})
    assert made.status_code == 201
    assert cli_json(site["env"], "jobs", "show", made.json()["id"])["id"] == made.json()["id"]
    token = cli(site["env"], "tokens", "create", f"probe-{site['db']}", "--scope", "read").stdout.split()[-1]
    assert site["api"].client(token).get("/jobs").status_code == 200
    cli(site["env"], "tokens", "revoke", f"probe-{site['db']}")
    assert site["api"].client(token).get("/jobs").status_code == 401
    image.unlink()
    Image.new("RGB", (32, 32), (200, 0, 0)).save(image)


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _peak_rss_during(pid: int, requests: list) -> tuple[int, int, list]:
    """(RSS before, peak RSS, the responses) of the process `pid` while the requests run in parallel threads."""
    before, peak, done, results = _rss(pid), [0], threading.Event(), []

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss(pid))
            time.sleep(0.02)

    sampler = threading.Thread(target=sample)
    sampler.start()
    threads = [threading.Thread(target=lambda r=r: results.append(r())) for r in requests]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    sampler.join()
    return before, peak[0], results


def test_parallel_thumbnails_of_a_huge_png_keep_the_api_small(site):
    api, job = site["api"], site["job"]
    big = f"/ui/jobs/{job['id']}/images/{site['rows']['big.png']}"
    small = [f"/ui/jobs/{job['id']}/images/{site['rows'][n]}" for n in ("cat_001.png", "dog_000.png")]
    before, peak, results = _peak_rss_during(api.proc.pid, [lambda p=p: api.client(api.token).get(p)
                                                            for p in [big] * 6 + small * 2])
    by_status = sorted(r.status_code for r in results)
    assert by_status == [200] * 4 + [404] * 6, [(r.status_code, r.text[:200]) for r in results]
    assert all("too large" in r.text for r in results if r.status_code == 404)
    grown = (peak - before) / 1e6
    print(f"API RSS {before / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB over 6 requests for a 63.9 MP PNG")
    assert grown < 300, grown


def test_cursors_and_filters_are_parsed_strictly_everywhere(site):
    c, job = site["client"], site["job"]
    page = f"/ui/jobs/{job['id']}"
    for query in ("after=%C2%B2.1", "after=1.%C2%B2", "label=%00", "min_confidence=nan", "misclassified=maybe"):
        r = c.get(f"{page}?{query}")
        assert r.status_code == 422, (query, r.status_code)
        assert c.get("/health").status_code == 200  # the same keep-alive connection still works
        api = c.get(f"/jobs/{job['id']}/predictions?{query}")
        assert api.status_code == 422, (query, api.status_code, api.text)
    # true and 1 mean the same on the page, the JSON API and the CSV (one parser).
    for value in ("true", "1"):
        assert c.get(f"{page}?misclassified={value}").status_code == 200
        assert c.get(f"/jobs/{job['id']}/predictions?errors={value}").json()["predictions"] == []
    everything = c.get(f"/jobs/{job['id']}/predictions?limit=3").json()
    nxt = c.get(f"/jobs/{job['id']}/predictions?limit=3&after={everything['next_after']}").json()
    assert len(nxt["predictions"]) == 3 and nxt["predictions"][0]["id"] > everything["predictions"][-1]["id"]
    assert cli(site["env"], "results", "predictions", job["id"], "--min-confidence", "2", check=False).returncode == 2


def test_checks_that_can_be_made_at_submit_are_made_there(site):
    import json

    c, root = site["client"], site["root"]
    bodies = [({"kind": "train", "params": {"epochs": True}}, "epochs"),
              ({"kind": "train", "params": {"epochs": "1"}}, "epochs"),
              ({"kind": "train", "params": {"augment": "yes"}}, "augment"),
              ({"kind": "layers", "params": {"model": str(site["model"]), "layers": ["conv1", "nope"]}}, "nope"),
              ({"kind": "layers", "params": {"model": str(site["model"]), "layers": ["conv1"] * 65}}, "layers"),
              ({"kind": "kfold", "params": {"folds": 20, "limit": 100}}, "20 folds"),
              ({"kind": "kfold", "params": {"folds": 5, "dataset": str(root / "images")}}, "5 folds")]
    for body, named in bodies:
        r = c.post("/jobs", json=body)
        assert r.status_code == 422 and named in r.json()["detail"]["message"], (body, r.status_code, r.text)
    ok = c.post("/jobs", json={"kind": "layers", "params": {"model": str(site["model"]), "layers": ["conv1"],
                                                             "limit": 20, "test_limit": 20}})
    assert ok.status_code == 201, ok.text
    huge = c.post("/jobs", content=json.dumps({"kind": "train", "params": {"x": "a" * (2 << 20)}}),
                  headers={"content-type": "application/json"})
    assert huge.status_code == 413 and "bytes" in huge.json()["detail"]["message"]

    def chunks():
        yield b'{"kind": "train", '
        yield b'"params": {}}'

    chunked = c.post("/jobs", content=chunks(), headers={"content-type": "application/json"})
    assert chunked.status_code == 411


def test_docs_are_served_from_this_server(site):
    c = site["api"].client()
    page = c.get("/docs")
    assert page.status_code == 200 and "/static/swagger/swagger-ui-bundle.js" in page.text
    assert "<script>" not in page.text  # no inline script: the CSP applies here too
    assert c.get("/static/swagger/swagger-ui-bundle.js").status_code == 200
    assert c.get("/static/docs.js").status_code == 200


def _png(size: tuple[int, int] = (32, 32)) -> bytes:
    import io

    out = io.BytesIO()
    Image.new("RGB", size, (90, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def _db_locks(pid: int, db: Path) -> list[str]:
    """The POSIX locks `pid` holds on the database file (SQLite's), from /proc/locks."""
    inode = os.stat(db).st_ino
    return [line for line in Path("/proc/locks").read_text().splitlines()
            if f" {pid} " in line and line.split()[5].endswith(f":{inode}")]


def test_a_model_file_is_code_and_never_runs(site):
    """A Lambda model with a sidecar claiming a SavedModel, through /predict and through a classify job."""
    c, root, home = site["client"], site["root"], site["home"]
    marker = root / "up" / f"ran-{site['db']}"
    for claim in (True, False):
        evil = lambda_model(root / "up" / f"evil-{claim}.keras", ["cat", "dog"], marker, savedmodel_claim=claim)
        says = "loaded only as a registered model" if claim else "holds Python code"
        r = c.post(f"/predict?model={evil}", files={"file": ("a.png", _png(), "image/png")})
        assert r.status_code == 422 and says in r.json()["detail"]["message"], (r.status_code, r.text)
        made = c.post("/jobs", json={"kind": "classify", "params": {"folder": str(root / "images" / "dog"),
                                                                    "model": str(evil)}})
        if made.status_code == 201:
            job = wait_for(lambda m=made: (j := c.get(f"/jobs/{m.json()['id']}").json())["status"] in
                           ("succeeded", "failed") and j, 300, what="the classify job")
            assert job["status"] == "failed" and says in job["error"], job
        else:
            assert made.status_code == 422 and says in made.text, made.text
        assert not marker.exists()
    # The sidecar a symlink to the database (SQLite): refused, and the API keeps its locks on it.
    side = saved_model(root / "up" / "side.keras", ["cat", "dog"])
    side.with_suffix(".json").unlink()
    db = home / "convlens.db"
    side.with_suffix(".json").symlink_to(db if site["db"] == "sqlite" else home / "first-login-url.txt")
    held = _db_locks(site["api"].proc.pid, db) if site["db"] == "sqlite" else []
    r = c.post(f"/predict?model={side}", files={"file": ("a.png", _png(), "image/png")})
    assert r.status_code == 422 and "outside" in r.json()["detail"]["message"], (r.status_code, r.text)
    if site["db"] == "sqlite":
        assert held and _db_locks(site["api"].proc.pid, db) == held, (held, _db_locks(site["api"].proc.pid, db))
    made = c.post("/jobs", json={"kind": "classify", "params": {"folder": str(root / "images" / "dog"),
                                                                "model": str(site["model"])}})
    assert made.status_code == 201
    assert cli_json(site["env"], "jobs", "show", made.json()["id"])["id"] == made.json()["id"]


def test_a_zip_bomb_model_is_refused_at_once(site):
    c, root, api = site["client"], site["root"], site["api"]
    bomb = zip_bomb(root / "up" / "bomb.keras")
    bomb.with_suffix(".json").write_text('{"class_names": ["cat", "dog"]}')
    before, started = _rss(api.proc.pid), time.monotonic()
    r = c.post(f"/predict?model={bomb}", files={"file": ("a.png", _png(), "image/png")})
    took = time.monotonic() - started
    assert r.status_code == 422 and "zip bomb" in r.json()["detail"]["message"], r.text
    assert took < 1.0 and _rss(api.proc.pid) - before < 50e6, (took, _rss(api.proc.pid) - before)


def test_parallel_huge_uploads_to_predict_keep_the_api_bounded(site):
    c, api, model = site["client"], site["api"], site["model"]
    assert c.post(f"/predict?model={model}", files={"file": ("a.png", _png(), "image/png")}).status_code == 200
    big = _png(BIG)
    before, peak, results = _peak_rss_during(api.proc.pid, [lambda: api.client(api.token, timeout=300).post(
        f"/predict?model={model}&gradcam=true", files=[("file", ("a.png", big, "image/png")),
                                                       ("file", ("b.png", big, "image/png"))])] * 4)
    assert [r.status_code for r in results] == [200] * 4, [r.text[:200] for r in results]
    assert all(p["overlay_png"] for r in results for p in r.json()["predictions"])
    grown = (peak - before) / 1e6
    print(f"API RSS {before / 1e6:.0f} MB -> peak {peak / 1e6:.0f} MB: 4 parallel /predict of 2 x 63.9 MP")
    assert grown < 900, grown


def test_hostile_strings_get_one_line_and_never_reach_the_log(site):
    c, root, api = site["client"], site["root"], site["api"]
    for query in ('filter=params.x%20%3D%20%22%00%22', "tag=%00", "tag=a%01b"):
        for page in ("/ui/jobs/rows", "/jobs"):
            r = c.get(f"{page}?{query}")
            assert r.status_code == 422 and "contains a" in r.text, (page, query, r.status_code, r.text[:300])
    secret = "S" * 43
    for spelling in ("token", "%74oken", "tok%65n", "token%00"):
        assert site["api"].client().get(f"/?{spelling}={secret}").status_code in (401, 429)
    time.sleep(0.5)  # the access log is written after the response
    log = api.log.read_text()
    assert "/?token=[hidden]" in log and secret not in log
    # A class folder symlinked out of the dataset is refused at submit, naming it.
    image_folder(root / "ds", per_class=3)
    if not (root / "ds" / "b").exists():
        (root / "ds" / "b").symlink_to("/usr")
    r = c.post("/jobs", json={"kind": "train", "params": {"dataset": str(root / "ds"), "epochs": 1}})
    assert r.status_code == 422 and "class folder b is a symlink" in r.json()["detail"]["message"], r.text


def _embedded_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("CONVLENS_DATABASE_URL", "CONVLENS_BROKER_URL", "CONVLENS_ALLOWED_ROOTS")}
    return {**env, "CONVLENS_HOME": str(home), **extra}


def _redis_servers(sock: Path) -> list[psutil.Process]:
    return [p for p in psutil.process_iter(["cmdline"]) if str(sock) in " ".join(p.info["cmdline"] or [])
            and "redis-server" in " ".join(p.info["cmdline"] or [])]


def test_cancelling_running_jobs_never_freezes_with_a_fast_recovery_loop(tmp_path):
    """Each cancel kills the pool child, so Celery forks a new one while the recovery thread runs every 50 ms;
    no submit or cancel may wait on a lock a child inherited."""
    env = _embedded_env(tmp_path / "home", CONVLENS_HEARTBEAT_S="0.05")
    worker = Worker(env, "forks@convlens-test", tmp_path)
    try:
        worker.wait_ready()
        for cycle in range(2):
            job = cli(env, "submit", "train", "--limit", "1000", "--epochs", "20", "--patience", "0",
                      timeout=60).stdout.strip()
            wait_for(lambda j=job: cli_json(env, "jobs", "show", j, timeout=60)["status"] == "running", 240,
                     what=f"cycle {cycle}: the job to start")
            started = time.monotonic()
            cli(env, "jobs", "cancel", job, timeout=30)
            assert time.monotonic() - started < 30
            assert cli_json(env, "jobs", "show", job, timeout=30)["status"] == "cancelled"
        assert len(_redis_servers(tmp_path / "home" / "redis.sock")) == 1
    finally:
        worker.stop()
        cli(env, "services", "stop", check=False)


def test_full_disk_fails_the_job_with_the_os_reason_on_the_embedded_default(tmp_path):
    """CONVLENS_HOME (SQLite, the embedded Redis, overlays) on a 25 MB tmpfs that Grad-CAM overlays fill: the
    job fails with the OS's reason once space is freed, the worker lives on, and no second Redis starts."""

    folder = tmp_path / "imgs"
    image_folder(folder, per_class=1)
    import numpy as np

    rng = np.random.default_rng(0)
    for i in range(200):  # noise compresses badly: each overlay is about 250 kB
        Image.fromarray(rng.integers(0, 255, (300, 300, 3), dtype=np.uint8)).save(folder / "cat" / f"n{i:03d}.png")
    model = saved_model(tmp_path / "m.keras", ["cat", "dog"])
    with tmpfs(tmp_path / "disk", "size=25m") as disk:
        home = disk / "home"
        env = _embedded_env(home, CONVLENS_HEARTBEAT_S="1", CONVLENS_STALE_AFTER_S="6")
        home.mkdir()
        filler = disk / "filler"
        filler.write_bytes(os.urandom(6_000_000))
        worker = Worker(env, "full@convlens-test", tmp_path)
        try:
            worker.wait_ready()
            job = cli(env, "submit", "classify", str(folder), "--model", str(model), "--gradcam",
                      "--shard-size", "70").stdout.strip()
            wait_for(lambda: os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize < 200_000, 180,
                     what="the disk to fill")
            time.sleep(3)
            filler.unlink()  # space again: the failure can now be written
            shown = wait_for(lambda: (j := cli_json(env, "jobs", "show", job, timeout=60))["status"] != "running"
                             and j, 120, what="the job to end")
            assert shown["status"] == "failed" and "No space left on device" in shown["error"], shown
            assert worker.proc.poll() is None, worker.log.read_text()[-3000:]
            assert "Unrecoverable error" not in worker.log.read_text()
            assert len(_redis_servers(home / "redis.sock")) == 1
        finally:
            worker.stop()
            subprocess.run([sys.executable, "-m", "convlens.api.cli", "services", "stop"], env=env,
                           capture_output=True, timeout=60)
            for p in _redis_servers(home / "redis.sock"):
                p.kill()
