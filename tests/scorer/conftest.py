"""Fixtures: a real tritonserver on the project's model repository, and scorer items."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from stack.backing import TritonServer
from stack.runner import MODEL_REPOSITORY
from xlinterview.v1 import common_pb2


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    server = TritonServer(MODEL_REPOSITORY, Path(tmp_path_factory.mktemp("triton")))
    server.start()
    yield server
    server.stop()


def _row(*values: float | str | None) -> common_pb2.SheetRow:
    cells = []
    for value in values:
        if value is None:
            cells.append(common_pb2.CellValue())
        elif isinstance(value, str):
            cells.append(common_pb2.CellValue(text=value))
        else:
            cells.append(common_pb2.CellValue(number=float(value)))
    return common_pb2.SheetRow(cells=cells)


@pytest.fixture
def formula_item() -> common_pb2.ScoringItem:
    sheet = common_pb2.SampleSheet(
        name="Sales",
        rows=[
            _row("Region", "Rep", "Units"),
            _row("East", "Ana", 10),
            _row("West", "Ben", 20),
            _row("East", "Cy", 5),
            _row("North", "Di", 7),
        ],
    )
    return common_pb2.ScoringItem(
        item_id="sumifs-east",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_FORMULA,
        prompt="Total units sold in the East region.",
        formula=common_pb2.FormulaSpec(sheet=sheet, reference_formula='=SUMIFS(C2:C5,A2:A5,"East")'),
    )


@pytest.fixture
def text_item() -> common_pb2.ScoringItem:
    return common_pb2.ScoringItem(
        item_id="abs-ref",
        item_version=2,
        kind=common_pb2.QUESTION_KIND_FREE_TEXT,
        prompt="Explain absolute versus relative references.",
        rubric=common_pb2.TextRubric(
            reference_answers=[
                "A relative reference like A1 changes when the formula is copied; an absolute reference like "
                "$A$1 stays fixed because the dollar sign locks the row and column."
            ],
            criteria=[
                common_pb2.RubricCriterion(name="relative references shift", terms=["relative", "changes", "shifts"], weight=1),
                common_pb2.RubricCriterion(name="absolute references stay fixed", terms=["absolute", "fixed", "locked"], weight=1),
                common_pb2.RubricCriterion(name="dollar sign syntax", terms=["$", "dollar"], weight=1),
            ],
        ),
    )


@pytest.fixture
def choice_item() -> common_pb2.ScoringItem:
    return common_pb2.ScoringItem(
        item_id="pivot-choice",
        item_version=1,
        kind=common_pb2.QUESTION_KIND_MULTIPLE_CHOICE,
        prompt="Which tool summarises thousands of rows by category fastest?",
        choice=common_pb2.ChoiceSpec(options=["VLOOKUP", "PivotTable", "Goal Seek"], correct_index=1),
    )
