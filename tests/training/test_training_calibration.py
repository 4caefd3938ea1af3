"""Confidence calibration, ECE, the review threshold and the ONNX export."""

from __future__ import annotations

import numpy as np
import pytest

from scorer.training.calibration import (
    expected_calibration_error,
    fit_calibrator,
    reliability_diagram,
    review_threshold,
)
from scorer.training.model import candidates, check_export, predict, run_onnx, select, to_onnx


def test_ece_is_zero_for_calibrated_and_large_for_overconfident() -> None:
    rng = np.random.default_rng(0)
    confidence = rng.uniform(size=20000)
    hit = rng.uniform(size=20000) < confidence
    assert expected_calibration_error(confidence, hit) < 0.02
    assert expected_calibration_error(np.full(1000, 0.95), np.arange(1000) < 500) == pytest.approx(0.45)


def test_calibrator_learns_where_predictions_are_reliable() -> None:
    rng = np.random.default_rng(1)
    pred = rng.uniform(size=4000)
    # Errors shrink towards the top of the scale, as grades cluster there.
    human = np.clip(pred + rng.normal(scale=0.3 * (1.2 - pred)), 0, 1)
    cal = fit_calibrator(pred, human, tolerance=0.2)
    conf = cal(pred)
    assert cal.direction == "increasing"
    assert conf[pred > 0.9].mean() > conf[pred < 0.1].mean() + 0.3
    assert expected_calibration_error(conf, np.abs(pred - human) <= 0.2) < 0.03


def test_review_threshold_meets_its_target() -> None:
    confidence = np.array([0.2, 0.4, 0.6, 0.8, 0.9, 0.95])
    hit = np.array([0, 0, 1, 1, 1, 1], dtype=bool)
    assert review_threshold(confidence, hit, 0.9) == 0.6
    assert review_threshold(confidence, np.zeros(6, bool), 0.9) == 1.0


@pytest.mark.parametrize("index", range(len(candidates())))
def test_onnx_export_reproduces_scikit_learn(index: int) -> None:
    rng = np.random.default_rng(2)
    X = rng.uniform(size=(300, 6))
    y = np.clip(0.6 * X[:, 0] + 0.3 * X[:, 1] ** 2 + rng.normal(scale=0.05, size=300), 0, 1)
    model = candidates()[index].build().fit(X, y)
    cal = fit_calibrator(predict(model, X), y, tolerance=0.1)
    blob = to_onnx(model, 6, cal)
    assert check_export(blob, model, cal, X) <= 1e-4
    score, confidence = run_onnx(blob, X[:5])
    assert np.all((score >= 0) & (score <= 1)) and np.all((confidence >= 0) & (confidence <= 1))


def test_selection_uses_grouped_folds_only() -> None:
    rng = np.random.default_rng(3)
    X = rng.uniform(size=(120, 3))
    y = X[:, 0]
    groups = np.repeat(np.array(["a", "b", "c", "d"]), 30)
    sel = select(X, y, groups, np.ones(120, bool), candidates()[:2])
    assert set(sel.scores) == {c.name for c in candidates()[:2]}
    assert sel.oof.shape == y.shape


def test_reliability_diagram_writes_a_png(tmp_path) -> None:
    rng = np.random.default_rng(4)
    c = rng.uniform(size=500)
    reliability_diagram([("x", c, rng.uniform(size=500) < c)], tmp_path / "r.png", "test")
    assert (tmp_path / "r.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
