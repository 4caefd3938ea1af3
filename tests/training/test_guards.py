"""Guards: non-answers are zeroed with a reason; real answers, however short, are not."""

from __future__ import annotations

import pytest

from scorer.guards import (
    COPIED_QUESTION,
    EMPTY,
    GIBBERISH,
    NO_ANSWER,
    NON_ENGLISH,
    OFF_TOPIC,
    check_answer,
    scan_injection,
)
from scorer.training.data import TrainingSet

PROMPT = "What does the VLOOKUP function do?"
REFERENCES = ["VLOOKUP searches for a value in the first column of a table and returns a value in the same row."]


@pytest.mark.parametrize(
    ("answer", "code"),
    [
        ("", EMPTY),
        ("   \n\t", EMPTY),
        ("idk", NO_ANSWER),
        ("Fine.", NO_ANSWER),
        ("I don't know", NO_ANSWER),
        ("not answered", NO_ANSWER),
        ("What does the VLOOKUP function do?", COPIED_QUESTION),
        ("what does vlookup do", COPIED_QUESTION),
        ("asdf jkl qwrtz xkcdq", GIBBERISH),
        ("sdfkj weoiru zxcmvn qpwoei", GIBBERISH),
        ("!!! ??? ...", GIBBERISH),
        ("La función BUSCARV busca un valor en la primera columna de una tabla y devuelve un valor", NON_ENGLISH),
        ("Die Funktion SVERWEIS sucht einen Wert in der ersten Spalte und gibt einen Wert zurück", NON_ENGLISH),
        ("函数在表格的第一列中查找值并返回同一行的值", NON_ENGLISH),
        ("Функция ищет значение в первом столбце таблицы", NON_ENGLISH),
    ],
)
def test_non_answers_are_zeroed_with_a_reason(answer: str, code: str) -> None:
    verdict = check_answer(answer, PROMPT, REFERENCES, similarity=0.5)
    assert verdict is not None and verdict.code == code
    assert verdict.signal == f"guard:{code}"
    assert verdict.reason and not any(w in verdict.reason.lower() for w in ("good", "great", "well done", "excellent"))


@pytest.mark.parametrize(
    "answer",
    [
        "It looks up a value in the first column and returns the matching cell from another column.",
        "VLOOKUP(A2, B:C, 2, FALSE)",
        "searches leftmost col, returns same row",
        "vertical lookup",
        "O(log n)",
        "logn",
        "It finds stuff in a tbl",  # abbreviations are not gibberish
        "The VLOOKUP function returns a value.",  # reuses question words but adds an answer
    ],
)
def test_real_answers_pass(answer: str) -> None:
    assert check_answer(answer, PROMPT, REFERENCES, similarity=0.5) is None


def test_off_topic_needs_low_similarity_length_and_no_shared_words() -> None:
    holiday = "My favourite holiday was a trip to the mountains with my family last summer."
    assert check_answer(holiday, PROMPT, REFERENCES, similarity=0.04).code == OFF_TOPIC
    assert check_answer(holiday, PROMPT, REFERENCES, similarity=0.3) is None
    assert check_answer(holiday, PROMPT, REFERENCES, similarity=None) is None  # no similarity, no claim
    assert check_answer("Paris is lovely.", PROMPT, REFERENCES, similarity=0.02) is None  # too short to judge


def test_none_is_an_answer_when_the_reference_says_so() -> None:
    assert check_answer("none", "What does a Sub return?", ["None: a Sub returns no value."]) is None


def test_guards_never_zero_a_mohler_answer_a_human_gave_credit(mohler: TrainingSet) -> None:
    zeroed = []
    for answer in mohler.answers:
        q = mohler.questions[answer.qid]
        if check_answer(answer.text, q.prompt, q.references):
            zeroed.append(answer.grade)
    assert zeroed and max(zeroed) == 0.0


def test_injection_scan_leaves_real_answers_alone(mohler: TrainingSet) -> None:
    assert not [a.text for a in mohler.answers if scan_injection(a.text).found]


@pytest.mark.parametrize(
    "answer",
    [
        "AGGREGATE can ignore errors and hidden rows in the range above.",
        "COUNTIFS will ignore criteria that are blank.",
        "Use IFERROR to ignore the #N/A values from the previous step.",
        "The score column holds values from 1 to 5; AVERAGE gives the mean score.",
        '=IF(B2>=5, "pass", "fail")',
        "As a rule, the model in the data sheet must be refreshed before the pivot table.",
        # Cell references are not leetspeak: "as A1" is not "as ai" (an address to an AI grader).
        "When you copy a formula, a plain address such as A1 moves along with it, whereas $A$1 never moves.",
        "Use a reference such as $B$2 or a range such as A1:C10 inside SUM.",
    ],
)
def test_injection_scan_leaves_excel_answers_alone(answer: str) -> None:
    assert not scan_injection(answer).found
