"""Parallel coordinates read a log-searched parameter on a log axis (a learning rate from 1e-4 to 1e-2 puts
1e-3 in the middle, not at 9% of the height)."""

import pytest

from convlens.ml import plots


def test_log_axis_places_decades_evenly_and_marks_them():
    position, ticks = plots.number_axis([1e-4, 1e-3, 1e-2], log=True)
    assert position == pytest.approx({1e-4: 0.0, 1e-3: 0.5, 1e-2: 1.0})
    assert (0.5, "1e-3") in [(pytest.approx(p), label) for p, label in ticks]
    linear, _ = plots.number_axis([1e-4, 1e-3, 1e-2], log=False)
    assert linear[1e-3] == pytest.approx((1e-3 - 1e-4) / (1e-2 - 1e-4))


def test_log_scale_is_chosen_for_positive_values_spanning_two_decades():
    assert plots.log_scaled([1e-4, 3e-3, 2e-2])
    assert not plots.log_scaled([0.1, 0.5, 0.9])
    assert not plots.log_scaled([0.0, 1.0, 100.0])
    assert not plots.log_scaled(["adam", "sgd"])


def test_parallel_chart_draws_with_log_and_text_axes():
    runs = {"a": {"lr": 1e-4, "opt": "adam", "acc": 0.5}, "b": {"lr": 1e-2, "opt": "sgd", "acc": 0.6},
            "c": {"lr": 1e-3, "opt": "adam", "acc": None}}
    svg = plots.parallel_svg(runs, ["lr", "opt", "acc"], "acc", log_axes={"lr"})
    assert svg.lstrip().startswith("<?xml") and "<svg" in svg
