"""Cross-check of core_rs against an independent engine (formualizer) on a corpus.

Every formula of ``crosscheck_corpus.yaml`` is evaluated by core_rs and by
formualizer (a separate Rust Excel engine, from PyPI) on the same sheet with
the same fixed clock. Results are compared the way grading compares them (15
significant digits, text ignoring case, same spill shape). Every disagreement
must be listed, with its explanation, in ``docs/formula-crosscheck.md``; the
test fails on an unexplained disagreement and on a listed one that no longer
occurs, so the list stays true.
"""

from __future__ import annotations

import datetime
import re
from pathlib import Path
from typing import Any

import formualizer as fz  # the oracle: a dev dependency (pinned in pyproject.toml)
import yaml  # type: ignore[import-untyped]

import core_rs

ROOT = Path(__file__).resolve().parents[2]
CORPUS = Path(__file__).with_name("crosscheck_corpus.yaml")
EXPLAINED = ROOT / "docs" / "formula-crosscheck.md"
# The clock core_rs fixes for NOW()/TODAY() (core_rs/src/engine.rs).
FIXED_NOW = datetime.datetime(2024, 1, 15, 9, 30, tzinfo=datetime.timezone.utc)
EXCEL_EPOCH = datetime.datetime(1899, 12, 30)
ERROR_CODES = {
    "Div": "#DIV/0!",
    "Na": "#N/A",
    "Value": "#VALUE!",
    "Ref": "#REF!",
    "Name": "#NAME?",
    "Num": "#NUM!",
    "Null": "#NULL!",
    "Spill": "#SPILL!",
    "Calc": "#CALC!",
    "Circ": "#CIRC!",
}
# Where the formula goes: the same cell core_rs uses (BH1), so ROW()/COLUMN() agree.
ROW, COLUMN = 1, 60


def _cell(value: Any) -> core_rs.Cell:
    """Converts a formualizer value to core_rs's cell convention."""
    if isinstance(value, dict) and value.get("type") == "Error":
        return ERROR_CODES.get(str(value.get("kind")), f"#{value.get('kind')}")
    if isinstance(value, datetime.datetime):
        return (value.replace(tzinfo=None) - EXCEL_EPOCH) / datetime.timedelta(days=1)
    if isinstance(value, datetime.date):
        return float((value - EXCEL_EPOCH.date()).days)
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value  # type: ignore[no-any-return]


def _oracle(sheet: list[list[core_rs.Cell]], formula: str, shape: tuple[int, int]) -> list[list[core_rs.Cell]]:
    """Evaluates with formualizer on a fresh workbook; reads the spill over ``shape``."""
    wb = fz.Workbook()
    wb.add_sheet("Sheet1")
    wb.set_deterministic_clock(FIXED_NOW)
    for r, row in enumerate(sheet):
        for c, value in enumerate(row):
            if value is not None:
                wb.set_value("Sheet1", r + 1, c + 1, value)
    try:
        wb.set_formula("Sheet1", ROW, COLUMN, formula)
        anchor = _cell(wb.evaluate_cell("Sheet1", ROW, COLUMN))
    except Exception as exc:  # the oracle refusing a formula is a disagreement to explain
        return [[f"oracle error: {type(exc).__name__}"]]
    rows, cols = shape
    grid = [[_cell(wb.get_value("Sheet1", ROW + r, COLUMN + c)) for c in range(cols)] for r in range(rows)]
    grid[0][0] = anchor
    # A spill larger than core_rs's shows up as a value just outside it.
    if wb.get_value("Sheet1", ROW + rows, COLUMN) is not None or wb.get_value("Sheet1", ROW, COLUMN + cols) is not None:
        grid.append(["(oracle spills further)"])
    return grid


def _round15(x: float) -> float:
    return float(f"{x:.14e}") if x else 0.0


def _same(a: core_rs.Cell, b: core_rs.Cell) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, float) and isinstance(b, float):
        return _round15(a) == _round15(b)
    if isinstance(a, str) and isinstance(b, str):
        return a.lower() == b.lower()
    # An empty result reads as 0 in a formula cell.
    return {a, b} <= {None, 0.0}


def _agree(mine: list[list[core_rs.Cell]], theirs: list[list[core_rs.Cell]]) -> bool:
    return len(mine) == len(theirs) and all(
        len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y)) for x, y in zip(mine, theirs)
    )


def _explained() -> dict[str, str]:
    """The ids listed in the table of docs/formula-crosscheck.md, with their reason."""
    listed = {}
    for line in EXPLAINED.read_text(encoding="utf-8").splitlines():
        match = re.match(r"^\|\s*(f\d{3})\s*\|.*\|\s*([^|]+?)\s*\|\s*$", line)
        if match:
            listed[match.group(1)] = match.group(2)
    return listed


def disagreements() -> list[tuple[str, str, list[list[core_rs.Cell]], list[list[core_rs.Cell]]]]:
    """Every corpus formula on which core_rs and formualizer differ."""
    corpus = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    sheet: list[list[core_rs.Cell]] = [
        [float(v) if isinstance(v, int) and not isinstance(v, bool) else v for v in row] for row in corpus["sheet"]
    ]
    prepared = core_rs.PreparedSheet(sheet, "=1", variants=0)
    out = []
    for entry in corpus["formulas"]:
        mine = prepared.evaluate(entry["formula"])
        theirs = _oracle(sheet, entry["formula"], (len(mine), len(mine[0])))
        if not _agree(mine, theirs):
            out.append((entry["id"], entry["formula"], mine, theirs))
    return out


def test_corpus_covers_the_interview_function_set() -> None:
    corpus = yaml.safe_load(CORPUS.read_text(encoding="utf-8"))
    formulas = [e["formula"] for e in corpus["formulas"]]
    assert len(formulas) >= 300 and len({e["id"] for e in corpus["formulas"]}) == len(formulas)
    text = " ".join(formulas)
    for function in ("SUMIFS", "COUNTIFS", "AVERAGEIF", "VLOOKUP", "INDEX", "MATCH", "XLOOKUP", "IFERROR",
                     "FILTER", "UNIQUE", "SUMPRODUCT", "TEXT", "ROUND", "SORT", "IFS", "TEXTJOIN"):
        assert function + "(" in text, function
    assert "*" in text and "?" in text  # wildcards


def test_every_disagreement_is_explained() -> None:
    found = {fid: (formula, mine, theirs) for fid, formula, mine, theirs in disagreements()}
    listed = _explained()
    unexplained = {fid: found[fid] for fid in sorted(set(found) - set(listed))}
    stale = sorted(set(listed) - set(found))
    assert not unexplained, "unexplained disagreements (add them to docs/formula-crosscheck.md):\n" + "\n".join(
        f"| {fid} | `{f}` | {m} | {t} |" for fid, (f, m, t) in unexplained.items()
    )
    assert not stale, f"listed in docs/formula-crosscheck.md but no longer disagreeing: {stale}"
