"""A sweep's Optuna study, rebuilt from its trials (as their jobs hold them) whenever it is needed.

Nothing of a sweep lives outside the results database: each trial is a child train job whose params hold the
values tried, whose history holds the per-epoch validation figures (Optuna's intermediate values) and whose
`trial` column holds Optuna's system attributes (a grid point, Hyperband's completed rungs) and whether it was
pruned. So a sweep survives a restart of every process, and any worker can propose trials or judge a pruning.
The sampler is made afresh for each trial from (seed, trial number): proposals depend on the seed and the
trials before, never on which process asked. Optuna's own storage is not used: its tables (and its Alembic
version table) would share the results database with convlens's migrations.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from convlens.ml.search_space import distributions
from convlens.worker.kinds.base import Done

if TYPE_CHECKING:
    import optuna

    from convlens.worker.kinds.sweep import SweepParams


def _optuna() -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)  # not a line per rebuilt study in the worker's log
    return optuna


def space_of(p: SweepParams) -> dict[str, Any]:
    """The sweep's distributions, parsed once per space (every trial state and proposal asks for them)."""
    return _parsed(tuple(p.space))


@lru_cache(maxsize=64)
def _parsed(space: tuple[str, ...]) -> dict[str, Any]:
    return distributions(list(space))


MEDIAN_WARMUP = 2  # epochs the median pruner waits before judging a trial (the first epochs are noise)


def startup_trials(trials: int) -> int:
    """Random trials before TPE models the results: a third of the budget, between 2 and 10 (Optuna's own)."""
    return min(10, max(2, trials // 3))


def make_sampler(p: SweepParams, number: int) -> optuna.samplers.BaseSampler:
    optuna = _optuna()
    seed = int.from_bytes(hashlib.sha256(f"{p.sampler_seed}:{number}".encode()).digest()[:4], "big")
    if p.sampler == "grid":
        return optuna.samplers.GridSampler({n: list(d.choices) for n, d in space_of(p).items()},
                                           seed=p.sampler_seed)
    if p.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: trials still running count as bad ones, so parallel proposals spread out.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup_trials(p.trials), constant_liar=True,
                                      multivariate=True)


def make_pruner(p: SweepParams) -> optuna.pruners.BasePruner:
    optuna = _optuna()
    if p.pruner == "median":  # from the second epoch on (the first is noise), below the completed trials' median
        return optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=MEDIAN_WARMUP)
    if p.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=p.epochs or 10, reduction_factor=3)
    return optuna.pruners.NopPruner()


def direction(p: SweepParams) -> str:
    return p.direction or ("minimize" if p.metric.endswith("loss") else "maximize")


@dataclass
class TrialState:
    """One trial as Optuna sees it, from its job."""

    number: int
    state: str  # complete | pruned | failed | running
    params: dict[str, Any]
    value: float | None
    intermediate: dict[int, float]


def trial_state(p: SweepParams, kid: Done) -> TrialState:
    names = space_of(p)
    intermediate = {int(e["epoch"]): float(e[p.metric]) for e in kid.history if p.metric in e}
    values = [v for v in intermediate.values() if not math.isnan(v)]  # a diverged epoch has no figure
    best = (min if direction(p) == "minimize" else max)(values) if values else None
    if kid.status == "succeeded":
        state = "pruned" if kid.trial.get("pruned_at") else "complete" if best is not None else "failed"
    else:
        state = "failed" if kid.status in ("failed", "cancelled") else "running"
    return TrialState(kid.part or 0, state, {n: kid.params.get(n) for n in names}, best if state == "complete"
                      else None, intermediate)


def study_of(p: SweepParams, sweep_id: str, kids: list[Done], number: int = 0) -> optuna.Study:
    """An in-memory study holding every trial so far, in trial-number order, with the sampler for trial `number`."""
    optuna = _optuna()
    states = {"complete": optuna.trial.TrialState.COMPLETE, "pruned": optuna.trial.TrialState.PRUNED,
              "failed": optuna.trial.TrialState.FAIL, "running": optuna.trial.TrialState.RUNNING}
    study = optuna.create_study(study_name=sweep_id, direction=direction(p), sampler=make_sampler(p, number),
                                pruner=make_pruner(p))
    dists = space_of(p)
    for kid in sorted(kids, key=lambda k: k.part or 0):
        t = trial_state(p, kid)
        study.add_trial(optuna.trial.create_trial(
            state=states[t.state], value=t.value, params=t.params, distributions=dists,
            intermediate_values=t.intermediate, system_attrs=kid.trial.get("attrs") or {}))
    return study


def propose(p: SweepParams, sweep_id: str, kids: list[Done], n: int) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The next n trials' values and their Optuna system attributes; a trial proposed while others run sees them
    as running (TPE's constant liar)."""
    study = study_of(p, sweep_id, kids, len(kids))
    dists = space_of(p)
    out = []
    for number in range(len(kids), len(kids) + n):
        study.sampler = make_sampler(p, number)
        trial = study.ask(dists)
        out.append((dict(trial.params), dict(study.trials[number].system_attrs)))
    return out
