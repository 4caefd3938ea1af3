"""The training encoder: unit-length, meaningful embeddings, independent of batching.

It reads the same pinned files as the Triton ``sentence_encoder`` through :mod:`scorer.minilm`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from scorer.training.embed import Encoder


def test_embeddings_are_unit_length_and_meaningful(encoder: Encoder) -> None:
    texts = [
        "VLOOKUP finds a value in the first column and returns a value from the same row.",
        "It searches the leftmost column for a value and gives back the matching row's entry.",
        "My cat sleeps on the sofa all afternoon.",
    ]
    e = encoder.encode(texts)
    assert e.shape == (3, 384) and e.dtype == np.float32
    assert np.allclose(np.linalg.norm(e, axis=1), 1.0, atol=1e-5)
    assert e[0] @ e[1] > e[0] @ e[2] + 0.3


def test_texts_encoded_together_get_the_embeddings_they_get_alone() -> None:
    # The int8 graph quantizes a run's activations with one scale, so texts that shared a run
    # would change each other's embeddings; the encoder must run each alone.
    texts = ["short", "a somewhat longer sentence about pivot tables", "mid length text", ""]
    together = Encoder(threads=1).encode(texts)
    alone = np.stack([Encoder(threads=1).encode([t])[0] for t in texts])
    assert np.array_equal(together, alone)


def test_token_states_name_their_words(encoder: Encoder) -> None:
    (states,) = encoder.encode_tokens(["Use INDEX-MATCH, it's flexible"])
    assert states.vectors.shape == (len(states.words), 384)
    assert "flexible" in states.words and "index" in states.words
    assert np.allclose(np.linalg.norm(states.vectors, axis=1), 1.0, atol=1e-5)


def test_cache_round_trip(tmp_path: Path, encoder: Encoder) -> None:
    encoder.encode(["cached text"])
    encoder.save_cache(tmp_path / "c.npz")
    other = Encoder(threads=1)
    other.load_cache(tmp_path / "c.npz")
    assert "cached text" in other._cache
    assert np.array_equal(other.encode(["cached text"]), encoder.encode(["cached text"]))


def test_a_bounded_cache_stays_bounded_and_runs_each_text_once(monkeypatch: pytest.MonkeyPatch) -> None:
    bounded = Encoder(threads=1, max_cached_texts=4)
    runs: list[list[str]] = []
    run = bounded._run

    def counting_run(texts: list[str], keep_tokens: bool) -> None:
        runs.append(list(texts))
        run(texts, keep_tokens)

    monkeypatch.setattr(bounded, "_run", counting_run)
    reference = Encoder(threads=1)
    for start in range(0, 12, 3):
        texts = [f"answer number {i} about lookups" for i in range(start, start + 3)]
        # What text_features does per request: token states, then embeddings of the same texts.
        tokens = bounded.encode_tokens(texts)
        embeddings = bounded.encode(texts)
        assert len(bounded._cache) <= 4 and len(bounded._tokens) <= 4
        assert np.allclose(embeddings, reference.encode(texts), atol=1e-5)
        assert [t.words for t in tokens] == [t.words for t in reference.encode_tokens(texts)]
    # One run per request: the second call of each request found what the first ran.
    assert [len(texts) for texts in runs] == [3, 3, 3, 3]
