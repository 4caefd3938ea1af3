"""The question bank: YAML files validated into typed items, and their two projections.

Each item is written once, in ``orchestrator/bank/*.yaml``, without a version: the
database versions items (see :func:`orchestrator.db.Database.import_items`). An item
maps to a :class:`common_pb2.ScoringItem` for the scorer (with the reference) and to an
:class:`orchestrator_pb2.Question` for the candidate (never with the reference).

A YAML file holds one item (a mapping with ``id``) or several (``items: [...]``).
Files are read in file-name order and items in file order; that order is the
interview's order until an adaptive engine chooses items.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, StrictBool, TypeAdapter, ValidationError, field_validator, model_validator

from common.numeric import PERCENT_UNIT, NotANumber, ParsedNumber, format_decimal, parse_number
from xlinterview.v1 import common_pb2, orchestrator_pb2

MAX_SHEET_ROWS = 200
MAX_SHEET_COLUMNS = 26

# The YAML key that holds each kind's spec; also the shape stored in items.spec.
SPEC_KEY = {"formula": "formula", "free_text": "rubric", "multiple_choice": "choice", "numeric": "numeric"}

KIND_TO_PROTO = {
    "formula": common_pb2.QUESTION_KIND_FORMULA,
    "free_text": common_pb2.QUESTION_KIND_FREE_TEXT,
    "multiple_choice": common_pb2.QUESTION_KIND_MULTIPLE_CHOICE,
    "numeric": common_pb2.QUESTION_KIND_NUMERIC,
}

_ID_PATTERN = r"^[a-z0-9][a-z0-9_.-]{0,63}$"

MIN_DIFFICULTY, MAX_DIFFICULTY, DEFAULT_DIFFICULTY = 1, 5, 3

# StrictBool first: otherwise pydantic would coerce YAML true/false into 1.0/0.0.
Cell = StrictBool | float | str | None


class BankError(ValueError):
    """The question bank cannot be loaded; the message names the file and field."""


class _Model(BaseModel):
    # Unknown keys are rejected so a misspelt field fails loudly instead of vanishing.
    model_config = ConfigDict(extra="forbid", frozen=True)


class Sheet(_Model):
    """A sample worksheet laid out from A1; ``rows[0]`` is the header row."""

    name: str = Field(default="Sheet1", min_length=1, max_length=31)
    rows: list[list[Cell]] = Field(min_length=2, max_length=MAX_SHEET_ROWS)

    @model_validator(mode="after")
    def _check_layout(self) -> Sheet:
        header = self.rows[0]
        if not header or len(header) > MAX_SHEET_COLUMNS:
            raise ValueError(f"the header row needs 1..{MAX_SHEET_COLUMNS} cells")
        for col, cell in enumerate(header):
            if not isinstance(cell, str) or not cell.strip():
                raise ValueError(f"header cell {col + 1} must be non-empty text, got {cell!r}")
        for number, row in enumerate(self.rows[1:], start=2):
            if len(row) > len(header):
                raise ValueError(f"row {number} has {len(row)} cells, more than the header's {len(header)}")
        return self


class FormulaSpec(_Model):
    """A formula question: the sheet it runs on and a reference solution."""

    sheet: Sheet
    reference_formula: str = Field(min_length=2)

    @field_validator("reference_formula")
    @classmethod
    def _starts_with_equals(cls, value: str) -> str:
        value = value.strip()
        if not value.startswith("="):
            raise ValueError("must start with '=' like a formula typed into a cell")
        return value


class Criterion(_Model):
    """One concept a good free-text answer shows, with the words that show it.

    ``follow_up`` is the question asked when an answer misses this criterion (see
    :func:`follow_up_prompt`); without it a template built from ``name`` is asked.
    """

    name: str = Field(min_length=1)
    terms: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1)
    weight: float = Field(gt=0, le=1)
    follow_up: str | None = Field(default=None, min_length=10, max_length=1000)


class Rubric(_Model):
    """How a free-text answer is graded."""

    reference_answers: list[Annotated[str, Field(min_length=1)]] = Field(min_length=1, max_length=5)
    criteria: list[Criterion] = Field(min_length=1)

    @model_validator(mode="after")
    def _unique_names(self) -> Rubric:
        names = [c.name for c in self.criteria]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"criterion names must be unique; repeated: {', '.join(duplicates)}")
        return self


class Choice(_Model):
    """A multiple-choice question's options and the right one (zero-based)."""

    options: list[Annotated[str, Field(min_length=1)]] = Field(min_length=2, max_length=10)
    correct_index: int = Field(ge=0)

    @model_validator(mode="after")
    def _check(self) -> Choice:
        if len(set(self.options)) != len(self.options):
            raise ValueError("options must be distinct")
        if self.correct_index >= len(self.options):
            raise ValueError(f"correct_index {self.correct_index} is out of range for {len(self.options)} options")
        return self


