"""Typed Python API of the Rust core: formula grading and text features.

The work is done by the private extension module :mod:`core_rs._native`
(Rust, PyO3, the IronCalc spreadsheet engine); this package re-exports it
with documentation. Heavy calls release the GIL.

Example:
    >>> sheet = [["Region", "Amount"], ["East", 10.0], ["West", 20.0]]
    >>> evaluate_formula(sheet, '=SUMIFS(B2:B3, A2:A3, "East")')
    [[10.0]]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

from core_rs._native import (
    FEATURE_NAMES,
    CoreError,
    FormulaGrade,
    FormulaSyntaxError,
    LimitError,
    SheetError,
    TextFeatures,
)
from core_rs import _native

Cell: TypeAlias = float | str | bool | None
"""A sheet cell. Formula results use the same type; errors are strings such as "#DIV/0!"."""

Criterion: TypeAlias = tuple[str, Sequence[str], float]
"""A rubric criterion: (name, terms, weight). Terms may be multi-word phrases."""

__all__ = [
    "FEATURE_NAMES",
    "Cell",
    "CoreError",
    "Criterion",
    "FormulaGrade",
    "FormulaSyntaxError",
    "LimitError",
    "SheetError",
    "TextFeatures",
    "evaluate_formula",
    "grade_formula",
    "grade_formulas",
    "text_features",
    "text_features_batch",
]


def evaluate_formula(sheet: Sequence[Sequence[Cell]], formula: str) -> list[list[Cell]]:
    """Evaluates an Excel formula on a sheet.

    Args:
        sheet: Rows of cells laid out from A1 (``sheet[0][0]`` is A1); at most
            200 rows by 50 columns. Rows may have different lengths.
        formula: The formula, with or without the leading ``=``.

    Returns:
        The result as rows of cells: a scalar is ``[[value]]``; a dynamic array
        (FILTER, UNIQUE, SORT, a bare range, ...) spills into several rows or
        columns (read back up to 1000 rows by 100 columns).

    Raises:
        FormulaSyntaxError: The formula does not parse (``.position`` is the
            char offset of the error in ``formula``).
        LimitError: The formula is longer than 2000 characters or nested more
            than 64 levels deep.
        SheetError: The sheet is too big or holds an unsupported cell type.
        CoreError: Any other failure of the engine.
    """
    return _native.evaluate_formula(sheet, formula)


def grade_formula(sheet: Sequence[Sequence[Cell]], reference: str, candidate: str) -> FormulaGrade:
    """Grades a candidate formula against the reference formula.

    Both are evaluated on ``sheet``; values match when the shapes agree,
    numbers agree to 15 significant digits and text agrees ignoring case.
    ``hardcoded`` is set when the candidate references no cell yet yields the
    expected value (and the reference does read the sheet).

    Args:
        sheet: Rows of cells laid out from A1 (see :func:`evaluate_formula`).
        reference: The model answer.
        candidate: The candidate's formula. A bad candidate never raises: the
            grade has ``parses=False`` and ``error``/``error_position`` set.

    Returns:
        The grade, including the ``features`` vector (see ``FEATURE_NAMES``).

    Raises:
        FormulaSyntaxError: The *reference* does not parse.
        LimitError: The *reference* is too long or nested too deep.
        SheetError: The sheet is too big or holds an unsupported cell type.
        CoreError: Any other failure of the engine.
    """
    return _native.grade_formula(sheet, reference, candidate)


def grade_formulas(
    sheet: Sequence[Sequence[Cell]], reference: str, candidates: Sequence[str]
) -> list[FormulaGrade]:
    """Grades many candidates against one reference.

    The sheet and the reference are prepared once; runs with the GIL released.
    Equivalent to calling :func:`grade_formula` for each candidate.

    Args:
        sheet: Rows of cells laid out from A1.
        reference: The model answer.
        candidates: The formulas to grade.

    Returns:
        One grade per candidate, in order.

    Raises:
        FormulaSyntaxError: The reference does not parse.
        LimitError: The reference is too long or nested too deep.
        SheetError: The sheet is too big or holds an unsupported cell type.
        CoreError: Any other failure of the engine.
    """
    return _native.grade_formulas(sheet, reference, candidates)


def text_features(
    answer: str, references: Sequence[str], criteria: Sequence[Criterion]
) -> TextFeatures:
    """Computes the features of a free-text answer.

    Text is lower-cased and split into Unicode word tokens; terms may be
    phrases (matched as token sequences) and also match a simple plural or
    singular form. Runs with the GIL released.

    Args:
        answer: The candidate's answer.
        references: Model answers; recall and length use the best-recalled one.
        criteria: Rubric criteria ``(name, terms, weight)``; a criterion is hit
            when any of its terms occurs in the answer.

    Returns:
        The features, including the ``features`` vector (see ``FEATURE_NAMES``).
    """
    return _native.text_features(answer, references, criteria)


def text_features_batch(
    answers: Sequence[str], references: Sequence[str], criteria: Sequence[Criterion]
) -> list[TextFeatures]:
    """Computes :func:`text_features` for many answers at once.

    Args:
        answers: The answers to score.
        references: Model answers.
        criteria: Rubric criteria ``(name, terms, weight)``.

    Returns:
        One result per answer, in order.
    """
    return _native.text_features_batch(answers, references, criteria)
