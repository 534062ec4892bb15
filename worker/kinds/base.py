"""The shape every job kind shares. A kind either runs whole (`run`), fans out (`plan` fixes the params of its
parts, `run_part` runs one part anywhere, `aggregate` combines them once all succeeded), or is composite: its
`stages` are jobs of other kinds, each stage's children made from the typed results of the stages before it
(`stage`), and `compose` writes the kind's own result once the last stage has succeeded. A composite kind that is
not staged (a sweep) decides its children itself each time one ends (`next`). A composite kind's children are
ordinary jobs of their own kind (their own result, page, recovery), with the composite as parent.

Each step returns an `Output` (a typed result plus the rows to store); `worker.steps` stores it in one
transaction that first deletes what an earlier attempt of the same step stored, so redeliveries never
duplicate rows. Kinds import ml/ (and so TensorFlow) inside their steps only.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel
from sqlalchemy.orm import Session

from convlens.db.rows import ArtifactRow, MetricRow, PredictionRow
from convlens.ml.progress import ProgressEvent, ProgressFn
from convlens.worker.queues import QueueName


@dataclass
class ModelRecord:
    """A trained model to register (train jobs): later jobs refer to it by the train job's id."""

    path: str
    preset: str
    class_names: list[str]
    thresholds: list[float] | None


@dataclass
class Output:
    result: BaseModel
    metrics: list[MetricRow] = field(default_factory=list)
    artifacts: list[ArtifactRow] = field(default_factory=list)
    predictions: list[PredictionRow] = field(default_factory=list)
    model: ModelRecord | None = None


@dataclass
class Child:
    """A job a composite kind asks for: its kind and params (validated like a submitted job's); `part` is its
    stage (or trial number), set by `next`; `trial`: its first jobs.trial record (a sweep's trials)."""

    kind: str
    params: dict[str, Any]
    part: int | None = None
    trial: dict[str, Any] | None = None


@dataclass
class Done:
    """A child (a part of a fan-out job, a composite's child) with its typed result once it succeeded. A staged
    composite and a fan-out only ever see succeeded ones; a sweep sees all of its trials, running ones too."""

    job_id: str
    kind: str
    result: Any  # the kind's result model; None until it succeeded
    worker: str | None = None
    status: str = "succeeded"
    part: int | None = None
    params: dict[str, Any] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    trial: dict[str, Any] = field(default_factory=dict)


@dataclass
class Next:
    """What a composite job does when advanced: start `children`, compose its result, or (neither) wait."""

    children: list[Child] = field(default_factory=list)
    compose: bool = False
    progress: ProgressEvent | None = None


@dataclass
class Context:
    """What a step runs on: the job (the parent, for a part), its validated params, where to write, progress."""

    job_id: str
    params: Any
    out_dir: Path
    progress: ProgressFn
    part: int | None = None
    part_params: dict[str, Any] = field(default_factory=dict)
    # An outside verdict after each epoch of a training run, given (epoch, figures): a sweep's pruner.
    should_stop: Callable[[int, dict[str, float]], bool] | None = None


