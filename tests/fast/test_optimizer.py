"""The warm-up then linear-decay learning rate: its shape by steps, and the time budget's clock moving it on."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from convlens.ml.config import RECIPE_DEFAULTS
from convlens.ml.optimizer import WarmupLinear, build_optimizer, warmup_schedule


def rates(schedule: WarmupLinear, steps) -> np.ndarray:
    return np.array([float(keras.ops.convert_to_numpy(schedule(s))) for s in steps])


def test_warm_up_then_linear_decay_to_zero_by_steps():
    s = WarmupLinear(peak=3e-3, total_steps=100, warmup_fraction=0.2)
    np.testing.assert_allclose(rates(s, [0, 10, 20, 60, 100, 150]), [0, 1.5e-3, 3e-3, 1.5e-3, 0, 0], atol=1e-9)
    assert WarmupLinear(1.0, 10).get_config() == {"peak": 1.0, "total_steps": 10, "warmup_fraction": 0.0}
    np.testing.assert_allclose(rates(WarmupLinear(1.0, 10), [0, 5]), [1.0, 0.5], atol=1e-7)  # no warm-up


def test_the_clock_moves_the_rate_on_when_time_runs_out_before_the_steps():
    s = WarmupLinear(peak=1.0, total_steps=1000, warmup_fraction=0.0)
    s.time_progress.assign(0.75)
    np.testing.assert_allclose(rates(s, [10, 900]), [0.25, 0.1], atol=1e-6)  # the larger progress counts


@pytest.mark.parametrize("schedule", ["warmup_linear", "cosine", "plateau"])
def test_the_recipe_names_the_schedule(schedule):
    opt = build_optimizer({**RECIPE_DEFAULTS, "schedule": schedule, "warmup_fraction": 0.1}, steps_per_epoch=10)
    assert (warmup_schedule(opt) is not None) == (schedule == "warmup_linear")
