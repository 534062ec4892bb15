"""The browser dashboard: server-rendered pages (Jinja2) over the same queries and tokens as the JSON API.

Pages read with the session cookie a login URL sets; every change they make (submit, cancel) goes through
the JSON API with the page's CSRF token, so there is one validation and one access check. Nothing is fetched
from elsewhere: charts are server-made SVG, scripts and styles are served from api/static.
"""

from __future__ import annotations

import base64
import io
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any

import numpy as np
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response
from fastapi.templating import Jinja2Templates
from sqlalchemy import func, select

from convlens.api import queries
from convlens.api.auth import Admin, Reader, problem, session_of
from convlens.api.deps import MAX_FILE_BYTES, MAX_FILES, job_or_404, page_cursor, page_filters
from convlens.api.files import artifact_response
from convlens.api.forms import form_fields
from convlens.api.job_search import JobSearch, Key, cell, parse_columns
from convlens.api.schemas import JobView, KindName, Status
from convlens.api.tokens import Principal, list_tokens
from convlens.db.models import FINISHED, JOB_STATUSES, Job, Prediction
from convlens.db.rows import MetricRow
from convlens.db.session import session_scope
from convlens.ml import plots
from convlens.ml.progress import history_columns
from convlens.worker.audit import Action, events
from convlens.worker.kinds import KINDS, PART_KINDS
from convlens.worker.kinds.train import TrainResult
from convlens.worker.paths import JOB_ID, local, overlay_path

HERE = Path(__file__).parent
STATIC_DIR = HERE / "static"
templates = Jinja2Templates(directory=HERE / "templates")
router = APIRouter(include_in_schema=False)
PAGE = 50  # jobs per page
GRID = 48  # images per page of a classify job
THUMB = 128  # px, the longer side of a thumbnail
# Larger images get no thumbnail (a JPEG counts at the reduced scale it decodes at): the API decodes for
# strangers, so what one request may make it hold is kept small.
THUMB_PIXELS = 16_000_000
MAX_COMPARE = 8