class Numeric(_Model):
    """A numeric question's expected value and how far from it an answer may be.

    An answer is right when ``|answer - expected| <= max(absolute_tolerance,
    relative_tolerance * |expected|)``; with no tolerance only the exact value is.
    """

    # Strict: a quoted "12" is an authoring slip to report, not text to coerce.
    expected: float = Field(strict=True, allow_inf_nan=False)
    absolute_tolerance: float = Field(default=0.0, ge=0, strict=True, allow_inf_nan=False)
    relative_tolerance: float = Field(default=0.0, ge=0, lt=1, strict=True, allow_inf_nan=False)
    unit: str = Field(default="", max_length=20)
    decimals: int | None = Field(default=None, ge=0, le=10, strict=True)

    @field_validator("expected", "absolute_tolerance", "relative_tolerance", mode="before")
    @classmethod
    def _int_is_a_number(cls, value: Any) -> Any:
        # YAML reads 42 as an int; strict mode would refuse it, but bools must stay refused.
        return float(value) if isinstance(value, int) and not isinstance(value, bool) else value

    @field_validator("unit")
    @classmethod
    def _strip_unit(cls, value: str) -> str:
        return value.strip()

    @model_validator(mode="after")
    def _check(self) -> Numeric:
        if self.unit and any(ch.isdigit() for ch in self.unit):
            raise ValueError(f"unit {self.unit!r} must not contain digits: it would be read as part of the number")
        if self.decimals is not None and round(self.expected, self.decimals) != self.expected:
            raise ValueError(
                f"expected {self.expected!r} has more than the {self.decimals} decimals the candidate is asked for"
            )
        try:
            # What a candidate would type must read back as the expected value.
            parse_number(repr(self.expected), self.unit)
        except NotANumber as exc:
            raise ValueError(f"expected {self.expected!r} cannot be typed as an answer: {exc}") from None
        return self


class _ItemBase(_Model):
    id: str = Field(pattern=_ID_PATTERN)
    skill_area: str = Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")
    # 1 (easy) to 5 (hard): where the item's IRT parameters start before calibration.
    difficulty: int = Field(ge=MIN_DIFFICULTY, le=MAX_DIFFICULTY, strict=True)
    prompt: str = Field(min_length=10, max_length=4000)

    @field_validator("prompt")
    @classmethod
    def _strip(cls, value: str) -> str:
        return value.strip()

    def spec(self) -> _Model:
        """The kind-specific part, as stored in ``items.spec``."""
        return getattr(self, SPEC_KEY[self.kind])  # type: ignore[attr-defined]

    def content(self) -> dict[str, Any]:
        """Everything that defines this item's version: a change here is a new version."""
        spec = self.spec().model_dump(mode="json")
        for criterion in spec.get("criteria", ()):
            # Left out when unauthored, so adding the optional field to the schema did
            # not turn every stored free-text item into a changed one (a new version).
            if criterion.get("follow_up") is None:
                criterion.pop("follow_up", None)
        return {
            "kind": self.kind,  # type: ignore[attr-defined]
            "skill_area": self.skill_area,
            "difficulty": self.difficulty,
            "prompt": self.prompt,
            "spec": spec,
        }


