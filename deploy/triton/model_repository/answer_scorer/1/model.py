"""Triton Python-backend model ``answer_scorer``: a logistic scorer over answer features.

``SCORE = sigmoid(FEATURES @ weights + bias + similarity_term)`` with the weights
read from ``weights.json`` next to this file. The similarity term uses the optional
``SIMILARITY`` input (a free-text answer's cosine similarity to the reference answers,
from the ``sentence_encoder`` model)::

    similarity_term = weight * FEATURES[gate] * max(0, SIMILARITY - floor) / (1 - floor)

and is zero when the request has no ``SIMILARITY``. Numpy only, so it runs in the
stock Python backend stub without extra packages.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

NUM_FEATURES = 10
# Features are documented as lying in [0, 1]; allow float32 rounding slack.
_RANGE_SLACK = 1e-4


def _error(message: str) -> Any:
    """Builds a Triton error, marked INVALID_ARG when the stub supports codes.

    Args:
        message: Human-readable error message returned to the client.

    Returns:
        A ``pb_utils.TritonError``.
    """
    code = getattr(pb_utils.TritonError, "INVALID_ARG", None)
    if code is None:
        return pb_utils.TritonError(message)
    return pb_utils.TritonError(message, code)


class TritonPythonModel:
    """Logistic answer scorer served by the Triton Python backend."""

    def initialize(self, args: dict[str, str]) -> None:
        """Loads and validates the weights from ``weights.json``.

        Args:
            args: Triton model arguments (``model_repository``, ``model_version``, ...).

        Raises:
            ValueError: If ``weights.json`` does not describe a 10-feature model
                with a valid similarity term.
        """
        path = Path(__file__).resolve().parent / "weights.json"
        spec = json.loads(path.read_text(encoding="utf-8"))
        weights = np.asarray(spec["weights"], dtype=np.float64)
        names = list(spec["feature_names"])
        if weights.shape != (NUM_FEATURES,) or len(names) != NUM_FEATURES:
            raise ValueError(
                f"{path}: expected {NUM_FEATURES} weights and feature names, "
                f"got {weights.shape[0]} weights and {len(names)} names"
            )
        if not np.all(np.isfinite(weights)) or not np.isfinite(float(spec["bias"])):
            raise ValueError(f"{path}: weights and bias must be finite")
        self.weights = weights
        self.bias = float(spec["bias"])
        self.feature_names = names
        similarity = spec["similarity"]
        self.sim_weight = float(similarity["weight"])
        self.sim_floor = float(similarity["floor"])
        self.sim_gate = names.index(similarity["gate"])
        if not (np.isfinite(self.sim_weight) and 0.0 <= self.sim_floor < 1.0):
            raise ValueError(f"{path}: similarity.weight must be finite and 0 <= similarity.floor < 1")

    def _similarity(self, request: Any, rows: int) -> tuple[np.ndarray, str | None]:
        """Reads one request's optional SIMILARITY input.

        Args:
            request: The Triton request.
            rows: Rows of its FEATURES tensor.

        Returns:
            ``(similarity, error)``: a ``(rows,)`` float64 array (zeros when the input
            is absent) and an error message, or None if the input is valid.
        """
        tensor = pb_utils.get_input_tensor_by_name(request, "SIMILARITY")
        if tensor is None:
            return np.zeros(rows), None
        values = tensor.as_numpy()
        if values.dtype != np.float32 or values.shape != (rows, 1):
            return np.zeros(rows), (
                f"SIMILARITY must be FP32 [{rows}, 1] like FEATURES, "
                f"got {values.dtype} {list(values.shape)}"
            )
        in_range = (values >= -_RANGE_SLACK) & (values <= 1.0 + _RANGE_SLACK)
        if not np.all(np.isfinite(values) & in_range):
            return np.zeros(rows), "SIMILARITY must be finite and lie in [0, 1]"
        return values.astype(np.float64).reshape(-1), None

    def _validate(self, features: np.ndarray) -> str | None:
        """Checks one request's input tensor.

        Args:
            features: The FEATURES tensor of one request.

        Returns:
            An error message, or None if the tensor is valid.
        """
        if features.ndim != 2 or features.shape[1] != NUM_FEATURES:
            return (
                f"FEATURES must have shape [batch, {NUM_FEATURES}], "
                f"got {list(features.shape)}"
            )
        if not np.all(np.isfinite(features)):
            bad = np.argwhere(~np.isfinite(features))[0]
            return (
                f"FEATURES must be finite; row {int(bad[0])} feature "
                f"'{self.feature_names[int(bad[1])]}' is {features[bad[0], bad[1]]}"
            )
        if features.size and (
            features.min() < -_RANGE_SLACK or features.max() > 1.0 + _RANGE_SLACK
        ):
            bad = np.argwhere(
                (features < -_RANGE_SLACK) | (features > 1.0 + _RANGE_SLACK)
            )[0]
            return (
                f"FEATURES must lie in [0, 1]; row {int(bad[0])} feature "
                f"'{self.feature_names[int(bad[1])]}' is {features[bad[0], bad[1]]}"
            )
        return None

    def execute(self, requests: list[Any]) -> list[Any]:
        """Scores a (dynamically batched) list of requests in one matrix product.

        Args:
            requests: Triton inference requests, each with a FEATURES tensor and
                optionally a SIMILARITY tensor with one value per row.

        Returns:
            One response per request, in order; invalid requests get an error
            response without affecting the others.
        """
        responses: list[Any] = [None] * len(requests)
        valid: list[tuple[int, np.ndarray, np.ndarray]] = []
        for i, request in enumerate(requests):
            tensor = pb_utils.get_input_tensor_by_name(request, "FEATURES")
            if tensor is None:
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[], error=_error("missing input FEATURES")
                )
                continue
            features = tensor.as_numpy()
            if features.dtype != np.float32:
                message: str | None = f"FEATURES must be FP32, got {features.dtype}"
            else:
                message = self._validate(features)
            if message is None:
                similarity, message = self._similarity(request, features.shape[0])
            if message is not None:
                responses[i] = pb_utils.InferenceResponse(
                    output_tensors=[], error=_error(message)
                )
                continue
            valid.append((i, features, similarity))

        if valid:
            stacked = np.concatenate([f for _, f, _ in valid], axis=0).astype(np.float64)
            similarity = np.concatenate([s for _, _, s in valid])
            logits = stacked @ self.weights + self.bias
            above_floor = np.maximum(similarity - self.sim_floor, 0.0) / (1.0 - self.sim_floor)
            logits += self.sim_weight * stacked[:, self.sim_gate] * above_floor
            scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32).reshape(-1, 1)
            start = 0
            for i, features, _ in valid:
                n = features.shape[0]
                out = pb_utils.Tensor("SCORE", scores[start : start + n])
                responses[i] = pb_utils.InferenceResponse(output_tensors=[out])
                start += n
        return responses

    def finalize(self) -> None:
        """Releases nothing; present for the Triton model lifecycle."""
