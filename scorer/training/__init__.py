"""Offline training and evaluation of the free-text answer scorer.

Nothing here runs in the serving path. The pieces:

* :mod:`scorer.training.data` — graded answers grouped by question: a generic
  :class:`~scorer.training.data.TrainingSet` for the product's reviewer-graded answers and a
  benchmark-only loader for the Mohler ShortAnswerGrading v2.0 data set.
* :mod:`scorer.training.embed` — all-MiniLM-L6-v2 sentence embeddings on onnxruntime, from the
  same pinned int8 ONNX graph and tokenizer the Triton ``sentence_encoder`` model serves.
* :mod:`scorer.training.features` — the feature rows: core_rs text features, MiniLM similarities
  (plain and with the question's words demoted), label-free peer features and, when graded
  answers of the same question exist, kNN-weighted grades.
* :mod:`scorer.training.model` — regressor selection by grouped cross-validation, the ONNX
  export and the versioned artefact directory.
* :mod:`scorer.training.calibration` — the calibrated confidence (probability that the score is
  within a tolerance of a human's), expected calibration error and the reliability diagram.
* :mod:`scorer.training.protocol` — leave-one-assignment-out evaluation used by the CLI and by
  ``benchmarks/mohler/run.py``.
* :mod:`scorer.training.train` — evaluate, fit on everything, export the versioned artefact.
* :mod:`scorer.training.inference` — the reference scoring path with an artefact (guards,
  injection scan, features, ONNX, confidence, optional LLM judge, evidence), which the serving
  integration reproduces through Triton.

Product rules used here live beside the service: :mod:`scorer.guards` (non-answers and prompt
injection) and :mod:`scorer.judge` (the optional LLM judge).

Run ``python -m scorer.training train --data mohler --out DIR`` to train and evaluate (or
``--data graded.jsonl`` for product data; see :func:`scorer.training.data.load_jsonl`).
"""
