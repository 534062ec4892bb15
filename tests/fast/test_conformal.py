"""Temperature scaling, calibration metrics and conformal sets on synthetic outputs, with MAPIE as the oracle."""

from __future__ import annotations

import numpy as np
import pytest
from mapie.classification import SplitConformalClassifier
from sklearn.base import BaseEstimator, ClassifierMixin

from convlens.ml import conformal
from convlens.ml.calibration import apply_temperature, calibration_metrics, fit_temperature, reliability

K = 10


class GivenProbabilities(ClassifierMixin, BaseEstimator):
    """A fitted classifier for MAPIE whose inputs are already its predicted probabilities."""

    def fit(self, x, y):
        self.classes_ = np.arange(np.asarray(x).shape[1])
        return self

    def predict_proba(self, x):
        return np.asarray(x)

    def predict(self, x):
        return np.asarray(x).argmax(1)


def _outputs(n: int, seed: int, temperature: float = 1.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(probabilities shown, true probabilities, labels drawn from the true ones): the model's are true ones
    sharpened by `temperature` (an over-confident model when > 1)."""
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(n, K)) * 2.5
    true = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    y = (true.cumsum(1) > rng.random((n, 1))).argmax(1)
    shown = np.exp(logits * temperature) / np.exp(logits * temperature).sum(1, keepdims=True)
    return shown, true, y


def _mapie(cal, y_cal, score: str, alpha: float) -> SplitConformalClassifier:
    m = SplitConformalClassifier(estimator=GivenProbabilities().fit(cal, y_cal), confidence_level=1 - alpha,
                                 conformity_score=score, prefit=True, random_state=0)
    return m.conformalize(cal, y_cal)


def test_temperature_scaling_undoes_over_confidence():
    shown, true, y = _outputs(20000, 0, temperature=2.0)
    t = fit_temperature(shown[:10000], y[:10000])
    assert t == pytest.approx(2.0, rel=0.05)
    assert np.allclose(apply_temperature(shown, t), true, atol=0.03)
    before, after = calibration_metrics(shown[10000:], y[10000:]), calibration_metrics(apply_temperature(
        shown[10000:], t), y[10000:])
    assert after["ece"] < 0.02 < before["ece"] and after["nll"] < before["nll"] and after["brier"] < before["brier"]
    assert (apply_temperature(shown, t).argmax(1) == shown.argmax(1)).all()  # accuracy is untouched


def test_calibration_metrics_match_their_definitions():
    probs, _, y = _outputs(3000, 1)
    r = reliability(probs, y)
    assert sum(r["count"]) == 3000
    conf, correct = probs.max(1), probs.argmax(1) == y
    ece = sum(abs(correct[m].mean() - conf[m].mean()) * m.sum() for b in range(15)
              if (m := (conf > b / 15) & (conf <= (b + 1) / 15)).any()) / 3000
    m = calibration_metrics(probs, y)
    assert m["ece"] == pytest.approx(ece, abs=1e-9)
    assert m["nll"] == pytest.approx(-np.mean(np.log(probs[np.arange(3000), y])))
    assert m["brier"] == pytest.approx(np.mean(((probs - np.eye(K)[y]) ** 2).sum(1)))


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_lac_sets_equal_mapies(alpha):
    probs, _, y = _outputs(4000, 2)
    cal, test = slice(0, 2000), slice(2000, None)
    _, mapie_sets = _mapie(probs[cal], y[cal], "lac", alpha).predict_set(probs[test])
    ours = conformal.sets(probs[test], conformal.Calibration.fit(probs[cal], y[cal]).thresholds(K, alpha, "lac"),
                          "lac")
    assert (ours == mapie_sets[:, :, 0]).all()


def test_class_conditional_lac_equals_mapie_per_class():
    probs, _, y = _outputs(6000, 3)
    cal, test = slice(0, 4000), slice(4000, None)
    ours = conformal.sets(probs[test], conformal.Calibration.fit(probs[cal], y[cal]).thresholds(K, 0.1, "lac", True),
                          "lac")
    for c in range(K):  # Mondrian: class c's membership is decided by class c's calibration images alone
        mine = y[cal] == c
        _, per_class = _mapie(probs[cal][mine], y[cal][mine], "lac", 0.1).predict_set(probs[test])
        assert (ours[:, c] == per_class[:, c, 0]).all()


@pytest.mark.parametrize("alpha", [0.05, 0.1, 0.2])
def test_randomised_aps_agrees_with_mapie(alpha):
    probs, _, y = _outputs(40000, 4)
    cal, test = slice(0, 20000), slice(20000, None)
    _, theirs = _mapie(probs[cal], y[cal], "aps", alpha).predict_set(
        probs[test], conformity_score_params={"include_last_label": "randomized"})
    ours = conformal.sets(probs[test], conformal.Calibration.fit(probs[cal], y[cal]).thresholds(K, alpha, "aps"),
                          "aps", conformal.uniforms(20000, 9))
    rows = np.arange(20000)
    assert ours[rows, y[test]].mean() == pytest.approx(theirs[rows, y[test], 0].mean(), abs=0.01)
    assert ours[rows, y[test]].mean() == pytest.approx(1 - alpha, abs=0.01)
    assert ours.sum(1).mean() == pytest.approx(theirs[:, :, 0].sum(1).mean(), rel=0.03)


def test_uniforms_of_paths_are_fixed_and_uniform():
    keys = [f"/data/img_{i}.png" for i in range(5000)]
    u = conformal.uniforms_of(keys)
    assert (u == conformal.uniforms_of(keys)).all() and 0 <= u.min() and u.max() < 1
    assert abs(u.mean() - 0.5) < 0.02 and np.histogram(u, 10)[0].min() > 400