class FormulaItem(_ItemBase):
    kind: Literal["formula"]
    formula: FormulaSpec


class FreeTextItem(_ItemBase):
    kind: Literal["free_text"]
    rubric: Rubric


class ChoiceItem(_ItemBase):
    kind: Literal["multiple_choice"]
    choice: Choice


class NumericItem(_ItemBase):
    kind: Literal["numeric"]
    numeric: Numeric


BankItem = Annotated[Union[FormulaItem, FreeTextItem, ChoiceItem, NumericItem], Field(discriminator="kind")]
Item = FormulaItem | FreeTextItem | ChoiceItem | NumericItem
_ITEM_ADAPTER: TypeAdapter[Item] = TypeAdapter(BankItem)


@dataclass(frozen=True)
class ItemVersion:
    """One stored version of an item."""

    item: Item
    version: int

    @property
    def item_id(self) -> str:
        return self.item.id


def _format_errors(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = list(err["loc"])
        # Discriminated unions put the tag first ("formula", ...); the reader wrote no such key.
        if loc and loc[0] in SPEC_KEY and err["type"] != "union_tag_invalid":
            loc = loc[1:]
        field = ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in loc).replace(".[", "[")
        if err["type"] == "union_tag_invalid":
            field, message = "kind", f"must be one of {', '.join(SPEC_KEY)}"
        elif err["type"] == "union_tag_not_found":
            field, message = "kind", f"is required: one of {', '.join(SPEC_KEY)}"
        else:
            message = err["msg"]
        parts.append(f"field '{field or '<item>'}': {message}")
    return "; ".join(parts)


def parse_item(data: Any, source: str = "<memory>") -> Item:
    """Validates one item mapping.

    Args:
        data: The item as parsed from YAML.
        source: Where it came from, for the error message.

    Raises:
        BankError: Naming ``source`` and each invalid field.
    """
    if not isinstance(data, dict):
        raise BankError(f"{source}: an item must be a mapping, got {type(data).__name__}")
    try:
        return _ITEM_ADAPTER.validate_python(data)
    except ValidationError as exc:
        ident = data.get("id")
        label = f"{source} (item {ident!r})" if isinstance(ident, str) else source
        raise BankError(f"{label}: {_format_errors(exc)}") from None


def item_from_content(
    item_id: str, kind: str, skill_area: str, prompt: str, spec: dict[str, Any], difficulty: int | None = None
) -> Item:
    """Rebuilds an item from its stored columns (the inverse of :meth:`_ItemBase.content`).

    Versions stored before difficulty was authored have none; they read as
    :data:`DEFAULT_DIFFICULTY`.
    """
    if kind not in SPEC_KEY:
        raise BankError(f"stored item {item_id!r} has unknown kind {kind!r}")
    return parse_item(
        {
            "id": item_id,
            "kind": kind,
            "skill_area": skill_area,
            "difficulty": DEFAULT_DIFFICULTY if difficulty is None else difficulty,
            "prompt": prompt,
            SPEC_KEY[kind]: spec,
        },
        source=f"stored item {item_id!r}",
    )


def load_file(path: Path) -> list[Item]:
    """Reads one bank file: a single item mapping or ``items: [...]``.

    Raises:
        BankError: When the file is not valid YAML or an item is invalid.
    """
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise BankError(f"{path}: not valid YAML: {exc}") from None
    if isinstance(document, dict) and "items" in document:
        if set(document) != {"items"} or not isinstance(document["items"], list):
            raise BankError(f"{path}: a multi-item file must be exactly 'items: [ ... ]'")
        return [parse_item(entry, f"{path} items[{i}]") for i, entry in enumerate(document["items"])]
    return [parse_item(document, str(path))]


