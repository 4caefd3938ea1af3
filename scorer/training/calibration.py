"""Calibrated confidence: the probability that a predicted grade is within a tolerance of a human's.

The confidence of a score is ``P(|predicted − human| ≤ tolerance)``, learned by isotonic
regression from *out-of-fold* predictions (the model never saw those answers' grades), so it
means what it says on answers the model has not seen. Isotonic regression maps a 1-D input to
a monotone step function; the input is the predicted grade itself, because where a prediction
sits on the scale is what decides how far off it tends to be (answers predicted near the top
are usually right; mid-scale predictions are where graders and models disagree).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression

#: Bins of the reliability diagram and of the expected calibration error.
ECE_BINS = 10


@dataclass(frozen=True)
class Calibrator:
    """A monotone piecewise-linear map from the predicted (normalised) grade to a confidence.

    Attributes:
        x: Breakpoints on the normalised grade axis, increasing.
        y: Confidence at each breakpoint; constant beyond the ends.
        tolerance: The tolerance in grade units the confidence refers to.
        direction: ``"increasing"`` or ``"decreasing"``: which way the fit found.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    tolerance: float
    direction: str

    def __call__(self, predicted: np.ndarray) -> np.ndarray:
        """Confidence for normalised predictions (same piecewise-linear rule as the ONNX graph)."""
        return np.interp(np.asarray(predicted, dtype=np.float64), self.x, self.y)

    def to_json(self) -> dict[str, object]:
        """The calibrator as JSON for the artefact's metadata."""
        return {"x": list(self.x), "y": list(self.y), "tolerance": self.tolerance, "direction": self.direction}


def fit_calibrator(predicted: np.ndarray, human: np.ndarray, tolerance: float) -> Calibrator:
    """Fits the confidence map on out-of-fold predictions.

    Both directions of monotonicity are tried and the one with the lower Brier score kept,
    since which end of the scale is easier depends on the data.

    Args:
        predicted: Normalised out-of-fold predictions in ``[0, 1]``.
        human: Normalised human grades.
        tolerance: Normalised tolerance (grade tolerance divided by the top grade).

    Returns:
        The calibrator (its ``tolerance`` is the normalised one).
    """
    hit = (np.abs(predicted - human) <= tolerance + 1e-9).astype(np.float64)
    best: tuple[float, IsotonicRegression, str] | None = None
    for increasing in (True, False):
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, increasing=increasing, out_of_bounds="clip")
        fitted = iso.fit_transform(predicted, hit)
        brier = float(np.mean((fitted - hit) ** 2))
        if best is None or brier < best[0]:
            best = (brier, iso, "increasing" if increasing else "decreasing")
    assert best is not None
    _, iso, direction = best
    xs = np.asarray(iso.X_thresholds_, dtype=np.float64)
    ys = np.asarray(iso.y_thresholds_, dtype=np.float64)
    if len(xs) == 1:  # a constant fit: give it two points so interpolation is defined
        xs, ys = np.array([0.0, 1.0]), np.array([ys[0], ys[0]])
    return Calibrator(x=tuple(xs.tolist()), y=tuple(ys.tolist()), tolerance=tolerance, direction=direction)


def hits(predicted: np.ndarray, human: np.ndarray, tolerance: float) -> np.ndarray:
    """Whether each prediction is within ``tolerance`` of the human grade (same units)."""
    return np.abs(np.asarray(predicted) - np.asarray(human)) <= tolerance + 1e-9


def expected_calibration_error(confidence: np.ndarray, hit: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error over equal-width confidence bins.

    ``ECE = Σ_b (n_b / n) · |mean(hit in b) − mean(confidence in b)|``.

    Args:
        confidence: Predicted probabilities.
        hit: Observed outcomes (bool or 0/1).
        bins: Number of bins over ``[0, 1]``.

    Returns:
        The ECE (0 is perfect).
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    index = np.minimum((confidence * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        mask = index == b
        if mask.any():
            total += mask.sum() / len(confidence) * abs(hit[mask].mean() - confidence[mask].mean())
    return float(total)


def review_threshold(confidence: np.ndarray, hit: np.ndarray, target: float) -> float:
    """The lowest confidence at which auto-accepted answers still agree with humans often enough.

    Answers whose confidence is below the threshold are flagged for human review. The threshold
    is chosen on out-of-fold data as the smallest value ``t`` such that the answers with
    confidence ``≥ t`` are within tolerance of the human at least ``target`` of the time.

    Args:
        confidence: Out-of-fold confidences.
        hit: Out-of-fold outcomes.
        target: Required agreement rate of auto-accepted answers, e.g. 0.9.

    Returns:
        The threshold; 1.0 (flag everything) when no threshold reaches the target.
    """
    confidence = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(hit, dtype=np.float64)
    for t in np.unique(confidence):
        accepted = confidence >= t
        if hit[accepted].mean() >= target:
            return float(t)
    return 1.0


def reliability_diagram(
    curves: Sequence[tuple[str, np.ndarray, np.ndarray]], path: Path, title: str, bins: int = ECE_BINS
) -> None:
    """Draws a reliability diagram (observed agreement against confidence) to a PNG.

    Args:
        curves: ``(label, confidence, hit)`` per setting; the ECE is added to each label.
        path: Where to write the PNG.
        title: The figure title.
        bins: Equal-width bins over ``[0, 1]``.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt

    fig, (ax, hist) = plt.subplots(2, 1, figsize=(6, 7), sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", label="perfect calibration")
    edges = np.linspace(0, 1, bins + 1)
    for label, confidence, hit in curves:
        index = np.minimum((np.asarray(confidence) * bins).astype(int), bins - 1)
        xs, ys = [], []
        for b in range(bins):
            mask = index == b
            if mask.sum() >= 5:  # a bin of a handful of answers says nothing
                xs.append(float(np.mean(np.asarray(confidence)[mask])))
                ys.append(float(np.mean(np.asarray(hit, dtype=float)[mask])))
        ece = expected_calibration_error(confidence, hit, bins)
        ax.plot(xs, ys, marker="o", label=f"{label} (ECE {ece:.3f})")
        hist.hist(confidence, bins=edges, alpha=0.5, label=label)
    ax.set_ylabel("observed share within tolerance of the human grade")
    ax.set_title(title)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", fontsize=8)
    hist.set_xlabel("confidence")
    hist.set_ylabel("answers")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
