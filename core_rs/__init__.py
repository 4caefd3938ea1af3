"""Typed Python API of the Rust core: formula grading and text features.

The work is done by the private extension module :mod:`core_rs._native`
(Rust, PyO3, the IronCalc spreadsheet engine); this package re-exports it
with documentation. Heavy calls release the GIL.

The adaptive-testing engine is :class:`CatBank` (GRM/2PL items on a quadrature
grid), :class:`CatSession` (EAP ability, max-information selection with blueprint
balancing, stop rules) and :class:`ExposureControl` (item-eligibility exposure
control); see ``core_rs/src/cat.rs``.

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
    CatBank,
    CatSession,
    CoreError,
    FormulaGrade,
    FormulaReference,
    FormulaSyntaxError,
    LimitError,
    PreparedSheet,
    SheetError,
    ExposureControl,
    TextFeatures,
)
from core_rs import _native

Cell: TypeAlias = float | str | bool | None
"""A sheet cell. Formula results use the same type; errors are strings such as "#DIV/0!"."""

Criterion: TypeAlias = tuple[str, Sequence[str], float]
"""A rubric criterion: (name, terms, weight). Terms may be multi-word phrases."""

__all__ = [
    "FEATURE_NAMES",
    "CatBank",
    "CatSession",
    "Cell",
    "CoreError",
    "Criterion",
    "ExposureControl",
    "FormulaGrade",
    "FormulaReference",
    "FormulaSyntaxError",
    "LimitError",
    "PreparedSheet",
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
        LimitError: The formula is longer than 2000 characters, nested more
            than 64 levels deep, or recursive (passes a function to a LAMBDA of
            its own).
        SheetError: The sheet is too big or holds an unsupported cell type.
        CoreError: Any other failure of the engine.
    """
    return _native.evaluate_formula(sheet, formula)


def grade_formula(
    sheet: Sequence[Sequence[Cell]],
    reference: str,
    candidate: str,
    *,
    variant_seed: int | None = None,
    variants: int = 4,
) -> FormulaGrade:
    """Grades a candidate formula against the reference formula.

    Both are evaluated on ``sheet`` and on ``variants`` hidden variants of it
    (numbers perturbed, text keys renamed, rows shuffled; see
    :class:`PreparedSheet`). Values match when the shapes agree, numbers agree
    to 15 significant digits and text agrees ignoring case; ``values_match``
    requires a match on the sample *and* on every variant, so a typed-in
    constant or a formula that is right only by accident fails.
    ``hardcoded`` is set when the candidate is right on the sample but
    references no cell (while the reference does), or carries a literal equal
    to the expected result and fails a variant.

    Args:
        sheet: Rows of cells laid out from A1 (see :func:`evaluate_formula`).
        reference: The model answer.
        candidate: The candidate's formula. A bad candidate never raises: the
            grade has ``parses=False`` and ``error``/``error_position`` set.
        variant_seed: Seed of the variants, stored with the question; None
            derives one from the sheet and the reference.
        variants: How many variants to check (0 to 16); a variant identical to
            the sample is skipped.

    Returns:
        The grade, including the ``features`` vector (see ``FEATURE_NAMES``).

    Raises:
        FormulaSyntaxError: The *reference* does not parse.
        LimitError: The *reference* is too long or nested too deep.
        SheetError: The sheet is too big, holds an unsupported cell type, or
            more than 16 variants are asked for.
        CoreError: Any other failure of the engine.
    """
    return _native.grade_formula(sheet, reference, candidate, variant_seed=variant_seed, variants=variants)


def grade_formulas(
    sheet: Sequence[Sequence[Cell]],
    reference: str,
    candidates: Sequence[str],
    *,
    variant_seed: int | None = None,
    variants: int = 4,
) -> list[FormulaGrade]:
    """Grades many candidates against one reference.

    The sheet, its variants and the reference are prepared once; runs with the
    GIL released. Equivalent to calling :func:`grade_formula` for each
    candidate. To grade answers to the same question over time, build a
    :class:`PreparedSheet` once and keep it.

    Args:
        sheet: Rows of cells laid out from A1.
        reference: The model answer.
        candidates: The formulas to grade.
        variant_seed: Seed of the variants (see :func:`grade_formula`).
        variants: How many variants to check.

    Returns:
        One grade per candidate, in order.

    Raises:
        FormulaSyntaxError: The reference does not parse.
        LimitError: The reference is too long or nested too deep.
        SheetError: The sheet is too big or holds an unsupported cell type.
        CoreError: Any other failure of the engine.
    """
    return _native.grade_formulas(sheet, reference, candidates, variant_seed=variant_seed, variants=variants)


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