def load_bank(bank_dir: Path) -> list[Item]:
    """Loads every ``*.yaml``/``*.yml`` file under ``bank_dir`` in file-name order.

    Raises:
        BankError: When a file is invalid, an id repeats, or the bank is empty.
    """
    if not bank_dir.is_dir():
        raise BankError(f"{bank_dir}: question bank directory does not exist")
    files = sorted(p for p in bank_dir.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    items: list[Item] = []
    seen: dict[str, Path] = {}
    for path in files:
        for item in load_file(path):
            if item.id in seen:
                raise BankError(f"{path}: item id {item.id!r} is already used in {seen[item.id]}")
            seen[item.id] = path
            items.append(item)
    if not items:
        raise BankError(f"{bank_dir}: the question bank has no items")
    return items


def _cell_to_proto(value: Cell) -> common_pb2.CellValue:
    if value is None:
        return common_pb2.CellValue()
    if isinstance(value, bool):
        return common_pb2.CellValue(boolean=value)
    if isinstance(value, (int, float)):
        return common_pb2.CellValue(number=float(value))
    return common_pb2.CellValue(text=value)


def sheet_to_proto(sheet: Sheet) -> common_pb2.SampleSheet:
    """Maps a sheet to its protobuf form."""
    return common_pb2.SampleSheet(
        name=sheet.name,
        rows=[common_pb2.SheetRow(cells=[_cell_to_proto(c) for c in row]) for row in sheet.rows],
    )


def to_scoring_item(stored: ItemVersion) -> common_pb2.ScoringItem:
    """The item with everything the scorer needs to grade it, reference included."""
    item = stored.item
    message = common_pb2.ScoringItem(
        item_id=item.id, item_version=stored.version, kind=KIND_TO_PROTO[item.kind], prompt=item.prompt
    )
    if isinstance(item, FormulaItem):
        message.formula.CopyFrom(
            common_pb2.FormulaSpec(
                sheet=sheet_to_proto(item.formula.sheet), reference_formula=item.formula.reference_formula
            )
        )
    elif isinstance(item, FreeTextItem):
        message.rubric.CopyFrom(
            common_pb2.TextRubric(
                reference_answers=item.rubric.reference_answers,
                criteria=[
                    common_pb2.RubricCriterion(name=c.name, terms=c.terms, weight=c.weight)
                    for c in item.rubric.criteria
                ],
            )
        )
    elif isinstance(item, ChoiceItem):
        message.choice.CopyFrom(
            common_pb2.ChoiceSpec(options=item.choice.options, correct_index=item.choice.correct_index)
        )
    else:
        spec = item.numeric
        message.numeric.CopyFrom(
            common_pb2.NumericSpec(
                expected=spec.expected,
                absolute_tolerance=spec.absolute_tolerance,
                relative_tolerance=spec.relative_tolerance,
                unit=spec.unit,
                decimals=spec.decimals,
            )
        )
    return message


def reference_texts(item: Item) -> list[str]:
    """What a right answer to ``item`` looks like, in words, for a human reviewer.

    The same references :func:`to_scoring_item` gives the scorer: the rubric's
    reference answers, the reference formula, the correct option's text, or the
    expected number with how far from it an answer may be.
    """
    if isinstance(item, FreeTextItem):
        return list(item.rubric.reference_answers)
    if isinstance(item, FormulaItem):
        return [item.formula.reference_formula]
    if isinstance(item, ChoiceItem):
        return [item.choice.options[item.choice.correct_index]]
    spec = item.numeric
    # "12%" as the scorer writes it; "45 days" needs the space.
    unit = "" if not spec.unit else spec.unit if spec.unit == PERCENT_UNIT else f" {spec.unit}"

    def number(value: float, scale: int = 1) -> str:
        # repr: the shortest text that reads back as the number, i.e. what the author wrote.
        return format_decimal(Decimal(repr(value)) * scale)

    margins = []
    if spec.absolute_tolerance:
        margins.append(f"±{number(spec.absolute_tolerance)}{unit}")
    if spec.relative_tolerance:
        margins.append(f"±{number(spec.relative_tolerance, 100)}% of it")
    text = number(spec.expected) + unit
    if not margins:
        text += ", exactly"
    else:
        # The rule of Numeric: the larger of the two margins applies.
        text += ", accepted within " + " or ".join(margins) + (", whichever is larger" if len(margins) > 1 else "")
    if spec.decimals is not None:
        text += f" (asked for {spec.decimals} decimals)"
    return [text]


def to_question(stored: ItemVersion, position: int, total: int) -> orchestrator_pb2.Question:
    """The item as shown to a candidate.

    Built field by field from the public parts only, so a reference formula, rubric,
    correct index or expected number cannot reach the candidate.

    Args:
        stored: The item version asked.
        position: 1-based position in the interview.
        total: Number of questions in the interview.
    """
    item = stored.item
    question = orchestrator_pb2.Question(
        item_id=item.id,
        item_version=stored.version,
        kind=KIND_TO_PROTO[item.kind],
        prompt=item.prompt,
        skill_area=item.skill_area,
        position=position,
        total=total,
    )
    if isinstance(item, FormulaItem):
        question.sheet.CopyFrom(sheet_to_proto(item.formula.sheet))
    elif isinstance(item, ChoiceItem):
        question.options.extend(item.choice.options)
    elif isinstance(item, NumericItem):
        question.unit = item.numeric.unit
        if item.numeric.decimals is not None:
            question.decimals = item.numeric.decimals
    return question


FOLLOW_UP_SUFFIX = "#follow-up"
"""Appended to an item id to name its follow-up question; ``#`` never occurs in item ids."""


def follow_up_question_id(item_id: str) -> str:
    """The ``Question.item_id`` of the follow-up on ``item_id``, which its answer must name."""
    return item_id + FOLLOW_UP_SUFFIX


def follow_up_prompt(item: Item, criterion: str) -> str:
    """What the candidate is asked when an answer to ``item`` missed ``criterion``.

    The authored ``follow_up`` of the criterion, else a template naming it. The
    criterion's terms are never shown: they are the words the rubric looks for.

    Args:
        item: A free-text item (any other kind gets the template).
        criterion: The missed criterion's name.
    """
    if isinstance(item, FreeTextItem):
        for c in item.rubric.criteria:
            if c.name == criterion and c.follow_up:
                return c.follow_up
    topic = criterion.replace("_", " ").strip()
    return (
        f'Your answer did not cover one important point: "{topic}". '
        "Could you explain that part too, in a few sentences?"
    )


def to_follow_up_question(stored: ItemVersion, criterion: str, position: int, total: int) -> orchestrator_pb2.Question:
    """The follow-up on ``stored`` after an answer missed ``criterion``: free text, with
    the original prompt for context and nothing of the rubric but the criterion's topic.

    Args:
        stored: The item version followed up.
        criterion: Name of the missed criterion.
        position: 1-based position of the original question.
        total: Number of questions in the interview (follow-ups not counted).
    """
    item = stored.item
    return orchestrator_pb2.Question(
        item_id=follow_up_question_id(item.id),
        item_version=stored.version,
        kind=common_pb2.QUESTION_KIND_FREE_TEXT,
        prompt=follow_up_prompt(item, criterion),
        skill_area=item.skill_area,
        position=position,
        total=total,
        follow_up=True,
        follow_up_of_item_id=item.id,
        original_prompt=item.prompt,
    )


def parse_choice_answer(item: ChoiceItem, answer: str) -> int | None:
    """The option index a multiple-choice answer names, or None when it names none.

    Only bare decimal digits count, so the text stored is exactly what the scorer parses.
    """
    if not re.fullmatch(r"[0-9]{1,2}", answer):
        return None
    index = int(answer)
    return index if index < len(item.choice.options) else None


def parse_numeric_answer(item: NumericItem, answer: str) -> ParsedNumber:
    """Reads a numeric answer exactly as the scorer will (:func:`common.numeric.parse_number`).

    Raises:
        NotANumber: Saying why the answer is not a number.
    """
    return parse_number(answer, item.numeric.unit)
