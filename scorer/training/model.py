"""Regressor candidates, their selection by grouped cross-validation, and the ONNX artefact.

The artefact is one ONNX graph with input ``FEATURES`` (FP32 ``[batch, F]``) and outputs
``SCORE`` (the normalised grade, clipped to ``[0, 1]``) and ``CONFIDENCE`` (the calibrated
probability of being within the tolerance of a human grade), so Triton's onnxruntime backend
can serve score and confidence in one call. ``metadata.json`` beside it names the features in
column order and records the version, the training data's hash, the encoder and the metrics.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import RegressorMixin
from sklearn.ensemble import GradientBoostingRegressor, VotingRegressor
from sklearn.linear_model import Ridge
from sklearn.model_selection import GroupKFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.svm import SVR

from scorer.training.calibration import Calibrator

ARTEFACT_FORMAT = "xlinterview.answer_scorer/1"
INPUT_NAME = "FEATURES"
SCORE_NAME = "SCORE"
CONFIDENCE_NAME = "CONFIDENCE"
#: Largest difference allowed between onnxruntime's and scikit-learn's outputs (float32 graph).
EXPORT_TOLERANCE = 1e-4


@dataclass(frozen=True)
class Candidate:
    """A regressor configuration to try.

    Attributes:
        name: Its name in reports, e.g. "gbr(d3,200)".
        build: Makes a fresh, unfitted regressor.
    """

    name: str
    build: Callable[[], RegressorMixin]


def _ridge(alpha: float) -> RegressorMixin:
    return make_pipeline(StandardScaler(), Ridge(alpha=alpha))


def _gbr() -> RegressorMixin:
    return GradientBoostingRegressor(
        n_estimators=200, max_depth=3, learning_rate=0.03, subsample=0.8, min_samples_leaf=10, random_state=0
    )


def candidates() -> list[Candidate]:
    """The regressors tried by cross-validation: ridge, RBF SVR, gradient boosting and their mean.

    Targets are normalised grades in ``[0, 1]`` (hence SVR's small epsilon). The mean of ridge
    and boosting is there because their errors differ (smooth vs. step-wise), which on unseen
    questions is worth about 0.01 in r. Kept few because every candidate costs a fit per inner
    fold per outer fold on a 2-core machine.
    """
    return [
        Candidate("ridge(a=1)", lambda: _ridge(1.0)),
        Candidate("ridge(a=10)", lambda: _ridge(10.0)),
        Candidate("svr(C=1)", lambda: make_pipeline(StandardScaler(), SVR(C=1.0, epsilon=0.02))),
        Candidate("gbr(d3,200)", _gbr),
        Candidate("mean(ridge,gbr)", lambda: VotingRegressor([("ridge", _ridge(1.0)), ("gbr", _gbr())])),
    ]


def predict(model: RegressorMixin, X: np.ndarray) -> np.ndarray:
    """Predictions clipped to the normalised grade range, as the ONNX graph clips them."""
    return np.clip(model.predict(X), 0.0, 1.0)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    """Root mean squared error."""
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


@dataclass
class Selection:
    """The outcome of model selection on training data only.

    Attributes:
        best: The chosen candidate.
        scores: Inner-CV RMSE (normalised units) per candidate name.
        oof: The chosen candidate's out-of-fold predictions for every training row.
    """

    best: Candidate
    scores: dict[str, float]
    oof: np.ndarray


def select(
    X: np.ndarray,
    y: np.ndarray,
    groups: np.ndarray,
    scored: np.ndarray,
    pool: Sequence[Candidate],
    folds: int = 4,
) -> Selection:
    """Picks the candidate with the lowest grouped-CV RMSE on training data.

    Folds hold out whole groups (assignments), as the outer protocol does, so the choice
    rewards generalising to unseen questions. Test folds are never looked at.

    Args:
        X: Training features.
        y: Normalised training grades.
        groups: Group of each row.
        scored: Rows whose predictions count (revealed graded answers train but are not scored).
        pool: Candidates.
        folds: Inner folds (at most the number of groups).

    Returns:
        The selection with the winner's out-of-fold predictions.
    """
    splitter = GroupKFold(n_splits=min(folds, len(np.unique(groups))))
    splits = list(splitter.split(X, y, groups))
    scores: dict[str, float] = {}
    oofs: dict[str, np.ndarray] = {}
    for candidate in pool:
        oof = np.zeros_like(y)
        for train, test in splits:
            model = candidate.build().fit(X[train], y[train])
            oof[test] = predict(model, X[test])
        oofs[candidate.name] = oof
        scores[candidate.name] = rmse(oof[scored], y[scored])
    best = min(pool, key=lambda c: scores[c.name])
    return Selection(best=best, scores=scores, oof=oofs[best.name])


def _piecewise_linear_nodes(helper: Any, numpy_helper: Any, source: str, target: str, calibrator: Calibrator) -> tuple[list[Any], list[Any]]:
    """ONNX nodes computing ``np.interp(source, x, y)`` (constant beyond the ends).

    ``y0 + Σ_j slope_j · clip(source − x_j, 0, x_{j+1} − x_j)`` with elementwise ops only, so
    any onnxruntime (and Triton's onnxruntime backend) runs it.
    """
    xs = np.asarray(calibrator.x, dtype=np.float64)
    ys = np.asarray(calibrator.y, dtype=np.float64)
    widths = np.diff(xs)
    keep = widths > 0
    starts = xs[:-1][keep].astype(np.float32)
    spans = widths[keep].astype(np.float32)
    slopes = (np.diff(ys)[keep] / widths[keep]).astype(np.float32)
    inits = [
        numpy_helper.from_array(starts.reshape(1, -1), "cal_starts"),
        numpy_helper.from_array(spans.reshape(1, -1), "cal_spans"),
        numpy_helper.from_array(slopes.reshape(-1, 1), "cal_slopes"),
        numpy_helper.from_array(np.array([[ys[0]]], dtype=np.float32), "cal_y0"),
        numpy_helper.from_array(np.zeros((1, 1), dtype=np.float32), "cal_zero"),
    ]
    nodes = [
        helper.make_node("Sub", [source, "cal_starts"], ["cal_delta"]),
        helper.make_node("Max", ["cal_delta", "cal_zero"], ["cal_low"]),
        helper.make_node("Min", ["cal_low", "cal_spans"], ["cal_clipped"]),
        helper.make_node("MatMul", ["cal_clipped", "cal_slopes"], ["cal_rise"]),
        helper.make_node("Add", ["cal_rise", "cal_y0"], [target]),
    ]
    return nodes, inits


def to_onnx(model: RegressorMixin, n_features: int, calibrator: Calibrator) -> bytes:
    """Exports a fitted regressor plus its calibrator as one ONNX graph.

    Args:
        model: The fitted scikit-learn regressor (or pipeline).
        n_features: Columns of ``FEATURES``.
        calibrator: The confidence map applied to the clipped score.

    Returns:
        The serialised ONNX model.
    """
    from onnx import TensorProto, helper, numpy_helper
    from skl2onnx import to_onnx as skl_to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    onx = skl_to_onnx(
        model,
        initial_types=[(INPUT_NAME, FloatTensorType([None, n_features]))],
        target_opset={"": 17, "ai.onnx.ml": 3},
    )
    graph = onx.graph
    raw = graph.output[0].name
    graph.initializer.extend(
        [
            numpy_helper.from_array(np.zeros((1, 1), np.float32), "score_low"),
            numpy_helper.from_array(np.ones((1, 1), np.float32), "score_high"),
        ]
    )
    graph.node.extend(
        [
            helper.make_node("Max", [raw, "score_low"], ["score_floor"]),
            helper.make_node("Min", ["score_floor", "score_high"], [SCORE_NAME]),
        ]
    )
    nodes, inits = _piecewise_linear_nodes(helper, numpy_helper, SCORE_NAME, CONFIDENCE_NAME, calibrator)
    graph.node.extend(nodes)
    graph.initializer.extend(inits)
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(SCORE_NAME, TensorProto.FLOAT, [None, 1]),
            helper.make_tensor_value_info(CONFIDENCE_NAME, TensorProto.FLOAT, [None, 1]),
        ]
    )
    return onx.SerializeToString()


def run_onnx(blob: bytes | Path, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Runs an exported graph on onnxruntime: ``(score, confidence)``, each ``(n,)``."""
    import onnxruntime as ort

    source = str(blob) if isinstance(blob, Path) else blob
    session = ort.InferenceSession(source, providers=["CPUExecutionProvider"])
    score, confidence = session.run([SCORE_NAME, CONFIDENCE_NAME], {INPUT_NAME: np.asarray(X, dtype=np.float32)})
    return score.reshape(-1), confidence.reshape(-1)


def check_export(blob: bytes, model: RegressorMixin, calibrator: Calibrator, X: np.ndarray) -> float:
    """Checks that the ONNX graph reproduces scikit-learn's score and confidence.

    The sklearn side is fed the same float32-rounded features the graph sees.

    Args:
        blob: The serialised graph.
        model: The fitted regressor.
        calibrator: Its calibrator.
        X: Feature rows to compare on.

    Returns:
        The largest absolute difference over both outputs.

    Raises:
        ValueError: The difference exceeds :data:`EXPORT_TOLERANCE`.
    """
    X32 = np.asarray(X, dtype=np.float32)
    expected = predict(model, X32.astype(np.float64))
    score, confidence = run_onnx(blob, X32)
    diff = max(float(np.max(np.abs(score - expected))), float(np.max(np.abs(confidence - calibrator(score)))))
    if diff > EXPORT_TOLERANCE:
        raise ValueError(f"the ONNX graph differs from scikit-learn by {diff:.2e} (> {EXPORT_TOLERANCE})")
    return diff


def new_version(data_hash: str, feature_names: Sequence[str], model_name: str) -> str:
    """A sortable, content-tagged version: UTC time plus a hash of data, features and model."""
    tag = hashlib.sha256(json.dumps([data_hash, list(feature_names), model_name]).encode()).hexdigest()[:8]
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime()) + "-" + tag


def write_artefact(out_dir: Path, name: str, version: str, blob: bytes, metadata: dict[str, Any]) -> Path:
    """Writes ``<out_dir>/<name>/<version>/{model.onnx,metadata.json}``.

    Args:
        out_dir: The models folder (``.data/models`` by default; never committed).
        name: The model's name, e.g. "answer_scorer_text".
        version: From :func:`new_version`.
        blob: The ONNX graph.
        metadata: JSON-serialisable facts; ``format``, ``name``, ``version`` and the graph's
            sha256 are added.

    Returns:
        The version directory.
    """
    target = out_dir / name / version
    target.mkdir(parents=True, exist_ok=False)
    (target / "model.onnx").write_bytes(blob)
    full = {
        "format": ARTEFACT_FORMAT,
        "name": name,
        "version": version,
        "onnx_sha256": hashlib.sha256(blob).hexdigest(),
        **metadata,
    }
    (target / "metadata.json").write_text(json.dumps(full, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    return target


def load_metadata(version_dir: Path) -> dict[str, Any]:
    """Reads an artefact's metadata and checks the graph's digest against it.

    Raises:
        ValueError: The format is unknown or ``model.onnx`` does not match its recorded sha256.
    """
    metadata = json.loads((version_dir / "metadata.json").read_text(encoding="utf-8"))
    if metadata.get("format") != ARTEFACT_FORMAT:
        raise ValueError(f"{version_dir}: unknown artefact format {metadata.get('format')!r}")
    digest = hashlib.sha256((version_dir / "model.onnx").read_bytes()).hexdigest()
    if digest != metadata["onnx_sha256"]:
        raise ValueError(f"{version_dir}: model.onnx sha256 {digest} is not the recorded {metadata['onnx_sha256']}")
    return metadata
