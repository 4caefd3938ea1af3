"""Plausible candidate answers and think times for load tests, shared by the REST and gRPC users.

Answers vary from call to call on purpose: the scorer caches finished scores in Redis
by item and answer, so a load test that sent the same few strings would measure the
cache instead of the formula engine and the Triton models.
"""

from __future__ import annotations

import random
from typing import Any

FORMULA = "formula"
FREE_TEXT = "free_text"
MULTIPLE_CHOICE = "multiple_choice"
NUMERIC = "numeric"

# The REST API and the protos spell kinds as enum names; the load users speak in short names.
KIND_NAMES = {
    "QUESTION_KIND_FORMULA": FORMULA,
    "QUESTION_KIND_FREE_TEXT": FREE_TEXT,
    "QUESTION_KIND_MULTIPLE_CHOICE": MULTIPLE_CHOICE,
    "QUESTION_KIND_NUMERIC": NUMERIC,
}

_FUNCTIONS = ("SUM", "AVERAGE", "MAX", "MIN", "COUNT")
_OPENINGS = (
    "I would use",
    "The best approach is",
    "In Excel I normally rely on",
    "My first step would be",
    "A good answer here is",
)
_MIDDLES = (
    "an absolute reference with dollar signs so the range stays fixed when the formula is copied",
    "a pivot table to summarise the rows by region and month without writing formulas",
    "XLOOKUP with an exact match because VLOOKUP breaks when a column is inserted",
    "data validation with a list so people cannot type values outside the allowed set",
    "conditional formatting to highlight duplicates before removing them",
    "TRIM and CLEAN to remove stray spaces and non-printing characters from imported text",
    "a named table so new rows are picked up by every formula automatically",
)
_ENDINGS = (
    "and then I check the totals against the source data.",
    "because it keeps the workbook easy to audit.",
    "which also makes the sheet faster to recalculate.",
    "so a reviewer can follow the logic later.",
    "and I document the assumption in a note next to it.",
)


def column_letter(index: int) -> str:
    """The spreadsheet name of a zero-based column index (0 -> A, 26 -> AA)."""
    name = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        name = chr(ord("A") + rest) + name
    return name


def formula_answer(rng: random.Random, rows: int, columns: int) -> str:
    """A formula over the question's sheet: an aggregate of one column plus a constant."""
    column = column_letter(rng.randrange(max(columns, 1)))
    last = max(rows, 2)
    return f"={rng.choice(_FUNCTIONS)}({column}2:{column}{last})+{rng.randrange(1000)}"


def free_text_answer(rng: random.Random) -> str:
    """Two or three sentences a candidate might write, rarely the same twice."""
    sentences = [
        f"{rng.choice(_OPENINGS)} {rng.choice(_MIDDLES)} {rng.choice(_ENDINGS)}"
        for _ in range(rng.randint(2, 3))
    ]
    return " ".join(sentences) + f" (case {rng.randrange(1_000_000)})"


def answer_for(kind: str, rng: random.Random, *, options: int = 0, rows: int = 0, columns: int = 0) -> str:
    """An answer to a question of ``kind``.

    Args:
        kind: :data:`FORMULA`, :data:`FREE_TEXT`, :data:`MULTIPLE_CHOICE` or :data:`NUMERIC`.
        rng: Source of randomness (one per user, so runs can be seeded).
        options: Multiple choice: how many options there are.
        rows: Formula: rows of the sample sheet.
        columns: Formula: columns of the sample sheet.

    Returns:
        A formula, free text, a zero-based option index as text, or a number.
    """
    if kind == FORMULA:
        return formula_answer(rng, rows, columns)
    if kind == MULTIPLE_CHOICE:
        return str(rng.randrange(max(options, 1)))
    if kind == NUMERIC:
        return f"{rng.uniform(-1000, 1000):,.2f}"
    return free_text_answer(rng)


def rest_answer(question: dict[str, Any], rng: random.Random) -> tuple[str, str]:
    """``(kind, answer)`` for a question as the REST API shows it."""
    kind = KIND_NAMES.get(question["kind"], "free_text")
    rows = (question.get("sheet") or {}).get("rows") or []
    return kind, answer_for(kind, rng, options=len(question.get("options") or []), rows=len(rows),
                            columns=len(rows[0]) if rows else 0)


def think(mean_s: float) -> float:
    """A think time around ``mean_s`` seconds: uniform over 0.5x-1.5x so users drift apart."""
    return random.uniform(0.5 * mean_s, 1.5 * mean_s) if mean_s > 0 else 0.0