def svg_uri(svg: str) -> str:
    """An <img> source for a server-made chart (no inline markup, so no ids or styles can clash)."""
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def render(request: Request, who: Principal, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    found = session_of(request)
    return templates.TemplateResponse(request, name, {"who": who, "csrf": found.csrf if found else "",
                                                      "kinds": list(KINDS), **context}, status_code=status_code)


def render_error(request: Request, status: int, message: str) -> HTMLResponse:
    return templates.TemplateResponse(request, "error.html", {"status": status, "message": message, "who": None,
                                                              "csrf": "", "kinds": list(KINDS)}, status_code=status)


SEARCH_FIELDS = ("status", "kind", "tag", "filter", "sort", "columns")


def _search(request: Request) -> tuple[JobSearch, list[Key], dict[str, str]]:
    """The jobs table's tag, filter, sort and columns from the page's query (empty fields unset), and the
    query that keeps them in its links."""
    q = request.query_params
    kept = {k: q[k] for k in SEARCH_FIELDS if q.get(k)}
    tags = [t.strip() for t in kept.get("tag", "").split(",") if t.strip()]
    return JobSearch.parse(kept.get("filter"), kept.get("sort"), tags), parse_columns(kept.get("columns")), kept


def jobs_page(request: Request, who: Principal, status: Status | None, kind: KindName | None,
              offset: int) -> HTMLResponse:
    search, columns, kept = _search(request)
    jobs = queries.list_jobs(status, kind, limit=PAGE, offset=offset, search=search)
    return render(request, who, "jobs.html", jobs=jobs, total=queries.count_jobs(status, kind, search=search),
                  offset=offset, page=PAGE, status=status, kind=kind, statuses=list(JOB_STATUSES),
                  forms={k.name: (k.title, form_fields(k.params_model)) for k in KINDS.values() if k.over_http},
                  can_submit=who.allows("submit"), columns=columns, cell=cell, search=kept)


@router.get("/ui/jobs/rows")
def job_rows(request: Request, who: Reader, status: Status | None = None, kind: KindName | None = None,
             offset: int = Query(0, ge=0, le=10**12)) -> HTMLResponse:
    """The jobs table's rows alone: what the page polls to stay live."""
    search, columns, _ = _search(request)
    jobs = queries.list_jobs(status, kind, limit=PAGE, offset=offset, search=search)
    return render(request, who, "_job_rows.html", jobs=jobs, can_submit=who.allows("submit"), columns=columns,
                  cell=cell)


def _by_split(rows: list[MetricRow]) -> dict[str, dict[tuple[str, str | None], float]]:
    out: dict[str, dict[tuple[str, str | None], float]] = {}
    for r in rows:
        out.setdefault(r.split, {})[(r.name, r.class_name)] = r.value
    return out


@lru_cache(maxsize=256)
def _chart(job_id: str, finished_at: str, which: str) -> str:
    """Charts of finished jobs never change: made once per process (keyed by when the job finished)."""
    job = queries.get_job(job_id)
    assert job is not None and job.result is not None
    r = job.result.model_dump()
    if which == "f1":
        names = r["class_names"]
        series = {"F1": [r["per_class_f1"][c] for c in names]}
        thresholded = _by_split(queries.metrics(job_id)).get("test_thresholded", {})
        if thresholded:
            series["F1, tuned thresholds"] = [thresholded.get(("f1", c), 0.0) for c in names]
        return svg_uri(plots.bars_svg(names, series, "F1 (test)"))
    if which == "folds":
        f1 = {k.split(":", 1)[1]: v for k, v in r["metrics"].items() if k.startswith("f1:")}
        return svg_uri(plots.bars_svg(list(f1), {"F1": [v["mean"] for v in f1.values()]},
                                      "F1, mean ± sample s.d. over the folds",
                                      errors={"F1": [v["std"] for v in f1.values()]}))
    if which == "layers":
        rows = r["rows"]
        return svg_uri(plots.lines_svg([x["layer"] for x in rows], {
            "this layer": [x["probe_accuracy"] for x in rows],
            "layers up to here": [x.get("cumulative_accuracy") for x in rows]}, "probe accuracy (test)"))
    raise ValueError(which)


def train_context(job: JobView) -> dict[str, Any]:
    r = job.result.model_dump()  # type: ignore[union-attr]
    splits = _by_split(queries.metrics(job.id))
    test, thr = splits.get("test", {}), splits.get("test_thresholded", {})
    names = r["class_names"]
    per_class = [{"class": c, **{m: test.get((m, c)) for m in ("precision", "recall", "f1")},
                  "f1_thresholded": thr.get(("f1", c)),
                  "threshold": r["thresholds"][i] if r.get("thresholds") else None} for i, c in enumerate(names)]
    summary = [(name, test.get((key, None)), thr.get((key, None))) for name, key in (
        ("accuracy", "accuracy"), ("macro precision", "macro_precision"), ("macro recall", "macro_recall"),
        ("macro F1", "macro_f1"), ("weighted F1", "weighted_f1"))]
    cm = r["confusion_matrix"]
    peak = max((v for row in cm for v in row), default=1) or 1
    return {"r": r, "per_class": per_class, "summary": summary, "confusion": cm, "peak": peak,
            "accuracy_views": getattr(job.result, "accuracy_views", ""),
            "f1_chart": _chart(job.id, str(job.finished_at), "f1")}


def classify_context(job: JobView, request: Request) -> dict[str, Any]:
    filters, after = page_filters(request), page_cursor(request.query_params.get("after"))
    rows = queries.predictions(job.id, filters, limit=GRID, after=after)
    nxt = queries.next_cursor(rows, GRID)
    return {"rows": rows, "filters": filters, "next_after": nxt, "query": filters.query(),
            "first_page": after is None,
            "overlays": bool(job.result and job.result.model_dump().get("overlay_dir")),
            "labels": sorted((job.result.model_dump().get("per_class") or {}) if job.result else [])}


def sweep_context(job: JobView, request: Request) -> dict[str, Any]:
    """The trials so far (its result once it ended), sorted as asked, with the optimisation history,
    importances and parallel coordinates."""
    from convlens.ml.search_space import distributions
    from convlens.worker.sweeps import sweep_view

    view = sweep_view(job.id)
    rows = view.trials
    params = list(rows[0].params) if rows else []
    columns = ["trial", "state", view.metric, "epochs", *params, "worker"]
    sort = request.query_params.get("sort") or "trial"
    sort = sort if sort in columns else "trial"
    desc = request.query_params.get("desc") == "1"

    def key(t: Any) -> tuple[bool, Any]:
        v = {"trial": t.number, "state": t.state, view.metric: t.value, "epochs": t.epochs, "worker": t.worker,
             **t.params}.get(sort)
        return (v is None) != desc, v if isinstance(v, int | float) else str(v)

    context: dict[str, Any] = {"view": view, "rows": sorted(rows, key=key, reverse=desc), "columns": columns,
                               "params": params, "sort": sort, "desc": desc, "total": job.params["trials"],
                               "done": sum(t.state != "running" for t in rows)}
    values = [t.value for t in rows if t.state == "complete"]
    if values:
        pick, so_far, best_so_far = min if view.direction == "minimize" else max, None, []
        for t in rows:
            so_far = so_far if t.value is None else t.value if so_far is None else pick(so_far, t.value)
            best_so_far.append(so_far)
        context["history_chart"] = svg_uri(plots.lines_svg([str(t.number) for t in rows], {
            "trial": [t.value for t in rows], "best so far": best_so_far}, view.metric))
        finished = {f"trial {t.number}": {**t.params, view.metric: t.value} for t in rows if t.state == "complete"}
        searched = distributions(job.params.get("space") or [])
        context["parallel_chart"] = svg_uri(plots.parallel_svg(
            finished, [*params, view.metric], view.metric,
            log_axes={n for n, d in searched.items() if getattr(d, "log", False)}))
    if view.importances:
        context["importance_chart"] = svg_uri(plots.bars_svg(list(view.importances), {
            "importance": list(view.importances.values())}, "importance"))
    return {"sweep": context}


@router.get("/ui/jobs/{job_id}")
def job_page(request: Request, job_id: str, who: Reader) -> HTMLResponse:
    job = job_or_404(job_id)
    context: dict[str, Any] = {"job": job, "artifacts": {a.kind: a.key for a in job.artifacts or []},
                               "finished": job.status in FINISHED, "can_submit": who.allows("submit"),
                               "can_edit": who.allows("admin")
                               or (who.allows("submit") and job.submitted_by == who.name),
                               "curves": svg_uri(plots.history_svg(history_columns(job.history)))
                               if job.history else None}
    kind = KINDS.get(job.kind) or PART_KINDS.get(job.kind)
    template = None if kind is None else kind.part_template if job.kind in PART_KINDS else kind.template
    if template is not None and (job.result is not None or template in LIVE_TEMPLATES):
        context.update(PAGE_CONTEXTS.get(template, lambda *_: {})(job, request))
    else:
        template = None
    return render(request, who, "job.html", template=template, stages=kind.stages if kind else (), **context)


# What a kind's template needs besides the job (each kind names its template: worker.kinds).
PAGE_CONTEXTS: dict[str, Any] = {
    "_train.html": lambda job, request: train_context(job),
    "_kfold.html": lambda job, request: {"folds_chart": _chart(job.id, str(job.finished_at), "folds")},
    "_layers.html": lambda job, request: {"layers_chart": _chart(job.id, str(job.finished_at), "layers")},
    "_classify.html": classify_context,
    "_sweep.html": sweep_context,
}
LIVE_TEMPLATES = {"_classify.html", "_sweep.html"}  # shown while the job runs: rows (trials) arrive as it goes


def _prediction(job_id: str, prediction_id: int) -> tuple[Job, Prediction]:
    with session_scope() as s:
        job = s.get(Job, job_id) if JOB_ID.fullmatch(job_id) else None
        row = s.get(Prediction, prediction_id) if 0 < prediction_id < 2**63 else None
        if job is None or row is None or row.job_id != job_id:
            raise problem(404, f"no prediction {prediction_id} in job {job_id}")
        s.expunge_all()
        return job, row


@router.get("/ui/jobs/{job_id}/images/{prediction_id}")
def thumbnail(job_id: str, prediction_id: int, _: Reader) -> Response:
    """A thumbnail of a classified image, read from the job's own folder only (as the worker read it)."""
    from PIL import Image

    from convlens.ml.data.images import decoded
    from convlens.ml.errors import ImageReadError

    job, row = _prediction(job_id, prediction_id)
    try:
        with decoded(local(row.path), within=local(job.params["folder"]), max_pixels=THUMB_PIXELS,
                     draft=(THUMB, THUMB)) as img:
            image = img.copy() if img.width * img.height <= THUMB * THUMB else img.resize(_thumb_size(img.size))
    except (ImageReadError, KeyError, TypeError) as exc:
        raise problem(404, f"image of prediction {prediction_id} cannot be shown: "
                           f"{getattr(exc, 'reason', 'no folder')}") from None
    image.thumbnail((THUMB, THUMB))
    if max(image.size) < THUMB:  # tiny images (CIFAR's 32 px) are enlarged, pixelated on purpose
        scale = THUMB // max(image.size)
        image = image.resize((image.width * scale, image.height * scale), Image.Resampling.NEAREST)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return Response(out.getvalue(), media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _thumb_size(size: tuple[int, int]) -> tuple[int, int]:
    scale = THUMB / max(size)
    return max(1, round(size[0] * scale)), max(1, round(size[1] * scale))


@router.get("/ui/jobs/{job_id}/overlays/{prediction_id}")
def overlay(job_id: str, prediction_id: int, _: Reader) -> Response:
    job, row = _prediction(job_id, prediction_id)
    folder = (job.result or {}).get("overlay_dir")
    if not folder:
        raise problem(404, f"no Grad-CAM overlay for prediction {prediction_id}")
    return artifact_response(overlay_path(folder, row.path), job_id, "image/png",
                             f"Grad-CAM overlay of prediction {prediction_id}",
                             {"Cache-Control": "private, max-age=3600"})


def _label(job: JobView) -> str:
    return f"{job.id[:8]} {job.name}" if job.name else job.id[:8]


def _across(jobs: list[JobView], params: str | None, metric: str, group: str | None) -> dict[str, Any]:
    """Curves overlaid, parameters against a figure (parallel coordinates) and a figure grouped by a parameter."""
    histories = {_label(j): j.result.history for j in jobs}  # type: ignore[union-attr]
    chosen = [p.strip() for p in (params or "").split(",") if p.strip()] or sorted(
        {k for j in jobs for k in j.params if len({str(x.params.get(k)) for x in jobs}) > 1})
    runs = {_label(j): {**{p: j.params.get(p) for p in chosen}, metric: (j.metrics or {}).get(metric)}
            for j in jobs}
    groups: dict[str, list[float]] = {}
    if group:
        for j in jobs:
            value = (j.metrics or {}).get(metric)
            if value is not None:
                groups.setdefault(str(j.params.get(group)), []).append(value)
    return {"curves": svg_uri(plots.history_svg({}, histories)),
            "parallel": svg_uri(plots.parallel_svg(runs, [*chosen, metric], metric)),
            "chosen": chosen, "metric": metric, "group": group,
            "metric_names": sorted({k for j in jobs for k in j.metrics or {}}),
            "param_names": sorted({k for j in jobs for k in j.params}),
            "groups": [(g, len(v), float(np.mean(v)), float(np.std(v, ddof=1)) if len(v) > 1 else 0.0)
                       for g, v in sorted(groups.items())]}


@router.get("/ui/compare")
def compare(request: Request, who: Reader,
            ids: Annotated[list[str], Query(max_length=MAX_COMPARE, description="train job ids")] = [],  # noqa: B006
            params: Annotated[str | None, Query(max_length=500, description="comma-separated parameters to draw "
                                                "(default: those that differ)")] = None,
            metric: Annotated[str, Query(max_length=64, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")] = "accuracy",
            group: Annotated[str | None, Query(max_length=64)] = None) -> HTMLResponse:
    jobs = []
    for job_id in dict.fromkeys(ids):
        job = job_or_404(job_id)
        if not isinstance(job.result, TrainResult):
            raise problem(422, f"job {job_id} is not a succeeded train job (or k-fold fold): nothing to compare")
        if job.parent_id:  # a fold trains with its k-fold's options
            job.params = {**job_or_404(job.parent_id).params, **job.params}
        jobs.append(job)
    candidates = queries.list_jobs("succeeded", "train", limit=100)
    if len(jobs) < 2:
        return render(request, who, "compare.html", jobs=jobs, candidates=candidates, selected=[j.id for j in jobs])
    results = [j.result.model_dump() for j in jobs]  # type: ignore[union-attr]
    names = results[0]["class_names"]
    rows = [("accuracy", [r["accuracy"] for r in results]), ("macro F1", [r["macro_f1"] for r in results]),
            ("accuracy, tuned thresholds", [r.get("thresholded_accuracy") for r in results]),
            ("ECE after scaling", [((r.get("calibration") or {}).get("after") or {}).get("ece") for r in results]),
            ("temperature", [r.get("temperature") for r in results]),
            ("epochs run", [r["epochs_run"] for r in results]), ("training images", [r["n_train"] for r in results])]
    same_classes = all(r["class_names"] == names for r in results)
    per_class = [(c, [r["per_class_f1"].get(c) for r in results]) for c in names] if same_classes else []
    chart = svg_uri(plots.bars_svg(names, {j.id[:8]: [r["per_class_f1"][c] for c in names]
                                           for j, r in zip(jobs, results, strict=True)}, "F1 (test)")) \
        if same_classes else None
    return render(request, who, "compare.html", jobs=jobs, candidates=candidates, rows=rows, per_class=per_class,
                  chart=chart, same_classes=same_classes, selected=[j.id for j in jobs],
                  **_across(jobs, params, metric, group))


@router.get("/ui/models")
def models_page(request: Request, who: Reader) -> HTMLResponse:
    from convlens.worker import registry

    return render(request, who, "models.html", models=registry.list_models(), input=registry.INPUT)


@router.get("/ui/predict")
def predict_page(request: Request, who: Reader) -> HTMLResponse:
    from convlens.worker import registry

    return render(request, who, "predict.html", models=[m for m in registry.list_models() if m.present],
                  can_submit=who.allows("submit"), max_files=MAX_FILES, max_file_mb=MAX_FILE_BYTES >> 20)


@router.get("/ui/workers")
def workers(request: Request, who: Reader, fragment: bool = False) -> HTMLResponse:
    from convlens.worker.monitor import live_workers, queue_depths

    # A fanned-out job is "running" while its parts run: the parts are what occupies the workers.
    running = [j for j in queries.list_jobs("running", top_level=False, limit=500)
               if j.kind not in KINDS or not (KINDS[j.kind].fans_out or KINDS[j.kind].composite)]
    by_worker: dict[str, list[JobView]] = {}
    for job in running:
        by_worker.setdefault(job.worker or "(unknown)", []).append(job)
    depths = queue_depths()  # no worker can answer through a broker that is away: not asked then
    return render(request, who, "_workers.html" if fragment else "workers.html",
                  workers=[] if depths.unreachable else live_workers(), depths=depths, by_worker=by_worker,
                  queued=queries.count_jobs("queued", top_level=False))


AUDIT_PAGE = 100


@router.get("/ui/audit")
def audit_page(request: Request, who: Admin, actor: Annotated[str | None, Query(max_length=64)] = None,
               action: Action | None = None, before: Annotated[int | None, Query(ge=1)] = None) -> HTMLResponse:
    """The tokens with their quotas, and who changed what (admin tokens only), newest first, a page at a time."""
    rows = events(actor or None, action, before=before, limit=AUDIT_PAGE)
    tokens = list_tokens()
    with session_scope() as s:  # each token's unfinished top-level jobs: what its quota counts
        unfinished = dict(s.execute(select(Job.submitted_by, func.count()).where(
            Job.parent_id.is_(None), Job.status.not_in(FINISHED)).group_by(Job.submitted_by)).all())
    return render(request, who, "audit.html", events=rows, actions=list(Action), actor=actor or "", action=action,
                  next_before=rows[-1].id if len(rows) == AUDIT_PAGE else None, tokens=tokens,
                  unfinished=unfinished)
