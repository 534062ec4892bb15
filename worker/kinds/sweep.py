"""sweep: a hyper-parameter search whose trials are train jobs, at most `parallel` at once on any workers.

Optuna proposes each trial (TPE, random or grid) from the trials so far and prunes a trial after an epoch
whose validation figure is poor next to its siblings' (median or Hyperband); worker/sweeps.py rebuilds its
study from the trials' rows. The objective is a validation figure, never the test set.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from convlens.ml.config import TrainConfig, TrainOptions
from convlens.ml.params import refused
from convlens.ml.progress import ProgressEvent
from convlens.ml.search_space import SPEC_HELP, SpaceError, distributions
from convlens.worker.errors import JobError
from convlens.worker.kinds.base import Child, Context, Done, JobKind, Next, Output, table_lines
from convlens.worker.kinds.sweep_study import MEDIAN_WARMUP, direction, propose, study_of, trial_state
from convlens.worker.kinds.train import validate_training


class SweepParams(TrainOptions):
    """The training options are the fixed part of every trial; `space` names what varies."""

    space: Annotated[list[Annotated[str, Field(max_length=512)]], Field(min_length=1, max_length=16)] = Field(
        description=f"NAME=SPEC, SPEC one of {SPEC_HELP} (repeatable)", json_schema_extra={"form": "lines"})
    trials: Annotated[int, Field(ge=1, le=1000)] = Field(8, description="trials in all")
    parallel: Annotated[int, Field(ge=1, le=64)] = Field(2, description="trials running at once")
    metric: Literal["val_accuracy", "val_loss"] = Field("val_accuracy", description="the validation figure optimised")
    direction: Literal["maximize", "minimize"] | None = Field(
        None, description="maximize | minimize (default: minimize a loss, maximize the rest)")
    sampler: Literal["tpe", "random", "grid"] = Field("tpe", description="tpe | random | grid (choices only)")
    pruner: Literal["median", "hyperband", "none"] = Field(
        "median", description="median | hyperband | none: stops poor trials after an epoch")
    sampler_seed: Annotated[int, Field(ge=0, le=2**31 - 1)] = Field(
        0, description="the sampler's seed: the same seed on the same data proposes the same first trials")


class TrialRow(BaseModel):
    number: int
    job_id: str
    state: str = Field(description="complete | pruned | failed | running")
    params: dict[str, Any]
    value: float | None = Field(None, description="the best validation figure over its epochs (complete trials)")
    epochs: int = Field(description="epochs run")
    worker: str | None = None


MIN_IMPORTANCE_TRIALS = 4  # complete trials below which no importance is reported
IMPORTANCE_SEED = 0


class SweepResult(BaseModel):
    metric: str
    direction: str
    sampler: str
    pruner: str
    sampler_seed: int
    trials: list[TrialRow]
    best: TrialRow | None = Field(None, description="its model: --model SWEEP_ID:best")
    importances: dict[str, float] = Field({}, description="each searched option's importance (sums to 1), by "
                                                          "importance_method")
    importance_method: str | None = Field(None, description="the Optuna evaluator that computed them")
    importance_seed: int | None = Field(None, description="its random forest's seed: a re-run gives the same figures")
    importance_trials: int = Field(0, description="the complete trials they rest on (pruned ones are left out)")
    importance_note: str | None = None

    def summary(self) -> dict[str, float | None]:
        states = [t.state for t in self.trials]
        return {"best_value": self.best.value if self.best else None, "trials": len(self.trials),
                "complete": states.count("complete"), "pruned": states.count("pruned"),
                "failed": states.count("failed")}


def sweep_result(p: SweepParams, kids: list[Done]) -> SweepResult:
    """The trials so far and the best complete one (without importances, which compose() adds at the end)."""
    rows = []
    for kid in sorted(kids, key=lambda k: k.part or 0):
        t = trial_state(p, kid)
        rows.append(TrialRow(number=t.number, job_id=kid.job_id, state=t.state, params=t.params, value=t.value,
                             epochs=len(t.intermediate), worker=kid.worker))
    complete = [t for t in rows if t.state == "complete"]
    pick = min if direction(p) == "minimize" else max
    return SweepResult(metric=p.metric, direction=direction(p), sampler=p.sampler, pruner=p.pruner,
                       sampler_seed=p.sampler_seed, trials=rows,
                       best=pick(complete, key=lambda t: t.value) if complete else None)


class Sweep(JobKind, name="sweep", params=SweepParams, result=SweepResult, open_ended=True, template="_sweep.html",
            title="hyper-parameter search: train jobs proposed by Optuna, poor ones pruned, the best model kept"):

    def validate(self, params: dict[str, Any], strict_paths: bool) -> dict[str, Any]:
        validated = validate_training(self, params, strict_paths)
        p = SweepParams.model_validate(validated)
        try:
            dists = distributions(p.space)
        except SpaceError as exc:
            raise refused(SweepParams, "space", str(exc), p.space) from None
        if p.sampler == "grid":
            if any(not hasattr(d, "choices") for d in dists.values()):
                raise refused(SweepParams, "sampler", "grid searches choices only: give every --space as "
                              "choice:A,B,C", p.sampler)
            size = 1
            for d in dists.values():
                size *= len(d.choices)
            if p.trials > size:
                raise refused(SweepParams, "trials", f"the grid has {size} points, fewer than {p.trials} trials",
                              p.trials)
        if p.pruner == "median" and p.epochs is not None and p.epochs <= MEDIAN_WARMUP:
            raise refused(SweepParams, "pruner", f"the median pruner judges a trial from epoch {MEDIAN_WARMUP} on, so "
                          f"with {p.epochs} epochs it could stop none before its end: use --pruner none, or at least "
                          f"{MEDIAN_WARMUP + 1} epochs", p.pruner)
        if TrainConfig(**p.model_dump(include=set(TrainOptions.model_fields))).val_fraction == 0:
            raise refused(SweepParams, "val_fraction", "a sweep optimises a validation figure: keep a validation "
                          "split", 0)
        return validated

    def next(self, ctx: Context, kids: list[Done]) -> Next:
        p: SweepParams = ctx.params
        running = sum(k.status not in ("succeeded", "failed", "cancelled") for k in kids)
        progress = ProgressEvent(stage="trials", done=len(kids) - running, total=p.trials)
        if len(kids) >= p.trials:
            return Next(compose=not running, progress=progress)
        wanted = min(p.parallel - running, p.trials - len(kids))
        if wanted <= 0:
            return Next()
        fixed = p.model_dump(include=set(TrainOptions.model_fields))
        children = [Child("train", {**fixed, **values}, len(kids) + i, {"attrs": attrs})
                    for i, (values, attrs) in enumerate(propose(p, ctx.job_id, kids, wanted))]
        return Next(children, progress=progress)

    def compose(self, ctx: Context, done: list[Done]) -> Output:
        p: SweepParams = ctx.params
        result = sweep_result(p, done)
        if result.best is None:
            raise JobError("no trial completed (" + ", ".join(f"{t.number}: {t.state}" for t in result.trials) + ")")
        complete = sum(t.state == "complete" for t in result.trials)
        if len(p.space) == 1:
            result.importance_note = "one option searched: its importance is 1 by definition"
        elif complete < MIN_IMPORTANCE_TRIALS:
            result.importance_note = (f"no importances: {complete} complete trials, fewer than the "
                                      f"{MIN_IMPORTANCE_TRIALS} a fANOVA forest needs to say anything")
        else:
            import optuna

            # fANOVA by name, seeded (Optuna's default evaluator changes between versions): the figure can be
            # recomputed from the stored method, seed and trials.
            evaluator = optuna.importance.FanovaImportanceEvaluator(seed=IMPORTANCE_SEED)
            try:
                importances = optuna.importance.get_param_importances(study_of(p, ctx.job_id, done),
                                                                      evaluator=evaluator)
                result.importances = {k: float(v) for k, v in importances.items()}
                result.importance_method, result.importance_seed = "FanovaImportanceEvaluator", IMPORTANCE_SEED
                result.importance_trials = complete
                pruned = sum(t.state == "pruned" for t in result.trials)
                result.importance_note = (f"fANOVA (seed {IMPORTANCE_SEED}) over {complete} complete trials"
                                          + (f"; {pruned} pruned trials left out" if pruned else ""))
            except (RuntimeError, ValueError) as exc:  # too few distinct completed trials to fit the forest
                result.importance_note = f"no importances: {exc}"
        return Output(result=result)

    def headline(self, result: SweepResult) -> str | None:
        if result.best is None:
            return None
        return f"best {result.metric} {result.best.value:.4f} (trial {result.best.number})"

    def describe(self, result: SweepResult) -> list[str]:
        lines = table_lines(trials_table(result))
        if result.best:
            b = result.best
            lines += [f"best: trial {b.number}, {result.metric} {b.value:.4f}, "
                      + ", ".join(f"{k}={v}" for k, v in b.params.items()),
                      f"its model: --model {b.job_id} (or SWEEP_ID:best)"]
        if result.importances:
            lines.append("importance: " + ", ".join(f"{k} {v:.2f}" for k, v in result.importances.items())
                         + f" ({result.importance_note})")
        elif result.importance_note:
            lines.append(result.importance_note)
        return lines


def trials_table(result: SweepResult) -> list[dict[str, Any]]:
    """The trials as table rows: number, state, value, epochs, each searched option, worker, job."""
    return [{"trial": t.number, "state": t.state, result.metric: t.value, "epochs": t.epochs, **t.params,
             "worker": t.worker, "job": t.job_id} for t in result.trials]
