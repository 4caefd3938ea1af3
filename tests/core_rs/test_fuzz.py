"""Bounded random and malformed formulas through the Python API: a grade or a
typed error, never a crash, a hang or an untyped exception.

A seeded generator (no extra dependency) builds token soups, raw unicode,
huge and deeply nested inputs; the Rust side has the proptest counterpart
(core_rs/tests/fuzz.rs).
"""

from __future__ import annotations

import random
import time

import core_rs
from core_rs import CoreError, FormulaSyntaxError, LimitError, PreparedSheet

HEADER: list[core_rs.Cell] = ["Region", "Units"]
SHEET: list[list[core_rs.Cell]] = [HEADER] + [
    [["East", "West", "North"][i % 3], float(i * 7 % 11)] for i in range(20)
]
PIECES = [
    "SUM(", "SUMIFS(", "XLOOKUP(", "INDEX(", "MATCH(", "IF(", "IFERROR(", "FILTER(", "UNIQUE(", "SORT(",
    "LET(", "LAMBDA(", "INDIRECT(", "OFFSET(", "RAND(", "NOW(", "TEXT(", "A1", "B2:B21", "$A$2:$A$21",
    "A:A", "3:3", "Sheet2!A1", "XFD1048576", '"East"', '"*a?"', '"x', "1", "-1", "1E+308", "TRUE", "#N/A",
    "{1,2;3,4}", "(", ")", "{", "}", ",", ";", ":", "+", "-", "*", "/", "^", "&", "=", "<>", "%", "@", "#",
    "!", "$", " ", "é", "😀", "\u0000",
]
BUDGET_SECONDS = 5.0  # per formula; a formula costs microseconds to milliseconds


def _formulas(rng: random.Random, n: int) -> list[str]:
    out = []
    for _ in range(n):
        kind = rng.random()
        if kind < 0.6:
            out.append("".join(rng.choice(PIECES) for _ in range(rng.randrange(40))))
        elif kind < 0.8:
            out.append("".join(chr(rng.randrange(1, 0x2FFF)) for _ in range(rng.randrange(60))))
        elif kind < 0.9:
            out.append(rng.choice(["(", "SUM(", "{", "1+", "-", '"x', "é"]) * rng.randrange(1, 6000))
        else:
            depth = rng.randrange(1, 80)
            out.append("=" + "ABS(" * depth + "1" + ")" * depth)
    return out


def test_random_formulas_get_a_grade() -> None:
    sheet = PreparedSheet(SHEET, '=SUMIFS(B2:B21,A2:A21,"East")', variant_seed=1, variants=2)
    for formula in _formulas(random.Random(20240115), 400):
        start = time.perf_counter()
        grade = sheet.grade(formula)
        assert time.perf_counter() - start < BUDGET_SECONDS, formula
        assert len(grade.features) == len(core_rs.FEATURE_NAMES)
        if not grade.parses:
            assert grade.error and not grade.values_match
            assert grade.error_position is None or 0 <= grade.error_position <= len(formula)


def test_random_formulas_raise_only_typed_errors() -> None:
    for formula in _formulas(random.Random(7), 150):
        try:
            value = core_rs.evaluate_formula(SHEET, formula)
        except FormulaSyntaxError as exc:
            assert exc.position is None or 0 <= exc.position <= len(formula)
        except LimitError:
            pass
        else:
            assert value and value[0], formula
        # CoreError other than these two (an engine failure or a caught panic) fails the test.


def test_huge_inputs_are_refused_quickly() -> None:
    start = time.perf_counter()
    for formula in ["=" + "1+" * 5000 + "1", "SUM(A1," * 1500, "=" + "(" * 10_000, '="' + "é" * 10_000 + '"']:
        try:
            core_rs.evaluate_formula(SHEET, formula)
        except (LimitError, FormulaSyntaxError):
            continue
        raise AssertionError(f"accepted {formula[:20]}...")
    assert time.perf_counter() - start < 2.0
    assert issubclass(LimitError, CoreError)
