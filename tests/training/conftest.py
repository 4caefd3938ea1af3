"""Fixtures for the training tests: a small hand-graded Excel data set and a model trained on it.

The data set (``scorer/training/datasets/excel_toy_graded.jsonl``, 60 answers to six short
questions) was written and graded for these tests, and the shipped model also trains on it (see
``GRADING.md`` there); it is not the Mohler benchmark data, which tests only read in place when
``../shared`` has it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from scorer.training.data import TrainingSet, default_mohler_dir, load_jsonl, load_mohler
from scorer.training.embed import Encoder

EXCEL_DATA = Path(__file__).resolve().parents[2] / "scorer" / "training" / "datasets" / "excel_toy_graded.jsonl"


@pytest.fixture(scope="session")
def excel_data() -> TrainingSet:
    return load_jsonl(EXCEL_DATA)


@pytest.fixture(scope="session")
def encoder() -> Encoder:
    # One thread: the test run shares two cores with everything else.
    return Encoder(threads=1)


@pytest.fixture(scope="session")
def artefact(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base-feature model trained through the CLI (so the CLI path is exercised once)."""
    from scorer.training.__main__ import main

    out = tmp_path_factory.mktemp("models")
    assert main(["train", "--data", str(EXCEL_DATA), "--out", str(out), "--no-cache"]) == 0
    (version,) = (out / "answer_scorer_text").iterdir()
    return version


@pytest.fixture(scope="session")
def mohler() -> TrainingSet:
    if not (default_mohler_dir() / "data").is_dir():
        pytest.skip("Mohler data set not present (../shared/data/mohler-asag-v2)")
    return load_mohler()
