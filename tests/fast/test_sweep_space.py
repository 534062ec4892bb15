"""A sweep's search space and its study rebuilt from trial rows: specs checked by the training options' own
rules, the same seed proposing the same trials, pruning judged from the trials' stored epochs."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from convlens.ml.search_space import SpaceError, distributions
from convlens.worker.kinds import get_kind
from convlens.worker.kinds.base import Done
from convlens.worker.kinds.sweep import SweepParams, sweep_result
from convlens.worker.kinds.sweep_study import propose, study_of

SPACE = ["learning_rate=log:1e-4:3e-2", "batch_size=choice:64,128,256"]


@pytest.mark.parametrize(("spec", "says"), [
    ("learning_rate=log:1e-4:20", "less than or equal to 10"),
    ("batch_size=uniform:8:64", "whole number: use int:LOW:HIGH"),
    ("rotation=int:0:1", "not a whole number"),
    ("epochs=int:1:9", "cannot be searched"),
    ("learning_rate", "expected NAME=SPEC"),
    ("learning_rate=log:0:1", "log scale needs LOW > 0"),
    ("learning_rate=log:0.1:0.01", "LOW must be below HIGH"),
    ("batch_size=choice:64", "at least two different values"),
    ("schedule=choice:cosine,sideways", "'plateau', 'cosine'"),
    ("learning_rate=normal:1:2", "SPEC is one of"),
])
def test_a_bad_spec_is_one_clear_reason(spec, says):
    with pytest.raises(SpaceError, match=says):
        distributions([spec])


def test_specs_become_typed_distributions():
    d = distributions([*SPACE, "flip=choice:true,false", "patience=int:1:4", "rotation=uniform:0:0.1"])
    assert d["learning_rate"].log and d["learning_rate"].low == 1e-4
    assert d["batch_size"].choices == (64, 128, 256) and d["flip"].choices == (True, False)
    assert (d["patience"].low, d["patience"].high) == (1, 4) and not d["rotation"].log


def test_the_sweep_kind_refuses_what_cannot_run():
    kind = get_kind("sweep")
    for params, field in (({"space": ["zoom=int:1:2"]}, "space"), ({"space": SPACE, "sampler": "grid"}, "sampler"),
                          ({"space": ["batch_size=choice:64,128"], "sampler": "grid", "trials": 3}, "trials"),
                          ({"space": SPACE, "val_fraction": 0.0}, "val_fraction"), ({}, "space")):
        with pytest.raises(ValidationError) as caught:
            kind.validate(params, strict_paths=False)
        assert caught.value.errors()[0]["loc"][0] == field, params


def _trial(number: int, lr: float, values: list[float], status: str = "succeeded", **trial) -> Done:
    history = [{"epoch": e + 1, "val_accuracy": v} for e, v in enumerate(values)]
    return Done(f"job{number}", "train", None, "w1", status, number, {"learning_rate": lr, "batch_size": 64},
                history, {"attrs": {}, **trial})


def test_the_same_seed_proposes_the_same_trials_whoever_asks():
    p = SweepParams.model_validate({"space": SPACE, "trials": 8, "sampler_seed": 7})
    first = propose(p, "sweep-a", [], 3)
    assert first == propose(p, "sweep-b", [], 3)  # neither the process nor the sweep's id changes them
    assert [v for v, _ in first] != [v for v, _ in propose(p.model_copy(update={"sampler_seed": 8}), "a", [], 3)]
    assert len({v["learning_rate"] for v, _ in first}) == 3
    history = [_trial(0, 1e-3, [0.3, 0.5]), _trial(1, 1e-2, [0.2, 0.4])]
    assert propose(p, "x", history, 2) == propose(p, "x", history, 2)


def test_states_values_and_the_best_come_from_the_trial_rows():
    p = SweepParams.model_validate({"space": SPACE, "trials": 4})
    kids = [_trial(0, 1e-3, [0.3, 0.55, 0.5]), _trial(1, 1e-2, [0.2, 0.6]), _trial(2, 3e-2, [0.1], pruned_at=2),
            _trial(3, 1e-4, [], status="failed")]
    result = sweep_result(p, kids)
    assert [t.state for t in result.trials] == ["complete", "complete", "pruned", "failed"]
    assert result.trials[0].value == 0.55  # the best epoch, as early stopping keeps it
    assert result.best.number == 1 and result.best.value == 0.6
    loss = SweepParams.model_validate({"space": SPACE, "metric": "val_loss"})
    assert sweep_result(loss, [_trial(0, 1e-3, [])]).direction == "minimize"


def test_the_median_pruner_judges_a_running_trial_against_completed_ones():
    p = SweepParams.model_validate({"space": SPACE, "trials": 4, "epochs": 4})
    done = [_trial(0, 1e-3, [0.3, 0.5, 0.6, 0.62]), _trial(1, 2e-3, [0.32, 0.52, 0.58, 0.6])]
    for values, verdict in (([0.1, 0.1], True), ([0.4, 0.55], False), ([0.1], False)):  # epoch 1 is never judged
        study = study_of(p, "s", [*done, _trial(2, 3e-2, values, status="running")])
        assert bool(study.pruner.prune(study, study.trials[2])) is verdict, values


def test_hyperband_judges_a_rung_from_the_attributes_its_siblings_stored():
    """Hyperband's rungs live in each trial's stored Optuna attributes (jobs.trial): a trial whose first epoch
    is the worst of the values recorded at that rung is stopped, a good one is promoted (and records its rung)."""
    p = SweepParams.model_validate({"space": SPACE, "trials": 6, "epochs": 9, "pruner": "hyperband"})
    done = [_trial(n, 1e-3, [v, v + 0.1, v + 0.2], attrs={"completed_rung_0": v})
            for n, v in enumerate((0.30, 0.35, 0.40, 0.45, 0.50))]
    for value, verdict in ((0.05, True), (0.60, False)):
        study = study_of(p, "s", [*done, _trial(5, 3e-2, [value], status="running")])
        bracket_mates = [t for t in study.trials if "completed_rung_0" in t.system_attrs]
        assert len(bracket_mates) == 5
        assert bool(study.pruner.prune(study, study.trials[5])) is verdict, value
        assert study.trials[5].system_attrs["completed_rung_0"] == value
