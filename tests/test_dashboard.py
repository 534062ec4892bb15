"""The dashboard in a real browser (Debian's chromium driven by Playwright) against a real `convlens api`
process, a real Celery worker and Redis, on the embedded SQLite default. It clicks as a user would: log in
with the printed URL, submit jobs from the forms, watch progress change without reloading, open results,
filter a classify job's grid, download its CSV. Every page must load all its images and log no errors.

Set CONVLENS_SCREENSHOTS=docs/screenshots to refresh the README's screenshots from this run.
"""

from __future__ import annotations

import base64
import csv
import io
import os
import re
import shutil
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

import services
from conftest import DATA_DIR
from folders import make_messy_folder
from services import ApiServer, Worker, free_redis_db, wait_for

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
pytestmark = [pytest.mark.services, pytest.mark.browser,
              pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (apt-get install "
                                                                     "chromium); .ci/run installs it")]
FINISHED = ("succeeded", "failed", "cancelled")


@pytest.fixture(scope="module")
def site(tmp_path_factory, cifar):
    from playwright.sync_api import sync_playwright

    home = tmp_path_factory.mktemp("dash-home")
    images = tmp_path_factory.mktemp("dash-images")
    n_images, unreadable = make_messy_folder(images / "batch", cifar, n=40)
    broker = free_redis_db()
    env = {**os.environ, "CONVLENS_HOME": str(home), "CONVLENS_BROKER_URL": broker,
           "CONVLENS_DATA_DIR": str(DATA_DIR), "CONVLENS_ALLOWED_ROOTS": str(images)}
    env.pop("CONVLENS_DATABASE_URL", None)  # the embedded SQLite default
    api = ApiServer(env, home)
    worker = Worker(env, "dash@convlens-test", home)
    shots = Path(os.environ.get("CONVLENS_SCREENSHOTS") or tmp_path_factory.mktemp("shots"))
    shots.mkdir(parents=True, exist_ok=True)
    try:
        worker.wait_ready()
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM)
            context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
            yield {"api": api, "worker": worker, "context": context, "images": images / "batch",
                   "n_images": n_images, "unreadable": unreadable, "shots": shots,
                   "http": api.client(api.token), "jobs": {}}
            browser.close()
    finally:
        worker.stop()
        api.stop()
        services.release_redis_db(broker)


class Watched:
    """A page whose console errors, failed requests and error responses are collected."""

    def __init__(self, site) -> None:
        self.page = site["context"].new_page()
        self.problems: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.problems.append(f"console: {m.text}"))
        self.page.on("pageerror", lambda e: self.problems.append(f"page error: {e}"))
        self.page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url} {r.failure}"))
        self.page.on("response", lambda r: r.status >= 400 and self.problems.append(f"HTTP {r.status}: {r.url}"))
        self.base = site["api"].url

    def open(self, path: str) -> None:
        self.page.goto(self.base + path)
        self.page.wait_for_load_state("networkidle")

    def images_loaded(self) -> int:
        """Waits for every <img> (lazy ones scrolled into view) and returns how many there are; each must have
        decoded (naturalWidth > 0)."""
        self.page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
        self.page.wait_for_load_state("networkidle")
        widths = self.page.eval_on_selector_all(
            "img", "imgs => Promise.all(imgs.map(i => i.decode().then(() => i.naturalWidth, () => 0)))")
        assert all(w > 0 for w in widths), widths
        return len(widths)

    def shot(self, site, name: str, at: str | None = None) -> None:
        if at:
            self.page.locator(at).first.evaluate("e => e.scrollIntoView({block: 'start'})")
            self.page.evaluate("window.scrollBy(0, -60)")
        else:
            self.page.evaluate("window.scrollTo(0, 0)")
        self.page.screenshot(path=str(site["shots"] / f"{name}.png"), full_page=False)

    def clean(self) -> None:
        assert self.problems == [], self.problems


def login(site) -> Watched:
    """The login URL asks first (someone else's link must not switch identity unawares), then logs in."""
    w = Watched(site)
    w.open(f"/?token={site['api'].token}")
    assert w.page.locator("h1").inner_text() == "Log in"
    w.page.locator("form[action='/login'] button").click()
    w.page.wait_for_load_state("networkidle")
    assert w.page.url == w.base + "/" and w.page.locator("h1").inner_text() == "Jobs"
    return w


