"""The study kind through the queue: two real workers on the embedded default (SQLite and the embedded Redis)
run its children (train and k-fold, then layer probes and a Grad-CAM classify) and it writes one HTML report.
A whole worker killed during the k-fold stage costs no second training; cancelling a study cancels every child;
the report opens in chromium with every section and no broken image."""

from __future__ import annotations

import os
import re
import shutil
import signal
from pathlib import Path

import pytest
from sqlalchemy import select

from convlens.db.models import Job
from convlens.db.session import session_scope
from services import Worker, cli, cli_json, embedded_fleet, wait_for

pytestmark = [pytest.mark.services, pytest.mark.browser]

SMALL = ["--limit", "2000", "--epochs", "2", "--batch-size", "64", "--sample", "100", "--probe-limit", "500"]
SECTIONS = ["Data and splits", "The model", "Training curves", "Test metrics", "Per-class precision, recall and F1",
            "Confusion matrix and most-confused pairs", "cross-validation", "Linear probes per layer",
            "Calibration and conformal prediction sets", "highest-loss test errors, with Grad-CAM",
            "Bulk classification with Grad-CAM", "How this report was made"]


@pytest.fixture(scope="module")
def fleet(tmp_path_factory):
    with embedded_fleet(tmp_path_factory.mktemp("study-home"), ["s1@convlens-test", "s2@convlens-test"]) as f:
        yield f


def _rows(home: Path, **where) -> list[Job]:
    with session_scope(f"sqlite:///{home / 'convlens.db'}") as s:
        q = select(Job)
        for key, value in where.items():
            q = q.where(getattr(Job, key) == value)
        rows = list(s.scalars(q))
        s.expunge_all()
        return rows


def test_a_study_survives_a_killed_worker_and_writes_one_report(fleet, tmp_path):
    """Its children spread over both workers; the whole worker running a fold after the train stage is killed
    (kill -9): the study still finishes, without training its train stage a second time."""
    env, home = fleet["env"], fleet["home"]
    study_id = cli(env, "submit", "study", *SMALL, "--folds", "3").stdout.strip()

    def fold_running_after_train():
        kids = {c.kind: c for c in _rows(home, parent_id=study_id)}
        if "train" not in kids or kids["train"].status != "succeeded" or "kfold" not in kids:
            return None
        return next((p for p in _rows(home, parent_id=kids["kfold"].id) if p.status == "running"), None)

    fold = wait_for(fold_running_after_train, 600, interval=0.5, what="a fold running after the train stage")
    train = next(c for c in _rows(home, parent_id=study_id) if c.kind == "train")
    victim = next(w for w in fleet["workers"] if w.name == fold.worker)
    os.killpg(victim.proc.pid, signal.SIGKILL)  # the whole worker: main process and pool child
    victim.proc.wait(10)
    spare = Worker(env, "spare@convlens-test", tmp_path)
    fleet["workers"][fleet["workers"].index(victim)] = spare
    spare.wait_ready()
    study = cli_json(env, "jobs", "wait", study_id, "--timeout", "900", timeout=1000)
    assert study["status"] == "succeeded", study
    again = next(c for c in _rows(home, parent_id=study_id) if c.kind == "train")
    assert (again.started_at, again.finished_at, again.attempts, again.lease) == (
        train.started_at, train.finished_at, train.attempts, train.lease)  # not trained a second time
    assert len([c for c in _rows(home, parent_id=study_id) if c.kind == "train"]) == 1

    result = study["result"]
    assert len(study["children"]) == 4  # each stage made once, however many advances ran
    children = {c["kind"]: c for c in study["children"]}
    assert set(children) == {"train", "kfold", "layers", "classify"} and result["jobs"] == {
        k: c["id"] for k, c in children.items()}
    for kind, child in children.items():  # first-class jobs of their own kind, with their own typed result
        shown = cli_json(env, "jobs", "show", child["id"])
        assert shown["kind"] == kind and shown["status"] == "succeeded" and shown["parent_id"] == study["id"]
        assert shown["result"] and shown["provenance"]["python"] and shown["provenance"]["cpu"]
    kfold = cli_json(env, "jobs", "show", children["kfold"]["id"])
    workers = {p.worker for p in _rows(home, parent_id=children["kfold"]["id"])} | {
        c.worker for c in _rows(home, parent_id=study["id"])}
    assert len(kfold["children"]) == 3 and len(workers) >= 2, workers
    classify = cli_json(env, "jobs", "show", children["classify"]["id"])["result"]
    assert classify["classified"] == 100 and classify["labelled"] == 100
    assert result["classify_accuracy"] == pytest.approx(classify["accuracy"])

    report = Path(result["report"])
    html = report.read_text()
    for section in SECTIONS:
        assert section in html, section
    # Self-contained: every image is embedded, nothing is fetched from elsewhere, no script at all.
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("data:image/") for s in sources), [s[:60] for s in sources]
    assert "<script" not in html and "http://" not in html and "https://" not in html
    # Figures a reader can take at face value: tables rather than Python reprs, each k-fold row naming its metric,
    # the tuned thresholds' macro F1 filled in, validation uses only the seed recipe has.
    assert "{'" not in html and "F1 of airplane" in html and "early stopping" not in html
    tuned_f1 = re.search(r"<td>macro F1</td><td>[0-9.]+</td><td>([^<]+)</td>", html)
    assert tuned_f1 and re.fullmatch(r"0\.[0-9]{4}", tuned_f1.group(1)), html[html.find("Test metrics"):][:800]
    assert report.name in {Path(a["path"]).name for a in study["artifacts"] if a["kind"] == "report"}
    _open_in_chromium(report, home / "report.png")
    _study_page(env, home, study)


