"""Triton Python-backend model ``answer_scorer_text``: the trained free-text scorer on onnxruntime.

``model.onnx`` beside this file is the artefact written by ``python -m scorer.training train``
(input ``FEATURES`` ``[batch, 17]``, outputs ``SCORE`` and ``CONFIDENCE`` ``[batch, 1]``), and
``metadata.json`` describes it. ``initialize`` refuses to load when the graph's sha256 differs
from the metadata's, or when the artefact was trained on other features than
``scorer.training.features.BASE_FEATURES`` (what the ``text_features`` model computes), so a
mismatched artefact fails the load instead of scoring nonsense.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub runs the project's virtual environment, where the project is installed.
from scorer.training.features import BASE_FEATURES
from scorer.training.model import CONFIDENCE_NAME, INPUT_NAME, SCORE_NAME, load_metadata
from scorer.triton_backend import parameter, rejected, single_threaded_blas


class TritonPythonModel:
    """``FEATURES`` rows in, ``SCORE`` and ``CONFIDENCE`` rows out."""

    def initialize(self, args: dict[str, str]) -> None:
        """Checks and loads the artefact.

        Args:
            args: Triton model arguments; ``model_config`` holds ``intra_op_threads``.

        Raises:
            ValueError: The artefact is not a base-feature model or its graph was changed.
        """
        single_threaded_blas()
        import onnxruntime as ort

        folder = Path(__file__).resolve().parent
        metadata = load_metadata(folder)  # also checks model.onnx against its recorded sha256
        config = metadata["feature_config"]
        if metadata["feature_names"] != list(BASE_FEATURES) or config["peers"] or config["graded"]:
            raise ValueError(f"{folder}: live scoring computes the base features only; retrain with --features base")
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameter(args, "intra_op_threads", "1"))
        options.inter_op_num_threads = 1
        self.session = ort.InferenceSession(str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"])
        self.width = len(BASE_FEATURES)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Scores every row of a dynamically batched list of requests in one onnxruntime run.

        Returns:
            One response per request, in order; a request with non-finite features gets an
            error response without failing the others.
        """
        responses: list[Any] = [None] * len(requests)
        blocks: list[np.ndarray] = []
        spans: list[tuple[int, int, int]] = []
        rows = 0
        for index, request in enumerate(requests):
            features = pb_utils.get_input_tensor_by_name(request, "FEATURES").as_numpy()
            if features.ndim != 2 or features.shape[1] != self.width or not np.all(np.isfinite(features)):
                responses[index] = rejected(f"FEATURES must be finite FP32 [batch, {self.width}]")
                continue
            spans.append((index, rows, rows + len(features)))
            blocks.append(features.astype(np.float32, copy=False))
            rows += len(features)
        if blocks:
            score, confidence = self.session.run([SCORE_NAME, CONFIDENCE_NAME], {INPUT_NAME: np.concatenate(blocks)})
            for index, start, end in spans:
                responses[index] = pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("SCORE", score[start:end].astype(np.float32)),
                        pb_utils.Tensor("CONFIDENCE", confidence[start:end].astype(np.float32)),
                    ]
                )
        return responses

    def finalize(self) -> None:
        """Drops the onnxruntime session."""
        self.session = None
