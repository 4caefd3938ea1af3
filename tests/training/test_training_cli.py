"""The training CLI's artefact, and scoring with it: evidence, signals, versions, missing signals."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from scorer.training.data import TrainingSet
from scorer.training.features import FeatureConfig
from scorer.training.inference import MissingSignal, TextScorer
from scorer.training.model import load_metadata, run_onnx


def test_artefact_layout_and_metadata(artefact: Path, excel_data: TrainingSet) -> None:
    assert {p.name for p in artefact.iterdir()} == {"model.onnx", "metadata.json", "report.md", "reliability.png"}
    meta = load_metadata(artefact)
    assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{8}", meta["version"])
    assert meta["feature_names"] == list(FeatureConfig().names)
    assert meta["data"]["sha256"] == excel_data.content_hash() and meta["data"]["answers"] == 60
    assert meta["onnx_max_abs_diff_vs_sklearn"] <= 1e-4
    assert 0.0 <= meta["review_threshold"] <= 1.0 and meta["tolerance"] == 1.0
    assert set(meta["cv_metrics"]) >= {"pearson_r", "rmse", "ece", "confident_half_rmse", "flagged_share"}
    xs = meta["calibrator"]["x"]
    assert xs == sorted(xs)
    assert "| base |" in (artefact / "report.md").read_text()


def test_tampered_graph_is_refused(artefact: Path, tmp_path: Path) -> None:
    copy = tmp_path / "v"
    copy.mkdir()
    (copy / "metadata.json").write_text((artefact / "metadata.json").read_text())
    (copy / "model.onnx").write_bytes((artefact / "model.onnx").read_bytes() + b"\0")
    with pytest.raises(ValueError, match="sha256"):
        load_metadata(copy)


def test_confidence_follows_the_calibrator(artefact: Path) -> None:
    meta = json.loads((artefact / "metadata.json").read_text())
    X = np.random.default_rng(0).uniform(size=(50, len(meta["feature_names"])))
    score, confidence = run_onnx(artefact / "model.onnx", X)
    cal = meta["calibrator"]
    assert np.allclose(confidence, np.interp(score, cal["x"], cal["y"]), atol=1e-5)


def test_score_explains_itself(artefact: Path, encoder, excel_data: TrainingSet) -> None:
    scorer = TextScorer(artefact, encoder=encoder)
    question = excel_data.questions["absref"]
    good = scorer.score(question, "Dollar signs like $A$1 keep the cell fixed when the formula is copied, e.g. a tax rate.")
    weak = scorer.score(question, "It is a reference to a cell.")
    assert good.grade > weak.grade
    assert 0.0 <= good.confidence <= 1.0 and good.model_answer == question.references[0]
    assert good.versions["answer_scorer_text"] == scorer.version and "encoder" in good.versions
    assert {"core_rs.text_features", f"model:{scorer.version}", "llm_judge:not_configured"} <= set(good.signals)
    met = [c for c in good.criteria if c.met]
    assert met and all(c.evidence for c in met)
    assert any("copied" in c.evidence.lower() for c in met)
    assert good.feedback.startswith("Shows:") and "Missing:" in weak.feedback


def test_guarded_answer_scores_zero_with_its_reason(artefact: Path, encoder, excel_data: TrainingSet) -> None:
    scorer = TextScorer(artefact, encoder=encoder)
    result = scorer.score(excel_data.questions["pivot"], "idk")
    assert result.grade == 0.0 and result.signals == ["guard:no_answer"] and "does not attempt" in result.feedback


def test_missing_signals_fail_instead_of_being_replaced(artefact: Path, encoder, excel_data: TrainingSet) -> None:
    scorer = TextScorer(artefact, encoder=encoder)
    scorer.config = FeatureConfig(peers=True)
    with pytest.raises(MissingSignal, match="peer"):
        scorer.score(excel_data.questions["pivot"], "It summarises data by category.")
    scorer.config = FeatureConfig(graded=True)
    with pytest.raises(MissingSignal, match="graded"):
        scorer.score(excel_data.questions["pivot"], "It summarises data by category.")