def _study_page(env: dict, home: Path, study: dict) -> None:
    """The study's dashboard page: its stages with every child linked, the report inside the page."""
    from playwright.sync_api import sync_playwright

    from services import ApiServer

    api = ApiServer(env, home)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=shutil.which("chromium") or "/usr/bin/chromium", args=[
                "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
            page = browser.new_page(viewport={"width": 1200, "height": 1600})
            errors: list[str] = []
            page.on("console", lambda m: m.type == "error" and errors.append(m.text))
            page.goto(f"{api.url}/?token={api.token}")
            page.locator("form[action='/login'] button").click()
            page.wait_for_load_state("networkidle")
            page.goto(f"{api.url}/ui/jobs/{study['id']}")
            page.wait_for_load_state("networkidle")
            rows = page.locator("#job-parts tbody tr")
            assert rows.count() == 4
            for child in study["children"]:
                assert page.locator(f"#job-parts a[href='/ui/jobs/{child['id']}']").count() == 1
            frame = page.frame_locator("iframe.report")
            assert frame.locator("h1").inner_text().startswith("Study")
            assert frame.locator("h2").count() == len(SECTIONS)
            if os.environ.get("CONVLENS_SCREENSHOTS"):
                page.screenshot(path=str(Path(os.environ["CONVLENS_SCREENSHOTS"]) / "study.png"))
            browser.close()
        assert errors == [], errors
    finally:
        api.stop()


def _open_in_chromium(report: Path, shot: Path) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        pytest.skip("needs Debian's chromium for the report check; .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=[
            "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update"])
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        failed: list[str] = []
        page.on("requestfailed", lambda r: failed.append(r.url))
        page.goto(report.as_uri())
        widths = page.eval_on_selector_all(
            "img", "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth, () => 0)))")
        headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.innerText)")
        page.screenshot(path=str(shot), full_page=True)
        if os.environ.get("CONVLENS_SCREENSHOTS"):
            page.screenshot(path=str(Path(os.environ["CONVLENS_SCREENSHOTS"]) / "study-report.png"), full_page=False)
        browser.close()
    assert len(widths) >= 5 and all(w > 0 for w in widths), widths  # each figure once
    assert len(headings) == len(SECTIONS) and failed == []


def test_cancelling_a_study_cancels_every_child(fleet):
    env, home = fleet["env"], fleet["home"]
    study = cli(env, "submit", "study", "--limit", "4000", "--epochs", "30", "--patience", "0", "--folds", "2",
                "--sample", "100").stdout.strip()
    wait_for(lambda: any(c.status == "running" for c in _rows(home, parent_id=study)), 300, what="a child to run")
    cli(env, "jobs", "cancel", study)
    kids = _rows(home, parent_id=study)
    family = kids + [p for k in kids for p in _rows(home, parent_id=k.id)]
    assert family and all(j.status == "cancelled" for j in family), [(j.kind, j.status) for j in family]
    assert cli_json(env, "jobs", "show", study)["status"] == "cancelled"