def submit_form(w: Watched, kind: str, values: dict[str, str | bool]) -> None:
    form = w.page.locator(f"form.submit-job[data-kind={kind}]")
    if not form.is_visible():
        w.page.locator("details", has=form).locator("summary").click()
    for name, value in values.items():
        field = form.locator(f"[name={name}]")
        if isinstance(value, bool):
            field.set_checked(value)
        elif field.evaluate("e => e.tagName") == "SELECT":
            field.select_option(value)
        else:
            field.fill(value)
    form.locator("button[type=submit]").click()


def job_id_from_url(w: Watched) -> str:
    w.page.wait_for_url(re.compile(r"/ui/jobs/[0-9a-f]{32}$"), timeout=30_000)
    return w.page.url.rsplit("/", 1)[1]


def wait_job(site, job_id: str, timeout: float = 600) -> dict:
    job = wait_for(lambda: (j := site["http"].get(f"/jobs/{job_id}").json())["status"] in FINISHED and j,
                   timeout, interval=1, what=f"job {job_id}")
    assert job["status"] == "succeeded", job
    return job


def test_submit_train_from_the_form_and_watch_it_live(site):
    w = login(site)
    before = site["http"].get("/jobs").json()["jobs"]
    # A bad value: the API's own message beside the field, and no job.
    submit_form(w, "train", {"epochs": "0", "limit": "2000"})
    error = w.page.locator("form[data-kind=train] [data-error-for=epochs]")
    error.wait_for(state="visible")
    assert "greater than or equal to 1" in error.inner_text()
    assert site["http"].get("/jobs").json()["jobs"] == before
    w.problems = [p for p in w.problems if "HTTP 422" not in p and "status of 422" not in p]  # that answer was
    # the point of the check

    # Epochs long enough (seconds even where bf16 is native) for the page's 1.5 s poll to draw each one.
    submit_form(w, "train", {"epochs": "3", "limit": "10000", "batch_size": "64", "name": "first run",
                             "tags": "lr-sweep, dash"})
    job_id = job_id_from_url(w)
    site["jobs"]["train"] = job_id
    w.page.evaluate("window.notReloaded = true")
    seen: list[tuple[str, str]] = []
    drawn: set[str] = set()  # the live curves' captions ("N epochs: ...") seen while the job ran
    served = 0  # epochs the history endpoint returned while the job ran
    shot = False
    deadline = time.time() + 600
    while time.time() < deadline:
        status = w.page.locator("[data-job-live]").get_attribute("data-status")
        text = w.page.locator("#job-head .progress-cell").inner_text().strip()
        if not seen or seen[-1] != (status, text):
            seen.append((status, text))
            if status == "running" and w.page.locator("#live-curves").count() and not shot:
                w.shot(site, "running")
                shot = True
        if status == "running" and w.page.locator("#job-head .curves figcaption").count():
            drawn.add(w.page.locator("#job-head .curves figcaption").inner_text().split(":")[0])
        if status == "running" and len(drawn) < 2:
            history = site["http"].get(f"/jobs/{job_id}/history").json()["epochs"]
            if site["http"].get(f"/jobs/{job_id}").json()["status"] == "running":
                served = max(served, len(history))
        if status in FINISHED:
            break
        time.sleep(0.3)
    running = [t for s, t in seen if s == "running" and "%" in t]
    assert len(set(running)) >= 2, seen  # the progress moved while the page stayed put
    # The curves grew on the open page, epoch by epoch, and the API served epochs before the end.
    assert len(drawn) >= 2 and "1 epoch" in drawn, drawn
    assert served >= 1
    assert w.page.locator("h1").inner_text().startswith("first run")
    assert [t.strip() for t in w.page.locator("#job-labels .tag").all_inner_texts()] == ["dash", "lr-sweep"]
    assert w.page.evaluate("window.notReloaded") is True
    assert seen[-1][0] == "succeeded", seen
    result = w.page.locator("#train-result")
    result.wait_for()
    assert w.page.locator("#train-result table.metrics").first.locator("tbody tr").count() == 5
    tta = site["http"].get(f"/jobs/{job_id}").json()["result"]["tta_accuracy"]
    assert "Every figure here is one pass, as classify, predict and the export run the model" in " ".join(
        result.inner_text().split())
    if tta is not None:
        assert f"gives accuracy {tta:.4f}" in " ".join(result.inner_text().split())
    per_class = w.page.locator("#train-result table.metrics").nth(1).locator("tbody tr")
    assert per_class.count() == 10
    assert w.page.locator("table.confusion tbody tr").count() == 10
    assert w.images_loaded() >= 4  # the F1 chart, the curves, reliability, the error gallery (each figure once)
    model = w.page.locator("a", has_text="Download the model")
    with w.page.expect_download() as download:
        model.click()
    assert Path(download.value.path()).stat().st_size > 10_000
    w.shot(site, "train")
    w.clean()


