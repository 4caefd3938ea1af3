"""``xli-export-reviews --out FILE``: reviewers' grades of free-text answers as training data.

The learning loop: the scorer flags what it is unsure of, reviewers grade those answers
(:mod:`orchestrator.reviews`), and this writes the graded free-text answers in the
format the scorer's training reads (:func:`scorer.training.data.load_jsonl`): one JSON
object per question with its prompt, reference answers and rubric criteria, and the
answers with their grades on 0..5 (the reviewer's value × 5).

A question is one item *version*, ``<item_id>@v<version>``: answers to different
versions were graded against different prompts and rubrics. Versions of one item share
a cross-validation ``group``, so training never tests on a near copy of what it saw.
Only the newest review of an answer counts. A follow-up's answer is exported as the
scorer graded it, together with the answer it follows up, under the item's prompt.

The database is ``DATABASE_URL``, else the embedded PostgreSQL of ``make up``, as for
``xli-calibrate``. Exit status 0 when the file is written (even with no answers), 1
when PostgreSQL cannot be reached or has not been migrated by the orchestrator, 2 when
no database is configured or the file cannot be written.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import asyncpg

from common.errors import Unavailable
from orchestrator.admin_db import AdminDb
from orchestrator.bank import FreeTextItem, item_from_content
from orchestrator.calibration import database_url
from orchestrator.reviews import ORIGINAL_ANSWER_JOIN
from orchestrator.service import graded_text
from orchestrator.settings import MissingSetting, OrchestratorSettings

# The grade scale of the training data (scorer.training.data.MOHLER_SCALE, GRADING.md).
GRADE_SCALE = 5.0
# One read of every review: far longer than a request may take, still bounded.
EXPORT_TIMEOUT_S = 60.0

# Each reviewed free-text answer with its newest review's grade, and its item version.
_REVIEWED = f"""
SELECT DISTINCT ON (r.answer_id)
       a.answer_id, a.item_id, a.item_version, a.answer, a.submitted_at,
       (s.items -> a.position) ? 'follow_up_of' AS follow_up, o.answer AS original_answer,
       sc.value, it.kind, it.skill_area, it.prompt, it.spec, it.difficulty
FROM reviews r
JOIN scores sc ON sc.score_id = r.score_id
JOIN answers a ON a.answer_id = r.answer_id
JOIN sessions s ON s.session_id = a.session_id
JOIN items it ON it.item_id = a.item_id AND it.version = a.item_version
{ORIGINAL_ANSWER_JOIN}
WHERE it.kind = 'free_text'
ORDER BY r.answer_id, r.review_id DESC
"""


def question_id(item_id: str, version: int) -> str:
    """The training question of an item version: ``<item_id>@v<version>``."""
    return f"{item_id}@v{version}"


def training_records(rows: Sequence[Any], max_answer_chars: int) -> list[dict[str, Any]]:
    """The JSONL objects of :func:`scorer.training.data.load_jsonl`, one per item version.

    Args:
        rows: Rows of the reviewed answers (``_REVIEWED``'s columns).
        max_answer_chars: The answer limit, which cut a follow-up's original answer
            when the scorer graded both together.

    Returns:
        The records by question id, each with its answers oldest first.
    """
    records: dict[str, dict[str, Any]] = {}
    for row in sorted(rows, key=lambda r: (r["item_id"], r["item_version"], r["submitted_at"], r["answer_id"])):
        qid = question_id(row["item_id"], row["item_version"])
        record = records.get(qid)
        if record is None:
            item = item_from_content(
                row["item_id"], row["kind"], row["skill_area"], row["prompt"], row["spec"], row["difficulty"]
            )
            assert isinstance(item, FreeTextItem)  # the query reads free-text items only
            record = records[qid] = {
                "qid": qid,
                "group": item.id,
                "prompt": item.prompt,
                "references": list(item.rubric.reference_answers),
                "criteria": [{"name": c.name, "terms": list(c.terms), "weight": c.weight} for c in item.rubric.criteria],
                "answers": [],
            }
        original = row["original_answer"] if row["follow_up"] else None
        record["answers"].append(
            {
                "text": graded_text(row["answer"], original, max_answer_chars),
                "grade": round(row["value"] * GRADE_SCALE, 4),
            }
        )
    return list(records.values())


async def export(url: str, out: Path, settings: OrchestratorSettings) -> tuple[int, int]:
    """Writes the reviewed free-text answers to ``out`` (replaced whole, never half written).

    Returns:
        The number of questions and of answers written.

    Raises:
        Unavailable: When PostgreSQL cannot be reached or has no ``reviews`` table.
    """
    db = await AdminDb.connect(url, EXPORT_TIMEOUT_S)
    try:
        async with db.connection("read the reviewed answers") as conn:
            try:
                rows = await conn.fetch(_REVIEWED)
            except asyncpg.UndefinedTableError as exc:
                raise Unavailable(
                    f"the database has no reviews ({exc}); start the orchestrator once to migrate it"
                ) from exc
    finally:
        await db.close()
    records = training_records(rows, settings.max_answer_chars)
    partial = out.with_name(out.name + ".partial")
    with partial.open("w", encoding="utf-8") as file:
        for record in records:
            file.write(json.dumps(record, ensure_ascii=False) + "\n")
    os.replace(partial, out)
    return len(records), sum(len(r["answers"]) for r in records)


def main(argv: list[str] | None = None) -> int:
    """Runs the command; returns the exit status: 0 written, 1 PostgreSQL unreachable or
    not migrated, 2 no database configured or the file cannot be written."""
    settings = OrchestratorSettings()
    parser = argparse.ArgumentParser(
        prog="xli-export-reviews",
        description="Writes the reviewers' grades of free-text answers as scorer training data (JSONL).",
    )
    parser.add_argument("--out", type=Path, required=True, help="the JSONL file to write (replaced if it exists)")
    args = parser.parse_args(argv)
    try:
        with database_url(settings) as url:
            questions, answers = asyncio.run(export(url, args.out, settings))
    except MissingSetting as exc:
        print(f"cannot export: {exc}", file=sys.stderr)
        return 2
    except Unavailable as exc:
        print(f"cannot export: {exc.message}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"cannot write {args.out}: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {answers} reviewed answers to {questions} questions to {args.out}")
    if not answers:
        print("no free-text answer has been reviewed yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
