"""The int8-compute MiniLM graph: derived from the pinned file, pinned itself, faithful to it."""

from __future__ import annotations

import hashlib
import logging
import shutil
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from scorer import minilm

TEXTS = [
    "VLOOKUP finds a value in the first column of a range and returns a value from the same row.",
    "A pivot table summarises rows by the categories you drag into its rows and columns.",
    "Absolute references such as $A$1 do not move when the formula is copied.",
    "My cat sleeps on the sofa all afternoon.",
    "ok",
]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_graph_is_derived_once_and_kept(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(minilm.CACHE_DIR_ENV, str(tmp_path))
    kept = minilm.compute_graph()
    assert kept.parent == tmp_path and _sha256(kept) == minilm.COMPUTE_GRAPH_SHA256
    assert [p.name for p in tmp_path.iterdir()] == [kept.name]  # no staging file left behind
    stamp = kept.stat().st_mtime_ns
    assert minilm.compute_graph() == kept and kept.stat().st_mtime_ns == stamp


def test_a_damaged_copy_is_derived_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(minilm.CACHE_DIR_ENV, str(tmp_path))
    kept = tmp_path / f"minilm-int8-compute-{minilm.COMPUTE_GRAPH_SHA256[:16]}.onnx"
    kept.write_bytes(b"not a graph")
    assert minilm.compute_graph() == kept and _sha256(kept) == minilm.COMPUTE_GRAPH_SHA256


def test_an_unwritable_cache_still_gives_the_graph_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory would go")
    monkeypatch.setenv(minilm.CACHE_DIR_ENV, str(blocker / "cache"))
    at_exit: list[tuple[object, ...]] = []
    monkeypatch.setattr(minilm.atexit, "register", lambda *args, **kwargs: at_exit.append(args))
    with caplog.at_level(logging.WARNING, logger=minilm.__name__):
        graph = minilm.compute_graph()
    try:
        assert not graph.is_relative_to(tmp_path) and _sha256(graph) == minilm.COMPUTE_GRAPH_SHA256
        assert "derived again at every load" in caplog.text
        # The temporary directory is removed when the process exits, not left behind.
        assert at_exit == [(shutil.rmtree, graph.parent)]
    finally:
        shutil.rmtree(graph.parent)  # the fallback's temporary directory, 22 MB


def test_the_int8_graph_embeds_like_the_pinned_fp32_one() -> None:
    pinned = minilm.package_file(minilm.ONNX_PACKAGE, minilm.ONNX_FILE, minilm.ONNX_SHA256)
    fp32 = ort.InferenceSession(str(pinned), providers=["CPUExecutionProvider"])
    tokenizer = minilm.open_tokenizer()
    int8 = minilm.embed(minilm.open_session(1), tokenizer, TEXTS)
    reference = minilm.embed(fp32, tokenizer, TEXTS)
    cosine = np.sum(int8 * reference, axis=1)
    # On the 2,273 Mohler answers (`make bench-encoder`): median 0.993, 1st percentile 0.982,
    # lowest 0.964 ("No"); answers of a few tokens move most.
    assert np.min(cosine[:4]) > 0.98 and cosine[4] > 0.95
    # The ranking that scoring relies on holds: related texts stay closer than unrelated ones.
    similarity = int8 @ int8.T
    assert similarity[0, 1] > similarity[0, 3] and similarity[0, 2] > similarity[0, 3]