class JobKind:
    """Subclasses declare themselves in their class line, e.g.
    `class Train(JobKind, name="train", params=TrainOptions, result=TrainResult, title="...")`."""

    name: ClassVar[str]
    title: ClassVar[str]  # one line for help texts and the API description
    params_model: ClassVar[type[BaseModel]]
    result_model: ClassVar[type[BaseModel]]
    queue: ClassVar[str] = "gpu"  # where its work (each part, for a kind that fans out) runs
    part_name: ClassVar[str | None] = None  # "fold", "shard": set by kinds that fan out
    part_result_model: ClassVar[type[BaseModel] | None] = None
    stages: ClassVar[tuple[str, ...]] = ()  # a composite kind's stages, in order
    open_ended: ClassVar[bool] = False  # a composite whose `next` decides its children (no stages)
    predicts: ClassVar[bool] = False  # its runs store a prediction row per file (results predictions)
    fails_with_child: ClassVar[bool] = True  # a failed or cancelled child fails it (a sweep's trial does not)
    over_http: ClassVar[bool] = True  # submitted over HTTP and the dashboard's forms (import: the server's CLI only)
    template: ClassVar[str | None] = None  # the dashboard's partial for its result (api/templates)
    part_template: ClassVar[str | None] = None  # the same for one of its parts

    def __init_subclass__(cls, name: str, title: str, params: type[BaseModel], result: type[BaseModel],
                          queue: str = "gpu", part: str | None = None, part_result: type[BaseModel] | None = None,
                          stages: tuple[str, ...] = (), template: str | None = None,
                          part_template: str | None = None, open_ended: bool = False, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.open_ended, cls.fails_with_child = open_ended, not open_ended
        cls.name, cls.title, cls.params_model, cls.result_model, cls.queue = name, title, params, result, queue
        cls.part_name, cls.part_result_model, cls.stages, cls.template = part, part_result, stages, template
        cls.part_template = part_template

    @property
    def fans_out(self) -> bool:
        return self.part_name is not None

    @property
    def composite(self) -> bool:
        return bool(self.stages) or self.open_ended

    @property
    def part_kind(self) -> str | None:
        """The kind recorded on its part jobs' rows."""
        return f"{self.name}_{self.part_name}" if self.part_name else None

    @property
    def entry_queue(self) -> str:
        """Planning is bookkeeping (no TensorFlow), so a kind that fans out starts on the cpu queue."""
        return "cpu" if self.fans_out or self.composite else self.queue

    @property
    def queues(self) -> tuple[str, ...]:
        """Every queue its work goes through (a worker must consume each for the job to finish)."""
        if self.composite:
            return (QueueName.CPU, QueueName.GPU)
        return tuple(dict.fromkeys((self.entry_queue, self.queue)))

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        """The params as stored on the job row; pydantic's ValidationError (a ValueError) when bad."""
        return self.params_model.model_validate(params).model_dump()

    def parse(self, params: dict[str, Any]) -> Any:
        """Stored params as the params model, without validating them again (done once, at creation)."""
        return self.params_model.model_construct(**params)

    def run(self, ctx: Context) -> Output:
        raise NotImplementedError

    def plan(self, ctx: Context) -> list[dict[str, Any]]:
        """The params of each part, fixed once (a redelivered plan reuses the parts it created)."""
        raise NotImplementedError

    def part_size(self, part_params: dict[str, Any]) -> int:
        """How much of the job's progress one part counts for."""
        return 1

    def run_part(self, ctx: Context) -> Output:
        raise NotImplementedError

    def aggregate(self, ctx: Context, parts: list[Done]) -> Output:
        """Combines the parts' typed results (in part order) once every part has succeeded."""
        raise NotImplementedError

    def stage(self, ctx: Context, index: int, done: list[Done]) -> list[Child]:
        """A composite kind's children for stage `index`, made from what the earlier stages returned."""
        raise NotImplementedError

    def next(self, ctx: Context, kids: list[Done]) -> Next:
        """What to do now, given every child so far: for a staged kind, nothing while a child runs, the next
        stage's children once all have succeeded, the composition after the last stage. Must be repeatable:
        two advances may ask at once, and only one stores what it returns."""
        if any(k.status != "succeeded" for k in kids):
            current = max(k.part or 0 for k in kids)
            stage = [k for k in kids if (k.part or 0) == current]
            ended = sum(k.status == "succeeded" for k in stage)
            if not self.stages or current >= len(self.stages):
                return Next()
            return Next(progress=ProgressEvent(  # e.g. "train and k-fold: 1 of 2 jobs done", not "0/2"
                stage=f"{self.stages[current]}: {ended} of {len(stage)} jobs done", done=current,
                total=len(self.stages), fraction=(current + ended / len(stage)) / len(self.stages)))
        index = max((k.part or 0 for k in kids), default=-1) + 1
        if index >= len(self.stages):
            return Next(compose=True)
        progress = ProgressEvent(stage=self.stages[index], done=index, total=len(self.stages))
        return Next([Child(c.kind, c.params, index) for c in self.stage(ctx, index, kids)], progress=progress)

    def compose(self, ctx: Context, done: list[Done]) -> Output:
        """A composite kind's own result, once every stage's children have succeeded."""
        raise NotImplementedError

    def after_finish(self, s: Session, job_id: str, result: BaseModel) -> None:
        """Upkeep once a job's success is committed (its results are already readable): nothing by default."""

    def describe(self, result: Any) -> list[str]:
        """Lines for `convlens jobs show` (and the end of `run`/`--wait`), from the kind's typed result."""
        return []

    def headline(self, result: Any) -> str | None:
        """The one figure a job list shows for a finished job of this kind (from its typed result)."""
        return None

    def public_params(self, params: dict[str, Any], is_part: bool) -> dict[str, Any]:
        """The params shown by the CLI and the API (a part's may be long: a shard's file list)."""
        return params


def summary_of(result: BaseModel) -> dict[str, float]:
    """A result's headline figures by name (what `jobs list --filter/--sort` compare): its own `summary()`
    where its model defines one, else its top-level numbers."""
    own = getattr(result, "summary", None)
    if callable(own):
        return {k: float(v) for k, v in own().items() if v is not None}
    return {k: float(v) for k, v in result if isinstance(v, int | float) and not isinstance(v, bool)}


def table_lines(rows: list[dict[str, Any]], columns: list[str] | None = None, width: int | None = None,
                shorten: tuple[str, ...] = ()) -> list[str]:
    """A plain-text table (the CLI's, and the kinds' own renderings).

    With `width`, the `shorten` columns are cut in turn until the table fits: the first from the left (a path
    keeps its file name), the others from the right.
    """
    if not rows:
        return ["(no rows)"]
    columns = columns or list(rows[0])
    cells = [[_cell(r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    for n, name in enumerate(c for c in shorten if c in columns):
        over = sum(widths) + 2 * (len(widths) - 1) - (width or sum(widths))
        if over <= 0:
            break
        i = columns.index(name)
        widths[i] = max(len(name), 8, widths[i] - over)
        for row in cells:
            if len(row[i]) > widths[i]:
                row[i] = "…" + row[i][1 - widths[i]:] if n == 0 else row[i][:widths[i] - 1] + "…"
    return ["  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip() for row in [columns, *cells]]


def number(v: float) -> str:
    """A figure for people: four significant digits (0.6996, 0.0513, 3e-05), whole numbers from 1,000 up
    (images_per_s 1,937), never a float's full repr."""
    return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return number(v)
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v)