def test_classify_grid_filters_and_csv(site):
    train_id = site["jobs"]["train"]
    w = login(site)
    submit_form(w, "classify", {"folder": str(site["images"]), "model": train_id, "gradcam": True,
                                "shard_size": "20"})
    job_id = job_id_from_url(w)
    job = wait_job(site, job_id)
    files = site["n_images"] + len(site["unreadable"])
    assert job["result"]["files"] == files and job["result"]["shards"] == 3
    # The open page follows by itself: once the job has finished it shows the results without a reload.
    w.page.locator('[data-job-live][data-status="succeeded"]').wait_for(timeout=30_000)
    w.page.wait_for_load_state("networkidle")
    cards = w.page.locator(".grid figure.card")
    assert cards.count() == files
    # Each readable image shows twice (the image and its Grad-CAM overlay), each must have loaded.
    assert w.images_loaded() == 2 * site["n_images"]
    w.shot(site, "classify", at="#prediction-filters")

    form = w.page.locator("#prediction-filters")
    form.locator("[name=misclassified]").check()
    form.locator("button[type=submit]").click()
    w.page.wait_for_load_state("networkidle")
    wrong = w.page.locator(".grid figure.card")
    expected = site["http"].get(f"/jobs/{job_id}/predictions", params={"misclassified": True}).json()
    assert wrong.count() == len(expected["predictions"]) > 0
    for i in range(wrong.count()):
        caption = wrong.nth(i).locator("figcaption").inner_text()
        predicted = caption.split()[0]
        true = re.search(r"true: (\S+)", caption).group(1)
        assert predicted != true
    w.images_loaded()

    w.open(f"/ui/jobs/{job_id}?misclassified=true")  # every boolean spelling filters, as in the JSON API
    assert w.page.locator(".grid figure.card").count() == len(expected["predictions"])

    w.open(f"/ui/jobs/{job_id}?errors=1")
    errors = w.page.locator(".grid figure.card.unreadable")
    assert errors.count() == len(site["unreadable"])
    assert {e.split()[0] for e in errors.locator("code").all_inner_texts()} == site["unreadable"]
    with w.page.expect_download() as download:
        w.page.locator("a", has_text="CSV of these rows").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert {Path(r["path"]).name for r in rows} == site["unreadable"] and all(r["error"] for r in rows)

    w.open(f"/ui/jobs/{job_id}?min_confidence=0.9&label=cat")
    for caption in w.page.locator(".grid figcaption").all_inner_texts():
        assert caption.split()[0] == "cat" and float(caption.split()[1]) >= 0.9
    w.open(f"/ui/jobs/{job_id}?min_confidence=7")  # a bad filter: a page that says so, not a 500
    assert "min_confidence" in w.page.locator(".error-message").inner_text()
    w.problems = [p for p in w.problems if "422" not in p]
    w.clean()


