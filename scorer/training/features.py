"""Feature rows for the learned free-text scorer.

Three families, each usable alone so the product can score with whatever it has:

* **base** — needs only the question and its reference answers: core_rs text features
  (concept coverage of the rubric criteria, reference recall, length, Excel vocabulary) and
  MiniLM cosine similarities to the references, plain and with the question's own words
  removed from both sides ("question demoting": repeating the question earns nothing).
* **peers** — label-free and transductive: how the answer sits among the *other* answers to the
  same question (similarity to their centroid, its reference similarity relative to theirs).
  It uses no grades, but it does use other candidates' answers, so a score can move when more
  answers arrive; reports must say so.
* **graded** — needs answers to the same question that a human has graded: a similarity-weighted
  (kNN) grade, the nearest graded answer's grade and similarity, the mean graded grade.

Grades inside features are divided by the scale's top grade so features do not depend on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

import core_rs
from scorer.training.data import Criterion, Question
from scorer.training.embed import Encoder, TokenStates
from scorer.training.text import STOPWORDS, content_keys, word_key, words

# Softmax temperature over cosine similarities for the kNN grade: 0.05 lets the closest few
# graded answers dominate without ignoring the rest (cosines of answers to one question span ~0.3).
KNN_TEMPERATURE = 0.05
# Token count at which log-length saturates at 1.
LENGTH_SATURATION = 200


def derive_criteria(question: Question) -> tuple[Criterion, ...]:
    """The question's rubric criteria, or one per content word of its references.

    When a question has no rubric (the Mohler data has none), each content word of the
    reference answers that is not already a word of the question becomes a criterion of
    weight 1, so concept coverage measures the demoted reference recall.

    Args:
        question: The question.

    Returns:
        Criteria ``(name, terms, weight)`` for core_rs.
    """
    if question.criteria:
        return question.criteria
    asked = set(content_keys(question.prompt))
    keys: dict[str, None] = {}
    for reference in question.references:
        for key in content_keys(reference):
            if key not in asked:
                keys.setdefault(key, None)
    if not keys:  # the reference only repeats the question: fall back to all its content words
        keys = {k: None for r in question.references for k in content_keys(r)}
    return tuple((key, (key,), 1.0) for key in keys)


BASE_FEATURES = (
    "concept_coverage",
    "reference_recall",
    "length_ratio",
    "excel_vocab_density",
    "log_length",
    "question_overlap",
    "cos_reference",
    "cos_reference_demoted",
    "cos_question",
    "reference_log_length",
    "cos_reference_question",
    "align_recall",
    "align_precision",
    "align_f1",
    "align_recall_demoted",
    "align_precision_demoted",
    "align_f1_demoted",
)
PEER_FEATURES = (
    "cos_peer_centroid",
    "cos_reference_vs_peers",
    "coverage_vs_peers",
    "peer_mean_cos_reference",
)
GRADED_FEATURES = (
    "knn_grade",
    "nearest_grade",
    "nearest_cos",
    "graded_mean",
    "cos_best_graded",
    "local_fit_align",
    "local_fit_cos",
    "local_fit_coverage",
)
# Base features that the graded answers' grades are regressed on, per question (local fit).
LOCAL_FIT_COLUMNS = tuple(BASE_FEATURES.index(n) for n in ("align_f1_demoted", "cos_reference_demoted", "concept_coverage"))
# Ridge penalty on the local slope: with ten graded answers an unpenalised slope is noise
# whenever their similarities barely differ.
LOCAL_FIT_PENALTY = 0.01


@dataclass(frozen=True)
class FeatureConfig:
    """Which feature families a model uses.

    Attributes:
        peers: Use label-free peer features (needs other answers to the same question).
        graded: Use features from graded answers of the same question.
    """

    peers: bool = False
    graded: bool = False

    @property
    def names(self) -> tuple[str, ...]:
        """The feature names, in column order."""
        return BASE_FEATURES + (PEER_FEATURES if self.peers else ()) + (GRADED_FEATURES if self.graded else ())

    @property
    def label(self) -> str:
        """A short name for reports: "base", "base+peers", "base+peers+graded", ..."""
        return "+".join(["base"] + (["peers"] if self.peers else []) + (["graded"] if self.graded else []))


@dataclass
class QuestionEncoding:
    """Everything about one question that every answer's features reuse.

    Attributes:
        question: The question.
        criteria: Its criteria (given or derived).
        reference_emb: ``(R, 384)`` embeddings of the references.
        reference_demoted_emb: ``(R, 384)`` embeddings of the demoted references.
        question_emb: ``(384,)`` embedding of the prompt.
        question_keys: Content-word keys of the prompt.
        reference_tokens: Token states of the references.
    """

    question: Question
    criteria: tuple[Criterion, ...]
    reference_emb: np.ndarray
    reference_demoted_emb: np.ndarray
    question_emb: np.ndarray
    question_keys: frozenset[str]
    reference_tokens: list[TokenStates]


class Featurizer:
    """Computes feature rows with one shared encoder.

    Args:
        encoder: The MiniLM encoder.
    """

    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def encode_question(self, question: Question) -> QuestionEncoding:
        """Embeds a question's prompt and references once."""
        refs = list(question.references)
        asked = frozenset(content_keys(question.prompt))
        tokens = self.encoder.encode_tokens(refs)  # one pass gives token states and embeddings
        return QuestionEncoding(
            question=question,
            criteria=derive_criteria(question),
            reference_emb=self.encoder.encode(refs),
            reference_demoted_emb=np.stack([demoted_embedding(t, asked) for t in tokens]),
            question_emb=self.encoder.encode([question.prompt])[0],
            question_keys=asked,
            reference_tokens=tokens,
        )

    def answer_embeddings(self, enc: QuestionEncoding, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
        """Embeds answers, plain and demoted: ``(plain, demoted)``, each ``(n, 384)``.

        Both come from one encoder pass per answer: the demoted embedding pools the same
        contextual token vectors without the question's words (re-encoding the demoted text
        instead costs a second pass and measured no better on Mohler).
        """
        tokens = self.encoder.encode_tokens(texts)
        plain = self.encoder.encode(texts)
        demoted = np.stack([demoted_embedding(t, enc.question_keys) for t in tokens]) if texts else plain
        return plain, demoted

    def base(self, enc: QuestionEncoding, texts: Sequence[str], plain: np.ndarray, demoted: np.ndarray) -> np.ndarray:
        """Base features, ``(n, len(BASE_FEATURES))``."""
        question = enc.question
        feats = core_rs.text_features_batch(list(texts), list(question.references), list(enc.criteria))
        ref_len = max(len(words(r)) for r in question.references)
        ref_q = float(np.max(enc.reference_emb @ enc.question_emb))
        tokens = self.encoder.encode_tokens(texts)
        rows = []
        for text, f, p, d, tok in zip(texts, feats, plain, demoted, tokens, strict=True):
            keys = content_keys(text)
            overlap = sum(k in enc.question_keys for k in keys) / len(keys) if keys else 0.0
            rows.append(
                [
                    f.concept_coverage,
                    f.reference_recall,
                    f.length_ratio / 2.0,  # core_rs caps the ratio at 2
                    f.features[9],  # excel_vocab_density, core_rs's own normalisation
                    _log_length(f.token_count),
                    overlap,
                    float(np.max(enc.reference_emb @ p)),
                    float(np.max(enc.reference_demoted_emb @ d)),
                    float(enc.question_emb @ p),
                    _log_length(ref_len),
                    ref_q,
                    *best_alignment(tok, enc.reference_tokens, frozenset()),
                    *best_alignment(tok, enc.reference_tokens, enc.question_keys),
                ]
            )
        return np.asarray(rows, dtype=np.float64).reshape(len(texts), len(BASE_FEATURES))

    @staticmethod
    def peers(base: np.ndarray, plain: np.ndarray, peer_plain: np.ndarray, peer_base: np.ndarray, self_index: Sequence[int | None]) -> np.ndarray:
        """Label-free peer features, ``(n, len(PEER_FEATURES))``.

        Args:
            base: The answers' base features.
            plain: The answers' embeddings.
            peer_plain: Embeddings of all known answers to the question (peers), ``(m, 384)``.
            peer_base: Their base features.
            self_index: For each answer, its row in the peers (excluded from its own peer
                statistics), or None when it is not among them.

        Returns:
            The features; with fewer than two peers left they are neutral (0, or the
            answer's own value for the question-level mean).
        """
        cos_col = BASE_FEATURES.index("cos_reference_demoted")
        cov_col = BASE_FEATURES.index("concept_coverage")
        total_emb = peer_plain.sum(axis=0)
        total_cos = peer_base[:, cos_col].sum()
        total_cov = peer_base[:, cov_col].sum()
        m = peer_plain.shape[0]
        out = np.zeros((plain.shape[0], len(PEER_FEATURES)))
        for i, own in enumerate(self_index):
            n = m - (own is not None)
            if n < 2:
                out[i] = [0.0, 0.0, 0.0, base[i, cos_col]]
                continue
            emb = total_emb - (peer_plain[own] if own is not None else 0.0)
            cos = total_cos - (peer_base[own, cos_col] if own is not None else 0.0)
            cov = total_cov - (peer_base[own, cov_col] if own is not None else 0.0)
            centroid = emb / max(float(np.linalg.norm(emb)), 1e-12)
            out[i] = [float(centroid @ plain[i]), base[i, cos_col] - cos / n, base[i, cov_col] - cov / n, cos / n]
        return out

    @staticmethod
    def graded(
        plain: np.ndarray,
        base: np.ndarray,
        graded_plain: np.ndarray,
        graded_base: np.ndarray,
        graded_grades: np.ndarray,
        contexts: Sequence[Sequence[int]],
    ) -> np.ndarray:
        """Features from graded answers of the same question, ``(n, len(GRADED_FEATURES))``.

        Two kinds: nearest-neighbour grades in MiniLM space (the answers most like this one got
        these grades), and a per-question "local fit" — a ridge line of grade against a base
        feature fitted on the graded answers and read off at this answer's value, which
        recalibrates a similarity to this question's grading.

        Args:
            plain: The answers' embeddings.
            base: The answers' base features.
            graded_plain: Embeddings of the graded answers, ``(g, 384)``.
            graded_base: Their base features.
            graded_grades: Their grades divided by the top grade, ``(g,)``.
            contexts: For each answer, the rows of the graded answers it may use (an answer
                never sees its own grade). An empty context gives all zeros.

        Returns:
            The features.
        """
        out = np.zeros((plain.shape[0], len(GRADED_FEATURES)))
        for i, context in enumerate(contexts):
            if not len(context):
                continue
            rows = np.asarray(context, dtype=np.int64)
            sims = graded_plain[rows] @ plain[i]
            grades = graded_grades[rows]
            weights = np.exp((sims - sims.max()) / KNN_TEMPERATURE)
            nearest = int(np.argmax(sims))
            top = grades >= grades.max() - 1e-9
            local = []
            for col in LOCAL_FIT_COLUMNS:
                xs = graded_base[rows, col]
                slope = float(np.mean((xs - xs.mean()) * (grades - grades.mean()))) / (float(xs.var()) + LOCAL_FIT_PENALTY)
                local.append(float(np.clip(grades.mean() + slope * (base[i, col] - xs.mean()), 0.0, 1.0)))
            out[i] = [
                float(weights @ grades / weights.sum()),
                float(grades[nearest]),
                float(sims[nearest]),
                float(grades.mean()),
                float(sims[top].max()),
                *local,
            ]
        return out


def demoted_embedding(tokens: TokenStates, asked: frozenset[str]) -> np.ndarray:
    """Mean of a text's token vectors without the pieces of the question's words, unit length.

    Args:
        tokens: The text's token states.
        asked: Word keys of the question.

    Returns:
        A ``(384,)`` unit vector, or zeros when no content word outside the question is left
        (such a text shows nothing beyond the question, so its demoted similarity is 0).
    """
    keep = [j for j, word in enumerate(tokens.words) if word_key(word) not in asked]
    # Function words and punctuation stay in the mean (they carry the sentence's context),
    # but alone they are no answer.
    if not any(tokens.words[j] not in STOPWORDS and any(c.isalnum() for c in tokens.words[j]) for j in keep):
        return np.zeros(tokens.vectors.shape[1], dtype=np.float32)
    pooled = tokens.vectors[keep].mean(axis=0)
    return pooled / max(float(np.linalg.norm(pooled)), 1e-12)


def _content_rows(tokens: TokenStates, asked: frozenset[str]) -> np.ndarray:
    """The unit vectors of the pieces of content words (no punctuation, stopwords or ``asked``)."""
    keep = [
        j
        for j, word in enumerate(tokens.words)
        if any(c.isalnum() for c in word) and word not in STOPWORDS and word_key(word) not in asked
    ]
    return tokens.vectors[keep]


def best_alignment(answer: TokenStates, references: Sequence[TokenStates], asked: frozenset[str]) -> tuple[float, float, float]:
    """Soft word alignment of an answer to its best-matching reference (BERTScore-style).

    Every content piece of the reference is matched to its most similar answer piece (recall)
    and every answer piece to its most similar reference piece (precision), using MiniLM's
    contextual vectors; this credits paraphrases the exact-word features miss.

    Args:
        answer: The answer's token states.
        references: The references' token states.
        asked: Word keys to leave out on both sides (the question's words, for the demoted
            variant), or empty.

    Returns:
        ``(recall, precision, f1)`` of the reference with the highest F1; zeros when either
        side has no content word left.
    """
    a = _content_rows(answer, asked)
    best = (0.0, 0.0, 0.0)
    if not len(a):
        return best
    for reference in references:
        r = _content_rows(reference, asked)
        if not len(r):
            continue
        sims = r @ a.T
        recall, precision = float(sims.max(axis=1).mean()), float(sims.max(axis=0).mean())
        f1 = 2 * recall * precision / max(recall + precision, 1e-9)
        if f1 > best[2]:
            best = (recall, precision, f1)
    return best


def _log_length(tokens: int) -> float:
    return min(1.0, math.log1p(tokens) / math.log1p(LENGTH_SATURATION))
