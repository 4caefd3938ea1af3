"""Loading graded answers: text cleaning, the JSONL format and the Mohler loader."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from scorer.training.data import TrainingSet, clean_text, load_jsonl, load_jsonl_files, natural_key


def test_clean_text_repairs_markup_and_double_encoding() -> None:
    assert clean_text("first<br>second<BR/>third") == "first second third"
    # "it’s" written as UTF-8, read as Windows-1252, written again as UTF-8:
    assert clean_text("it\u00e2\u20ac\u2122s") == "it's"
    assert clean_text("the \u00e2\u20ac\u0153do\u00e2\u20ac\u009d loop") == 'the "do" loop'
    assert clean_text("an array\u00e2\ufffd\ufffds size") == "an array's size"
    assert clean_text("  a &amp; b \n c ") == "a & b c"


def test_natural_key_keeps_ids_as_strings() -> None:
    ids = ["11.10", "11.2", "11.1", "2.1", "10.1"]
    assert sorted(ids, key=natural_key) == ["2.1", "10.1", "11.1", "11.2", "11.10"]


def test_jsonl_loader(tmp_path: Path) -> None:
    path = tmp_path / "set.jsonl"
    rows = [
        {"qid": "q1", "prompt": "What is A1?", "references": ["A cell"], "answers": [{"text": "a cell", "grade": 5}]},
        {
            "qid": "q2",
            "group": "g",
            "prompt": "Why $?",
            "references": ["It locks"],
            "criteria": [{"name": "lock", "terms": ["lock", "fix"], "weight": 2}],
            "answers": [{"text": "to lock", "grade": 4}],
        },
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    data = load_jsonl(path)
    assert data.name == "set" and len(data.answers) == 2
    assert data.questions["q1"].group == "q1" and data.questions["q2"].group == "g"
    assert data.questions["q2"].criteria == (("lock", ("lock", "fix"), 2.0),)
    assert data.content_hash() == load_jsonl(path).content_hash()
    assert data.subset(["q2"]).answers[0].text == "to lock"


def test_several_jsonl_files_train_as_one_set(tmp_path: Path) -> None:
    def write(name: str, qid: str, grade: float) -> Path:
        row = {"qid": qid, "prompt": "p", "references": ["r"], "answers": [{"text": f"{qid} answer", "grade": grade}]}
        (tmp_path / name).write_text(json.dumps(row) + "\n")
        return tmp_path / name

    first, second = write("bank.jsonl", "q1", 4), write("toy.jsonl", "q2", 1)
    merged = load_jsonl_files([first, second])
    assert merged.name == "bank+toy" and merged.groups() == ["q1", "q2"]
    assert [(a.qid, a.grade) for a in merged.answers] == [("q1", 4.0), ("q2", 1.0)]
    assert load_jsonl_files([first]).content_hash() == load_jsonl(first).content_hash()
    assert merged.content_hash() != load_jsonl_files([second, first]).content_hash()
    with pytest.raises(ValueError, match="q1"):
        load_jsonl_files([first, write("again.jsonl", "q1", 2)])


def test_grades_outside_the_scale_are_rejected() -> None:
    from scorer.training.data import GradedAnswer, Question

    q = Question("q", "q", "p", ("r",))
    with pytest.raises(ValueError, match="outside"):
        TrainingSet("x", {"q": q}, [GradedAnswer("q", "a", 6.0)], scale_max=5.0)


def test_excel_fixture_loads(excel_data: TrainingSet) -> None:
    assert len(excel_data.questions) == 6 and len(excel_data.answers) == 60


def test_mohler_loader_matches_the_notes(mohler: TrainingSet) -> None:
    grades = np.array([a.grade for a in mohler.answers])
    assert len(mohler.questions) == 81 and len(mohler.answers) == 2273
    assert grades.mean() == pytest.approx(4.18, abs=0.01) and grades.std() == pytest.approx(1.10, abs=0.01)
    assert mohler.groups() == [str(i) for i in range(1, 13)]
    # "11.10" and "11.1" are different questions with different references.
    assert "merge" in mohler.questions["11.10"].references[0]
    assert mohler.questions["11.1"].references[0] == "Function members and data members."
    assert not any("<br" in a.text.lower() or "\u00e2\u20ac" in a.text for a in mohler.answers)