def test_kfold_layers_compare_workers_and_metrics(site):
    http, train_id = site["http"], site["jobs"]["train"]
    ids = {kind: http.post("/jobs", json={"kind": kind, "params": params}).json()["id"] for kind, params in (
        ("kfold", {"folds": 2, "limit": 600, "epochs": 1, "batch_size": 64}),
        ("layers", {"model": train_id, "limit": 300, "test_limit": 300}),
        ("train", {"limit": 1000, "epochs": 1, "batch_size": 64, "preset": "seed"}))}
    w = login(site)
    w.open("/ui/workers")  # while those run: the worker is listed with what it runs
    assert site["worker"].name in w.page.locator("#worker-table").inner_text()
    # expect() matches inside Playwright's own script: a string predicate would be eval'd, which the CSP forbids
    expect(w.page.locator("#worker-table")).to_contain_text(re.compile("kfold|layers|train"), timeout=60_000)
    w.shot(site, "workers")
    w.open("/")
    assert w.page.locator("#job-rows tr[data-active]").count() >= 1
    w.shot(site, "jobs")
    # Cancel from the list: a long job, queued behind those.
    long_id = http.post("/jobs", json={"kind": "train", "params": {"limit": 10000, "epochs": 50}}).json()["id"]
    w.page.locator(f"#job-rows tr[data-job='{long_id}'] button[data-cancel]").click(timeout=10_000)
    wait_for(lambda: http.get(f"/jobs/{long_id}").json()["status"] == "cancelled", 30, what="the cancel")
    w.page.locator(f"#job-rows tr[data-job='{long_id}'][data-status=cancelled]").wait_for(timeout=10_000)
    for job_id in ids.values():
        wait_job(site, job_id, timeout=900)

    w.open(f"/ui/jobs/{ids['kfold']}")
    assert w.page.locator("#kfold-result table.metrics").first.locator("tbody tr").count() == 3  # 2 folds + mean
    assert w.page.locator("#kfold-result table.metrics").nth(1).locator("tbody tr").count() == 10
    assert w.images_loaded() == 1
    w.shot(site, "kfold")

    w.open(f"/ui/jobs/{ids['layers']}")
    layers = http.get(f"/jobs/{ids['layers']}").json()["result"]["rows"]
    assert w.page.locator("#layers-result tbody tr").count() == len(layers) >= 3
    assert w.images_loaded() == 1
    w.shot(site, "layers")

    w.open("/")  # tick both train jobs, compare
    for job_id in (train_id, ids["train"]):
        w.page.locator(f"input[name=ids][value='{job_id}']").check()
    w.page.locator("button", has_text="Compare").click()
    w.page.wait_for_load_state("networkidle")
    assert w.page.locator("#compare-table thead th").count() == 3
    assert w.page.locator("#compare-f1 tbody tr").count() == 10
    assert w.images_loaded() == 3  # per-class F1, the overlaid curves, parallel coordinates
    # Three runs (a k-fold fold is a training run too): curves overlaid, parameters against accuracy, grouped.
    fold = http.get(f"/jobs/{ids['kfold']}").json()["children"][0]["id"]
    w.open(f"/ui/compare?ids={train_id}&ids={ids['train']}&ids={fold}&params=limit,epochs&group=epochs")
    parallel = w.page.locator("#compare-parallel")
    assert "parallel coordinates" in parallel.get_attribute("alt") and w.images_loaded() == 3
    svg = base64.b64decode(parallel.get_attribute("src").split(",", 1)[1]).decode()
    assert svg.count("<path") >= 3 and "limit" in svg and "epochs" in svg and "accuracy" in svg
    groups = w.page.locator("#compare-groups tbody tr").all_inner_texts()
    assert [g.split()[0] for g in groups] == ["1", "3"] and [int(g.split()[1]) for g in groups] == [2, 1]
    w.shot(site, "compare", at="#compare-curves")
    w.shot(site, "compare-parallel", at="#compare-parallel")
    # The API's docs render from this server's own files under the same CSP (nothing from a CDN).
    w.open("/docs")
    w.page.locator(".swagger-ui .info .title").wait_for(timeout=30_000)
    assert "convlens" in w.page.locator(".swagger-ui .info .title").inner_text()
    assert w.page.locator(".opblock").count() >= 10
    # Logging out ends the session: the next page asks to log in.
    w.open("/")
    w.page.locator("form.logout button").click()
    w.page.wait_for_load_state("networkidle")
    assert w.page.locator("h1").inner_text() == "Log in"
    w.problems = [p for p in w.problems if "401" not in p]
    w.clean()

    text = http.get("/metrics").text
    assert re.search(r'convlens_jobs\{kind="train",status="succeeded"\} 2\.0', text), text
    assert re.search(r'convlens_job_duration_seconds_count\{kind="classify",status="succeeded"\} 1\.0', text)
    assert re.search(r'convlens_queue_depth\{queue="gpu"\} 0\.0', text)
    assert site["api"].client().get("/metrics").status_code == 401


