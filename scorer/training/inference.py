"""Scores one free-text answer end to end with a trained artefact: the reference scoring path.

This is what the product's scorer will do through Triton (there the embeddings come from the
``sentence_encoder`` model and the graph runs on the onnxruntime backend); here everything runs
in-process on onnxruntime so the benchmark, the canary suite and the serving integration share
one definition of a score:

1. guards (:mod:`scorer.guards`): non-answers score 0 with the reason, by rule;
2. prompt-injection scan: sentences addressed to the grader are cut before any model sees the
   answer, and the score is flagged for review;
3. features → the ONNX graph → score and calibrated confidence;
4. the optional LLM judge, combined conservatively (it can confirm or lower a score, and a
   disagreement sends the answer to review);
5. evidence: per-criterion hits with the words that show them, missed criteria, a model answer.

Every result lists the signals that produced it and the versions of the models used. A
signal the artefact needs but the caller cannot supply (no peers, no graded answers) is an
error, not a silent substitute.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import core_rs
from scorer.guards import INJECTION_REMOVED, GUARD_SIGNAL_PREFIX, check_answer, scan_injection
from scorer.judge import SIGNAL as JUDGE_SIGNAL
from scorer.judge import SIGNAL_FAILED, SIGNAL_NOT_CONFIGURED, JudgeError, LLMJudge, combine, signal_used
from scorer.training.data import Question
from scorer.training.embed import ENCODER_ID, Encoder
from scorer.training.features import FeatureConfig, Featurizer, derive_criteria
from scorer.training.model import CONFIDENCE_NAME, INPUT_NAME, SCORE_NAME, load_metadata


class MissingSignal(RuntimeError):
    """A signal the model needs is not available; the answer cannot be scored honestly."""


@dataclass
class CriterionHit:
    """One rubric criterion and the words of the answer that show it (empty if missed)."""

    name: str
    met: bool
    evidence: str = ""


@dataclass
class ScoredAnswer:
    """A scored answer with everything needed to explain it.

    Attributes:
        grade: The grade on ``0..scale_max``.
        score: ``grade / scale_max``.
        confidence: Calibrated P(within tolerance of a human), or 1.0 for a guard's rule.
        flagged: Whether a human should review it.
        reasons: Why it was flagged or zeroed, in plain words.
        criteria: Per-criterion hits with evidence.
        model_answer: A reference answer to show the candidate.
        feedback: Sentences built from the hits and misses (no praise beyond them).
        signals: Which signals produced the score.
        versions: Model name → version for every model used.
    """

    grade: float
    score: float
    confidence: float
    flagged: bool
    reasons: list[str] = field(default_factory=list)
    criteria: list[CriterionHit] = field(default_factory=list)
    model_answer: str = ""
    feedback: str = ""
    signals: list[str] = field(default_factory=list)
    versions: dict[str, str] = field(default_factory=dict)


class TextScorer:
    """Loads an artefact and scores answers with it.

    Args:
        artefact: A version directory written by :func:`scorer.training.train.train`.
        encoder: A shared encoder (a new one is made otherwise).
        judge: An optional LLM judge.
    """

    def __init__(self, artefact: Path, encoder: Encoder | None = None, judge: LLMJudge | None = None) -> None:
        import onnxruntime as ort

        self.metadata = load_metadata(artefact)
        if self.metadata["encoder"]["id"] != ENCODER_ID:
            raise ValueError(f"{artefact} was trained on encoder {self.metadata['encoder']['id']}, not {ENCODER_ID}")
        self.config = FeatureConfig(
            peers=self.metadata["feature_config"]["peers"], graded=self.metadata["feature_config"]["graded"]
        )
        if list(self.config.names) != self.metadata["feature_names"]:
            raise ValueError(f"{artefact}: its feature names differ from this code's; retrain it")
        self.session = ort.InferenceSession(str(artefact / "model.onnx"), providers=["CPUExecutionProvider"])
        self.featurizer = Featurizer(encoder or Encoder())
        self.judge = judge
        self.scale_max = float(self.metadata["scale_max"])
        self.tolerance = float(self.metadata["tolerance"])
        self.threshold = float(self.metadata["review_threshold"])
        self.version = f"{self.metadata['name']}@{self.metadata['version']}"

    def score(
        self,
        question: Question,
        answer: str,
        peers: Sequence[str] = (),
        graded: Sequence[tuple[str, float]] = (),
    ) -> ScoredAnswer:
        """Scores one answer.

        Args:
            question: The question with its references (and criteria, if any).
            answer: The candidate's answer.
            peers: Other candidates' answers to the question (for a peer-feature model).
            graded: ``(answer, grade)`` pairs graded by humans (for a graded-feature model).

        Returns:
            The scored answer.

        Raises:
            MissingSignal: The model needs peers or graded answers and none were given.
        """
        versions = {"encoder": ENCODER_ID}
        enc = self.featurizer.encode_question(question)
        criteria = derive_criteria(question)
        signals: list[str] = []
        reasons: list[str] = []
        # Injections are cut first, so the guards and every model see only the answer itself.
        scan = scan_injection(answer)
        text = answer
        if scan.found:
            text = scan.cleaned
            signals.append(GUARD_SIGNAL_PREFIX + INJECTION_REMOVED)
            reasons.append(f"{len(scan.removed)} passage(s) addressed to the grader were removed before scoring.")
        verdict = check_answer(text, question.prompt, question.references, similarity=self._similarity(enc, text))
        if verdict is not None:
            return ScoredAnswer(
                grade=0.0,
                score=0.0,
                confidence=1.0,
                flagged=scan.found,
                reasons=reasons + [verdict.reason],
                criteria=[CriterionHit(name, False) for name, _, _ in criteria],
                model_answer=question.references[0],
                feedback=verdict.reason,
                signals=signals + [verdict.signal],
                versions=versions,
            )

        row = self._features(enc, text, peers, graded)
        score, confidence = self.session.run([SCORE_NAME, CONFIDENCE_NAME], {INPUT_NAME: row.astype(np.float32)})
        value, conf = float(score.reshape(-1)[0]), float(confidence.reshape(-1)[0])
        signals += ["core_rs.text_features", f"minilm.{ENCODER_ID}", f"model:{self.version}", "confidence.isotonic_oof"]
        if self.config.peers:
            signals.append(f"peers.n={len(peers)}")
        if self.config.graded:
            signals.append(f"graded.n={len(graded)}")
        versions["answer_scorer_text"] = self.version
        grade = value * self.scale_max
        flagged = scan.found or conf < self.threshold
        if conf < self.threshold:
            reasons.append(f"confidence {conf:.2f} is below the review threshold {self.threshold:.2f}")

        if self.judge is not None:
            try:
                result = self.judge.grade(question.prompt, question.references, criteria, text)
            except JudgeError as exc:
                # The judge is optional, but a configured judge that fails is reported, not hidden.
                signals.append(SIGNAL_FAILED)
                reasons.append(str(exc))
                flagged = True
            else:
                signals.append(signal_used(result.model))
                versions[JUDGE_SIGNAL] = result.model
                grade, disagree = combine(grade, result.verdict.grade, self.tolerance)
                if disagree:
                    flagged = True
                    reasons.append(f"the LLM judge gave {result.verdict.grade:g}; the lower grade is kept")
                if result.verdict.injection_attempt:
                    flagged = True
                    reasons.append("the LLM judge reported an injection attempt")
        else:
            signals.append(SIGNAL_NOT_CONFIGURED)

        hits = self._criteria(text, question, criteria)
        return ScoredAnswer(
            grade=grade,
            score=grade / self.scale_max,
            confidence=conf,
            flagged=flagged,
            reasons=reasons,
            criteria=hits,
            model_answer=question.references[0],
            feedback=feedback(hits),
            signals=signals,
            versions=versions,
        )

    def _similarity(self, enc: Any, answer: str) -> float:
        emb = self.featurizer.encoder.encode([answer])[0]
        return float(max(np.max(enc.reference_emb @ emb), enc.question_emb @ emb))

    def _features(self, enc: Any, text: str, peers: Sequence[str], graded: Sequence[tuple[str, float]]) -> np.ndarray:
        plain, demoted = self.featurizer.answer_embeddings(enc, [text])
        base = self.featurizer.base(enc, [text], plain, demoted)
        parts = [base]
        if self.config.peers:
            if len(peers) < 2:
                raise MissingSignal("this model needs at least two other answers to the question (peer features)")
            peer_plain, peer_demoted = self.featurizer.answer_embeddings(enc, list(peers))
            peer_base = self.featurizer.base(enc, list(peers), peer_plain, peer_demoted)
            parts.append(self.featurizer.peers(base, plain, peer_plain, peer_base, [None]))
        if self.config.graded:
            if not graded:
                raise MissingSignal("this model needs graded answers to the question (kNN features)")
            texts = [t for t, _ in graded]
            graded_plain, graded_demoted = self.featurizer.answer_embeddings(enc, texts)
            graded_base = self.featurizer.base(enc, texts, graded_plain, graded_demoted)
            grades = np.array([g for _, g in graded]) / self.scale_max
            parts.append(
                self.featurizer.graded(plain, base, graded_plain, graded_base, grades, [list(range(len(graded)))])
            )
        return np.hstack(parts)

    @staticmethod
    def _criteria(text: str, question: Question, criteria: Sequence[tuple[str, Sequence[str], float]]) -> list[CriterionHit]:
        feats = core_rs.text_features(text, list(question.references), list(criteria))
        out = []
        for (name, _, _), met, terms in zip(criteria, feats.criteria_hits, feats.matched_terms, strict=True):
            out.append(CriterionHit(name=name, met=met, evidence=evidence_span(text, terms) if met else ""))
        return out


def evidence_span(text: str, terms: Sequence[str], width: int = 30) -> str:
    """The stretch of the answer around the first matched term, e.g. "…returns the value in…"."""
    for term in terms:
        pattern = r"\b" + r"\W+".join(re.escape(w) for w in term.split()) + r"\w*"
        match = re.search(pattern, text, flags=re.IGNORECASE)
        if match:
            start, end = max(0, match.start() - width), min(len(text), match.end() + width)
            return ("…" if start else "") + text[start:end].strip() + ("…" if end < len(text) else "")
    return ", ".join(terms)


def feedback(hits: Sequence[CriterionHit]) -> str:
    """Feedback that states what the answer shows and misses, and nothing else."""
    met = [h.name for h in hits if h.met]
    missed = [h.name for h in hits if not h.met]
    parts = []
    if met:
        parts.append("Shows: " + ", ".join(met) + ".")
    if missed:
        parts.append("Missing: " + ", ".join(missed) + ".")
    return " ".join(parts)
