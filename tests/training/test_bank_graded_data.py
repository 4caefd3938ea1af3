"""The product's graded free-text answers: still the bank's items, grades on the scale, model trained on them.

A bank edit (a reworded prompt, a new reference answer, a re-weighted criterion) changes what a
grade was given against; these tests make such an edit fail here until the data set is updated
(and the answers regraded where the edit changes what a good answer is), and then fail again
until the served model is retrained on the updated file. A new bank item without graded answers
is not an error: the model is evaluated on unseen questions, so it scores new items as well.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from orchestrator.bank import FreeTextItem, load_bank
from orchestrator.settings import DEFAULT_BANK_DIR
from scorer.training.data import load_jsonl, load_jsonl_files
from stack.runner import served_version

DATASETS = Path(__file__).resolve().parents[2] / "scorer" / "training" / "datasets"
DATA = DATASETS / "excel_bank_graded.jsonl"
#: What the served model trains on, in the CLI's --data order (GRADING.md says why the toy set too).
TRAINING_FILES = (DATA, DATASETS / "excel_toy_graded.jsonl")


def _records() -> list[dict[str, Any]]:
    return [json.loads(line) for line in DATA.read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.fixture(scope="module")
def bank() -> dict[str, FreeTextItem]:
    return {item.id: item for item in load_bank(DEFAULT_BANK_DIR) if isinstance(item, FreeTextItem)}


def test_every_record_is_a_bank_item_as_it_stands(bank: dict[str, FreeTextItem]) -> None:
    records = _records()
    assert len({r["qid"] for r in records}) == len(records)
    for record in records:
        item = bank.get(str(record["qid"]))
        assert item is not None, f"{record['qid']} is not a free-text item of the bank any more"
        assert record["prompt"] == item.prompt, f"{item.id}: the prompt changed in the bank"
        assert record["references"] == list(item.rubric.reference_answers), f"{item.id}: the references changed"
        assert [(c["name"], c["terms"], c["weight"]) for c in record["criteria"]] == [
            (c.name, list(c.terms), c.weight) for c in item.rubric.criteria
        ], f"{item.id}: the rubric criteria changed"


def test_grades_are_half_points_on_the_scale_and_span_it() -> None:
    for record in _records():
        grades = [a["grade"] for a in record["answers"]]
        texts = [a["text"] for a in record["answers"]]
        assert len(grades) >= 10 and len(set(texts)) == len(texts), record["qid"]
        assert all(isinstance(g, int | float) and 0 <= g <= 5 and float(2 * g).is_integer() for g in grades), record["qid"]
        # Every question needs both ends of the scale, or it teaches nothing about the other end.
        assert min(grades) <= 1 and max(grades) >= 4.5, record["qid"]
    data = load_jsonl(DATA)  # the loader the training CLI uses accepts it as it is
    assert len(data.questions) == len(_records()) and data.scale_max == 5.0


def test_the_served_text_model_was_trained_on_these_files(bank: dict[str, FreeTextItem]) -> None:
    training = load_jsonl_files(TRAINING_FILES)
    assert set(load_jsonl(DATA).questions) <= set(bank) and not set(load_jsonl(TRAINING_FILES[1]).questions) & set(bank)
    metadata = json.loads((served_version("answer_scorer_text") / "metadata.json").read_text(encoding="utf-8"))
    assert metadata["data"]["name"] == training.name
    assert metadata["data"]["sha256"] == training.content_hash(), "retrain: the graded answers changed since"
