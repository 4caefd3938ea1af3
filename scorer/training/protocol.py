"""Feature rows for a training set, and the leave-one-group-out evaluation protocol.

The protocol is Mohler's: each fold holds out one group (an assignment), so every test
question is unseen in training. Inside each outer fold the model is chosen and the confidence
calibrated by an inner grouped cross-validation on the training groups only.

In the "graded" setting (active learning) each question has ``k`` answers a human has graded;
the model sees them as kNN context, and only the other answers are scored.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from scorer.training.calibration import (
    Calibrator,
    expected_calibration_error,
    fit_calibrator,
    hits,
    review_threshold,
)
from scorer.training.data import TrainingSet, answers_by_question
from scorer.training.features import FeatureConfig, Featurizer
from scorer.training.model import Candidate, predict, rmse, select

Progress = Callable[[int], None]


@dataclass
class Rows:
    """Feature rows of a whole training set.

    Attributes:
        X: Features, ``(n, F)``.
        y: Grades divided by the top grade.
        groups: Cross-validation group per row.
        qids: Question per row.
        scored: Rows that are evaluated (False for the graded answers given as context).
        names: Feature names.
        scale_max: The top grade.
    """

    X: np.ndarray
    y: np.ndarray
    groups: np.ndarray
    qids: np.ndarray
    scored: np.ndarray
    names: tuple[str, ...]
    scale_max: float


def _question_seed(seed: int, qid: str) -> int:
    return zlib.crc32(f"{seed}:{qid}".encode())


def build_rows(
    data: TrainingSet,
    featurizer: Featurizer,
    config: FeatureConfig,
    graded_per_question: int = 10,
    seed: int = 0,
    progress: Progress | None = None,
) -> Rows:
    """Computes every answer's feature row.

    Peers of an answer are all other answers to its question. In the graded setting,
    ``graded_per_question`` answers per question are drawn (seeded) as the graded context;
    each answer's kNN features use that context minus itself.

    Args:
        data: The training set.
        featurizer: Shares the encoder (and its cache) across calls.
        config: Which feature families.
        graded_per_question: Size of the graded context.
        seed: Seeds the draw of graded answers.
        progress: Called with the number of answers done after each question.

    Returns:
        The rows, in the order of ``data.answers``.
    """
    n = len(data.answers)
    names = config.names
    X = np.zeros((n, len(names)))
    scored = np.ones(n, dtype=bool)
    y = np.array([a.grade for a in data.answers]) / data.scale_max
    for qid, idx in answers_by_question(data.answers).items():
        texts = [data.answers[i].text for i in idx]
        enc = featurizer.encode_question(data.questions[qid])
        plain, demoted = featurizer.answer_embeddings(enc, texts)
        base = featurizer.base(enc, texts, plain, demoted)
        parts = [base]
        if config.peers:
            parts.append(featurizer.peers(base, plain, plain, base, list(range(len(idx)))))
        if config.graded:
            rng = np.random.default_rng(_question_seed(seed, qid))
            k = min(graded_per_question, len(idx) - 1)
            context = rng.choice(len(idx), size=k, replace=False)
            scored[np.asarray(idx)[context]] = False
            contexts = [[int(c) for c in context if c != i] for i in range(len(idx))]
            parts.append(featurizer.graded(plain, base, plain, base, y[idx], contexts))
        X[idx] = np.hstack(parts)
        if progress:
            progress(len(idx))
    return Rows(
        X=X,
        y=y,
        groups=np.array([data.questions[a.qid].group for a in data.answers]),
        qids=np.array([a.qid for a in data.answers]),
        scored=scored,
        names=names,
        scale_max=data.scale_max,
    )


@dataclass
class Evaluation:
    """Pooled out-of-fold results of the outer cross-validation (scored rows only).

    Attributes:
        predicted: Predicted grades (grade units).
        human: Human grades.
        confidence: Calibrated confidences.
        threshold: Per row, the review threshold of its fold (chosen on that fold's training data).
        chosen: Per fold, the candidate the inner CV picked.
        tolerance: Grade tolerance of the confidence.
        inner_scores: Per fold, the inner-CV RMSE of every candidate.
        alternatives: Confidence and threshold per row for other tolerances (same predictions).
    """

    predicted: np.ndarray
    human: np.ndarray
    confidence: np.ndarray
    threshold: np.ndarray
    chosen: dict[str, str]
    tolerance: float
    inner_scores: dict[str, dict[str, float]] = field(default_factory=dict)
    alternatives: dict[float, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)

    def metrics(self, tolerance: float | None = None) -> dict[str, float]:
        """Pearson r, RMSE, ECE, confident-half RMSE and review figures.

        Args:
            tolerance: One of the ``alternatives`` to report the confidence figures for;
                default the main tolerance.
        """
        if tolerance is None or tolerance == self.tolerance:
            tolerance, confidence, threshold = self.tolerance, self.confidence, self.threshold
        else:
            confidence, threshold = self.alternatives[tolerance]
        hit = hits(self.predicted, self.human, tolerance)
        order = np.argsort(-confidence, kind="stable")
        half = order[: len(order) // 2]
        accepted = confidence >= threshold
        return {
            "pearson_r": float(np.corrcoef(self.predicted, self.human)[0, 1]),
            "rmse": rmse(self.predicted, self.human),
            "ece": expected_calibration_error(confidence, hit),
            "within_tolerance": float(hit.mean()),
            "mean_confidence": float(confidence.mean()),
            "confident_half_rmse": rmse(self.predicted[half], self.human[half]),
            "flagged_share": float(1.0 - accepted.mean()),
            "accepted_within_tolerance": float(hit[accepted].mean()) if accepted.any() else float("nan"),
            "accepted_rmse": rmse(self.predicted[accepted], self.human[accepted]) if accepted.any() else float("nan"),
            "answers": float(len(self.human)),
        }


def calibrate(oof: np.ndarray, y: np.ndarray, scale_max: float, tolerance: float, review_target: float) -> tuple[Calibrator, float]:
    """Fits the confidence map and the review threshold on out-of-fold predictions.

    Returns:
        ``(calibrator, threshold)``.
    """
    calibrator = fit_calibrator(oof, y, tolerance / scale_max)
    threshold = review_threshold(calibrator(oof), hits(oof, y, tolerance / scale_max), review_target)
    return calibrator, threshold


def cross_validate(
    rows: Rows,
    pool: Sequence[Candidate],
    tolerance: float,
    review_target: float,
    inner_folds: int = 4,
    progress: Progress | None = None,
    other_tolerances: Sequence[float] = (),
) -> Evaluation:
    """Leave-one-group-out evaluation with model choice and calibration inside each fold.

    Args:
        rows: From :func:`build_rows`.
        pool: Regressor candidates.
        tolerance: Grade tolerance the confidence refers to (grade units).
        review_target: Agreement rate required of auto-accepted answers.
        inner_folds: Grouped folds of the inner selection.
        progress: Called with 1 after each outer fold.
        other_tolerances: More tolerances to calibrate the same predictions for.

    Returns:
        Pooled predictions for every scored row of every held-out group.
    """
    predicted, human, confidence, threshold = [], [], [], []
    alt: dict[float, tuple[list[np.ndarray], list[np.ndarray]]] = {t: ([], []) for t in other_tolerances}
    chosen: dict[str, str] = {}
    inner: dict[str, dict[str, float]] = {}
    for group in sorted(set(rows.groups.tolist()), key=lambda g: (len(g), g)):
        test = rows.groups == group
        train = ~test
        sel = select(rows.X[train], rows.y[train], rows.groups[train], rows.scored[train], pool, inner_folds)
        model = sel.best.build().fit(rows.X[train], rows.y[train])
        keep = rows.scored[train]
        calibrator, cut = calibrate(sel.oof[keep], rows.y[train][keep], rows.scale_max, tolerance, review_target)
        evaluate = test & rows.scored
        pred = predict(model, rows.X[evaluate])
        predicted.append(pred * rows.scale_max)
        human.append(rows.y[evaluate] * rows.scale_max)
        confidence.append(calibrator(pred))
        threshold.append(np.full(evaluate.sum(), cut))
        for other, (conf_list, cut_list) in alt.items():
            other_cal, other_cut = calibrate(sel.oof[keep], rows.y[train][keep], rows.scale_max, other, review_target)
            conf_list.append(other_cal(pred))
            cut_list.append(np.full(evaluate.sum(), other_cut))
        chosen[group] = sel.best.name
        inner[group] = sel.scores
        if progress:
            progress(1)
    return Evaluation(
        predicted=np.concatenate(predicted),
        human=np.concatenate(human),
        confidence=np.concatenate(confidence),
        threshold=np.concatenate(threshold),
        chosen=chosen,
        tolerance=tolerance,
        inner_scores=inner,
        alternatives={t: (np.concatenate(c), np.concatenate(k)) for t, (c, k) in alt.items()},
    )