def test_a_sweep_from_the_form_grows_live_and_sorts(site):
    """The sweep form takes one search dimension per line; a dimension that cannot be searched is refused beside
    its field; the sweep's page fills its trials table while it runs (no reload), then shows the optimisation
    history, the importances and parallel coordinates, and sorts its trials by any column."""
    w = login(site)
    submit_form(w, "sweep", {"space": "epochs=int:1:3"})
    error = w.page.locator("form[data-kind=sweep] [data-error-for=space]")
    error.wait_for(timeout=10_000)
    assert "cannot be searched" in error.inner_text()
    w.problems = [p for p in w.problems if "422" not in p]  # that refusal, as expected
    submit_form(w, "sweep", {"space": "learning_rate=log:5e-4:5e-3\nbatch_size=choice:32,64", "trials": "4",
                             "parallel": "1", "epochs": "2", "limit": "600", "preset": "seed", "pruner": "none"})
    sweep_id = job_id_from_url(w)
    rows = w.page.locator("#sweep-result #trials tbody tr")
    rows.first.wait_for(timeout=120_000)
    wait_for(lambda: rows.count() >= 2, 300, what="a second trial on the page, without a reload")
    job = wait_job(site, sweep_id, timeout=900)
    w.page.locator("#sweep-result img").nth(2).wait_for(timeout=30_000)  # the finished page replaced the live one
    assert w.images_loaded() == 3  # history, importances, parallel coordinates
    assert rows.count() == 4 and "4 of 4 finished" in w.page.locator("#sweep-result h2").inner_text()
    best = job["result"]["best"]
    assert f"trial {best['number']}" in w.page.locator("#sweep-result .best").inner_text()
    w.page.locator("#trials thead a", has_text="val_accuracy").click()
    w.page.wait_for_load_state("networkidle")
    w.page.locator("#trials thead a", has_text="val_accuracy").click()  # again: descending
    w.page.wait_for_load_state("networkidle")
    assert rows.first.locator("td").first.inner_text() == str(best["number"])
    values = [float(r.locator("td").nth(2).inner_text()) for r in rows.all()]
    assert values == sorted(values, reverse=True)
    assert site["http"].get(f"/jobs/{sweep_id}/trials").json()["best"] == best
    w.shot(site, "sweep", at="#sweep-result")
    w.clean()


def test_try_an_image_classifies_uploads_with_overlays(site, cifar):
    """The "Try an image" page posts the chosen files to /predict and shows each prediction with its Grad-CAM
    overlay; a file that is no image gets its reason on its row."""
    import io

    from PIL import Image

    w = login(site)
    w.open("/ui/predict")
    assert w.page.locator("#predict-model option").count() >= 1
    files = []
    for i in range(3):
        buf = io.BytesIO()
        Image.fromarray(cifar.x_test[i]).save(buf, "PNG")
        files.append({"name": f"{cifar.class_names[cifar.y_test[i]]}-{i}.png", "mimeType": "image/png",
                      "buffer": buf.getvalue()})
    files.append({"name": "notes.png", "mimeType": "image/png", "buffer": b"not an image"})
    w.page.locator("#predict-files").set_input_files(files)
    w.page.locator("#predict-form button[type=submit]").click()
    rows = w.page.locator("#predict-results tbody tr")
    rows.nth(3).wait_for(timeout=60_000)
    assert rows.count() == 4 and "not a readable image" in rows.nth(3).inner_text()
    assert w.images_loaded() == 3  # one overlay per image
    w.shot(site, "predict", at="#predict-results")
    w.clean()
