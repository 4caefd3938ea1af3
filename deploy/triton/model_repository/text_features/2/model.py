"""Triton Python-backend model ``text_features``: base feature rows of free-text answers.

The features are computed by :class:`scorer.training.features.Featurizer`, the very code the
training CLI used, on the same pinned MiniLM files (:mod:`scorer.minilm`), so the live scorer
feeds ``answer_scorer_text`` exactly the features it was trained on. A question's reference
and prompt encodings are kept for the next requests (most answers in a batch share a question).
"""

from __future__ import annotations

import json
from collections import OrderedDict
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils

# The stub runs the project's virtual environment, where the project is installed.
from scorer.training.data import Question
from scorer.training.embed import Encoder
from scorer.training.features import BASE_FEATURES, Featurizer, QuestionEncoding
from scorer.triton_backend import parameter, rejected, single_threaded_blas


def parse_item(raw: str) -> Question:
    """The ``ITEM`` JSON as a training :class:`Question`.

    Raises:
        ValueError: The JSON is malformed or has no reference answer.
    """
    spec = json.loads(raw)
    references = tuple(str(r) for r in spec["references"])
    if not references:
        raise ValueError("ITEM needs at least one reference answer")
    criteria = tuple((str(n), tuple(str(t) for t in terms), float(w)) for n, terms, w in spec.get("criteria", []))
    return Question(qid="live", group="live", prompt=str(spec["prompt"]), references=references, criteria=criteria)


class TritonPythonModel:
    """``ANSWER`` and ``ITEM`` rows in, ``FEATURES`` rows out."""

    def initialize(self, args: dict[str, str]) -> None:
        """Loads the encoder.

        Args:
            args: Triton model arguments; ``model_config`` holds ``intra_op_threads``,
                ``question_cache`` and ``answer_cache``.
        """
        single_threaded_blas()
        self.cache_size = int(parameter(args, "question_cache", "256"))
        encoder = Encoder(
            threads=int(parameter(args, "intra_op_threads", "1")),
            max_cached_texts=int(parameter(args, "answer_cache", "512")),
        )
        self.featurizer = Featurizer(encoder)
        self.questions: OrderedDict[str, QuestionEncoding] = OrderedDict()

    def _question(self, raw: str) -> QuestionEncoding:
        known = self.questions.get(raw)
        if known is None:
            known = self.questions[raw] = self.featurizer.encode_question(parse_item(raw))
            if len(self.questions) > self.cache_size:
                self.questions.popitem(last=False)
        self.questions.move_to_end(raw)
        return known

    def features(self, raw_item: str, answers: list[str]) -> np.ndarray:
        """Base feature rows of answers to one question, ``(n, 17)`` float32."""
        encoding = self._question(raw_item)
        plain, demoted = self.featurizer.answer_embeddings(encoding, answers)
        return self.featurizer.base(encoding, answers, plain, demoted).astype(np.float32)

    def execute(self, requests: list[Any]) -> list[Any]:
        """Computes the features of every row, grouping rows by question.

        Returns:
            One response per request, in order; a request with text that is not UTF-8 or an
            invalid ``ITEM`` gets an error response without failing the others.
        """
        responses: list[Any] = []
        for request in requests:
            answers = pb_utils.get_input_tensor_by_name(request, "ANSWER").as_numpy().reshape(-1)
            items = pb_utils.get_input_tensor_by_name(request, "ITEM").as_numpy().reshape(-1)
            try:
                texts = [a.decode("utf-8") for a in answers]
                raws = [i.decode("utf-8") for i in items]
                out = np.zeros((len(texts), len(BASE_FEATURES)), dtype=np.float32)
                for raw in dict.fromkeys(raws):
                    rows = [r for r, value in enumerate(raws) if value == raw]
                    out[rows] = self.features(raw, [texts[r] for r in rows])
            except (UnicodeDecodeError, ValueError, KeyError, TypeError) as exc:
                responses.append(rejected(f"bad text_features input: {exc}"))
                continue
            responses.append(pb_utils.InferenceResponse(output_tensors=[pb_utils.Tensor("FEATURES", out)]))
        return responses

    def finalize(self) -> None:
        """Drops the encoder."""
        self.featurizer = None
