"""Learned free-text scorer vs. the hand-set ``answer_scorer`` heuristic, on unseen questions.

Run from the repository root::

    .venv/bin/python -m scorer.training.datasets.compare_heuristic [--data BANK.jsonl [EXTRA.jsonl ...]]

By default the model trains as the shipped one does, on the bank's graded answers plus the toy
questions, and both scorers are measured on the bank's answers only (the first file). The model side is the training CLI's own evaluation (:func:`scorer.training.protocol.cross_validate`,
leave-one-question-out, model choice and calibration inside each fold), so its numbers equal the
``cv_metrics`` the CLI writes into ``metadata.json``. The heuristic side recomputes offline what the
scorer service sends ``answer_scorer`` for a free-text answer: core_rs's ten text features and the
answer's best MiniLM cosine to the reference answers, through the logistic in
``deploy/triton/model_repository/answer_scorer/1/weights.json``. It has no parameters fitted to
this data, so every question is "unseen" for it.

Both are also scored the way the product scores them, behind the guards (an answer a guard stops
scores 0 whichever model would have run).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

import core_rs
from scorer.training.calibration import expected_calibration_error, hits
from scorer.guards import check_answer
from scorer.training.data import TrainingSet, answers_by_question, load_jsonl, load_jsonl_files
from scorer.training.embed import Encoder
from scorer.training.features import FeatureConfig, Featurizer
from scorer.training.model import candidates
from scorer.training.protocol import build_rows, cross_validate
from scorer.training.train import DEFAULT_REVIEW_TARGET, DEFAULT_TOLERANCE

DATA = (Path(__file__).with_name("excel_bank_graded.jsonl"), Path(__file__).with_name("excel_toy_graded.jsonl"))
WEIGHTS = Path(__file__).resolve().parents[3] / "deploy/triton/model_repository/answer_scorer/1/weights.json"


def heuristic_scores(data: TrainingSet, encoder: Encoder, weights_path: Path = WEIGHTS) -> np.ndarray:
    """``answer_scorer``'s normalised score for every answer, as the service would get it.

    Mirrors ``answer_scorer/1/model.py``: ``sigmoid(w · features + b + weight · kind_text ·
    max(0, similarity − floor) / (1 − floor))``, where ``features`` is core_rs's ten-feature row
    and ``similarity`` the best cosine to a reference clipped to ``[0, 1]``.
    """
    spec = json.loads(weights_path.read_text(encoding="utf-8"))
    w, b = np.asarray(spec["weights"], dtype=np.float64), float(spec["bias"])
    sim = spec["similarity"]
    gate = spec["feature_names"].index(sim["gate"])
    out = np.zeros(len(data.answers))
    for qid, idx in answers_by_question(data.answers).items():
        question = data.questions[qid]
        texts = [data.answers[i].text for i in idx]
        criteria = [(n, list(t), wt) for n, t, wt in question.criteria]
        rows = np.array([f.features for f in core_rs.text_features_batch(texts, list(question.references), criteria)])
        cos = np.clip((encoder.encode(texts) @ encoder.encode(list(question.references)).T).max(axis=1), 0.0, 1.0)
        logits = rows @ w + b + sim["weight"] * rows[:, gate] * np.maximum(cos - sim["floor"], 0.0) / (1.0 - sim["floor"])
        out[idx] = 1.0 / (1.0 + np.exp(-logits))
    return out


def guarded(data: TrainingSet, encoder: Encoder) -> np.ndarray:
    """Whether a product guard (empty, off-topic, copied question, ...) zeroes each answer."""
    stopped = np.zeros(len(data.answers), dtype=bool)
    for qid, idx in answers_by_question(data.answers).items():
        question = data.questions[qid]
        anchors = encoder.encode([*question.references, question.prompt])
        for i in idx:
            text = data.answers[i].text
            similarity = float(np.clip((anchors @ encoder.encode([text])[0]).max(), 0.0, 1.0))
            stopped[i] = check_answer(text, question.prompt, list(question.references), similarity) is not None
    return stopped


def metrics(predicted: np.ndarray, human: np.ndarray, qids: np.ndarray) -> dict[str, float]:
    """Pearson r, RMSE, the share within one grade point (grade units) and the mean r within a question.

    The within-question r says whether a scorer ranks the answers to one question the way the
    grader did, which the pooled r can overstate when questions differ in difficulty.
    """
    per_question = [np.corrcoef(predicted[qids == q], human[qids == q])[0, 1] for q in np.unique(qids)]
    return {
        "pearson_r": float(np.corrcoef(predicted, human)[0, 1]),
        "rmse": float(np.sqrt(np.mean((predicted - human) ** 2))),
        "within_1": float(np.mean(np.abs(predicted - human) <= 1.0 + 1e-9)),
        "mean_question_r": float(np.nanmean(per_question)),
    }


def paired_bootstrap(
    model: np.ndarray, heuristic: np.ndarray, human: np.ndarray, qids: np.ndarray, draws: int = 2000, seed: int = 0
) -> dict[str, tuple[float, float, float]]:
    """95% intervals of model − heuristic in RMSE and Pearson r, resampling whole questions.

    Questions, not answers, are resampled because answers to one question share its difficulty
    and rubric; resampling answers would make the intervals too narrow.

    Returns:
        ``{"rmse": (low, high, share of draws where the model is better), "pearson_r": (...)}``.
    """
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(qids == q) for q in np.unique(qids)]
    d_rmse, d_r = [], []
    for _ in range(draws):
        idx = np.concatenate([groups[i] for i in rng.integers(len(groups), size=len(groups))])
        m, h, y = model[idx], heuristic[idx], human[idx]
        d_rmse.append(np.sqrt(np.mean((m - y) ** 2)) - np.sqrt(np.mean((h - y) ** 2)))
        d_r.append(np.corrcoef(m, y)[0, 1] - np.corrcoef(h, y)[0, 1])
    rmse, r = np.array(d_rmse), np.array(d_r)
    return {
        "rmse": (float(np.percentile(rmse, 2.5)), float(np.percentile(rmse, 97.5)), float(np.mean(rmse < 0))),
        "pearson_r": (float(np.percentile(r, 2.5)), float(np.percentile(r, 97.5)), float(np.mean(r > 0))),
    }


def main(argv: list[str] | None = None) -> int:
    """Prints the comparison table (Markdown) for the data set."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data", type=Path, nargs="+", default=list(DATA),
        help="graded answers (JSONL): the first file is measured, all of them train, as the CLI's --data",
    )
    args = parser.parse_args(argv)

    data = load_jsonl(args.data[0])
    evaluated = set(data.questions)
    full = load_jsonl_files(args.data)
    encoder = Encoder(threads=1)
    rows = build_rows(full, Featurizer(encoder), FeatureConfig())
    evaluation = cross_validate(rows, candidates(), DEFAULT_TOLERANCE, DEFAULT_REVIEW_TARGET)
    # cross_validate pools the held-out groups in this order; map its rows back to answers.
    order = np.concatenate(
        [np.flatnonzero(rows.groups == g) for g in sorted(set(rows.groups.tolist()), key=lambda g: (len(g), g))]
    )
    model, confidence = np.zeros(len(full.answers)), np.zeros(len(full.answers))
    model[order], confidence[order] = evaluation.predicted, evaluation.confidence
    keep = np.array([a.qid in evaluated for a in full.answers])
    scale = data.scale_max
    human = np.array([a.grade for a in data.answers])
    model, confidence = model[keep], confidence[keep]
    heuristic = heuristic_scores(data, encoder) * scale
    stopped = guarded(data, encoder)
    qids = np.array([a.qid for a in data.answers])

    table = [
        ("heuristic:answer_scorer (hand-set weights)", heuristic),
        (f"model:answer_scorer_text (base, trained on {full.name})", model),
    ]
    if stopped.any():  # the product zeroes these before either scorer runs
        table += [
            ("heuristic behind the guards", np.where(stopped, 0.0, heuristic)),
            ("model behind the guards", np.where(stopped, 0.0, model)),
        ]
    print(f"{len(data.answers)} answers to {len(data.questions)} questions; {int(stopped.sum())} stopped by a guard\n")
    print("| scorer | Pearson r | RMSE (0-5) | within 1 grade | mean per-question r |")
    print("|---|---|---|---|---|")
    for label, predicted in table:
        m = metrics(predicted, human, qids)
        print(f"| {label} | {m['pearson_r']:.3f} | {m['rmse']:.3f} | {m['within_1']:.1%} | {m['mean_question_r']:.3f} |")
    boot = paired_bootstrap(model, heuristic, human, qids)
    print("\nmodel minus heuristic, 95% interval over resampled questions (2000 draws):")
    for name, (low, high, better) in boot.items():
        print(f"- {name}: [{low:+.3f}, {high:+.3f}], model better in {better:.1%} of draws")
    within = hits(model, human, DEFAULT_TOLERANCE)
    print(f"\nmodel confidence, P(within {DEFAULT_TOLERANCE:g} grade), on these answers: "
          f"ECE {expected_calibration_error(confidence, within):.3f}, mean {confidence.mean():.3f} vs {within.mean():.3f} observed; "
          f"folds chose {sorted(set(evaluation.chosen.values()))}")
    print(f"heuristic mean {heuristic.mean():.2f}, model mean {model.mean():.2f}, human mean {human.mean():.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
