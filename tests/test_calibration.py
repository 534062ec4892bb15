"""The calibration and conformal guarantees, checked empirically on a real model's outputs on real CIFAR-10."""

from __future__ import annotations

import os

import numpy as np
import pytest

from convlens.ml import conformal
from convlens.ml.calibration import apply_temperature, calibration_metrics
from convlens.ml.predict import predict_probs

ALPHA = 0.1
SPLITS = 200


@pytest.fixture(scope="module")
def outputs(trained, cifar):
    model = trained["model"]
    return apply_temperature(predict_probs(model.model, cifar.x_test), model.temperature), cifar.y_test


@pytest.mark.parametrize("method", conformal.METHODS)
def test_coverage_over_random_calibration_test_splits(outputs, method):
    """Split the 10,000 test outputs at random into 5,000 to calibrate and 5,000 to test, 200 times: the mean
    coverage is 1 - alpha within a point, overall and (class-conditional) for every class."""
    probs, y = outputs
    rng = np.random.default_rng(0)
    marginal, per_class = [], []
    for _ in range(SPLITS):
        order = rng.permutation(len(y))
        cal, test = order[:5000], order[5000:]
        calibration = conformal.Calibration.fit(probs[cal], y[cal])
        u = rng.random(len(test))
        rows = np.arange(len(test))
        member = conformal.sets(probs[test], calibration.thresholds(10, ALPHA, method), method, u)
        marginal.append(member[rows, y[test]].mean())
        member = conformal.sets(probs[test], calibration.thresholds(10, ALPHA, method, True), method, u)
        covered = member[rows, y[test]]
        per_class.append([covered[y[test] == c].mean() for c in range(10)])
    assert np.mean(marginal) == pytest.approx(1 - ALPHA, abs=0.01)
    assert np.allclose(np.mean(per_class, axis=0), 1 - ALPHA, atol=0.015)
    assert 0.85 < np.quantile(marginal, 0.05) and np.quantile(marginal, 0.95) < 0.95


def test_the_training_run_reports_calibration_and_sets(trained):
    r = trained["result"]
    before, after = r["calibration"]["before"], r["calibration"]["after"]
    assert r["temperature"] > 0 and after["nll"] <= before["nll"] + 0.01  # fitted on other images than these
    assert set(before) == {"ece", "mce", "nll", "brier"} and os.path.getsize(r["paths"]["reliability_plot"]) > 0
    for method in conformal.METHODS:
        figures = r["conformal"][method]["marginal"]
        # 500 calibration images: coverage is 1 - alpha up to that sample's spread
        assert figures["coverage"] == pytest.approx(1 - ALPHA, abs=0.04)
        assert sum(figures["set_sizes"].values()) == 10_000 and len(figures["per_class_coverage"]) == 10
    assert set(r["uncertainty"]) == {"thresholds", "max_probability", "conformal_lac", "conformal_aps"}


def test_calibrated_outputs_are_better_calibrated(outputs, trained, cifar):
    raw = predict_probs(trained["model"].model, cifar.x_test)
    probs, y = outputs
    assert calibration_metrics(probs, y)["nll"] <= calibration_metrics(raw, y)["nll"] + 0.01
