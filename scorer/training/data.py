"""Graded free-text answers grouped by question, and the loaders that produce them.

Two sources produce the same :class:`TrainingSet`:

* :func:`load_jsonl` — the product's own data: one JSON object per question with its prompt,
  reference answers, optional rubric criteria and the answers reviewers have graded.
* :func:`load_mohler` — the Mohler ShortAnswerGrading v2.0 data set, for the benchmark only.
  It is read in place from ``../shared/data/mohler-asag-v2``; it must never be copied into the
  repository or shipped (see that folder's NOTES.md).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: A rubric criterion as core_rs takes it: (name, terms, weight).
Criterion = tuple[str, tuple[str, ...], float]

MOHLER_ENV = "XLI_MOHLER_DIR"
MOHLER_SCALE = 5.0


@dataclass(frozen=True)
class Question:
    """A free-text question with what a grader needs.

    Attributes:
        qid: The question id, a string ("11.10" and "11.1" are different questions).
        group: The unit cross-validation holds out together (an assignment in Mohler, the
            question itself for product data), so test questions are never seen in training.
        prompt: The question text.
        references: One or more model answers.
        criteria: Rubric criteria; empty means "derive them from the references".
    """

    qid: str
    group: str
    prompt: str
    references: tuple[str, ...]
    criteria: tuple[Criterion, ...] = ()


@dataclass(frozen=True)
class GradedAnswer:
    """One answer and its human grade.

    Attributes:
        qid: The question it answers.
        text: The answer as the candidate wrote it (cleaned of markup).
        grade: The human grade on ``0..TrainingSet.scale_max``.
    """

    qid: str
    text: str
    grade: float


@dataclass
class TrainingSet:
    """Questions and their graded answers, on one grade scale.

    Attributes:
        name: A short name for reports ("mohler", a file stem, ...).
        questions: Questions by id.
        answers: Graded answers, in a stable order.
        scale_max: The top grade; grades lie in ``[0, scale_max]``.
    """

    name: str
    questions: dict[str, Question]
    answers: list[GradedAnswer]
    scale_max: float = MOHLER_SCALE
    _hash: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        for answer in self.answers:
            if answer.qid not in self.questions:
                raise ValueError(f"answer to unknown question {answer.qid!r}")
            if not 0.0 <= answer.grade <= self.scale_max:
                raise ValueError(f"question {answer.qid}: grade {answer.grade} is outside [0, {self.scale_max}]")

    def content_hash(self) -> str:
        """Returns a sha256 of everything that affects training, for the artefact's metadata."""
        if self._hash is None:
            payload = {
                "scale_max": self.scale_max,
                "questions": [
                    [q.qid, q.group, q.prompt, list(q.references), [[n, list(t), w] for n, t, w in q.criteria]]
                    for q in sorted(self.questions.values(), key=lambda q: q.qid)
                ],
                "answers": [[a.qid, a.text, a.grade] for a in self.answers],
            }
            blob = json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
            self._hash = hashlib.sha256(blob).hexdigest()
        return self._hash

    def groups(self) -> list[str]:
        """Returns the distinct cross-validation groups, sorted naturally ("2" before "10")."""
        return sorted({q.group for q in self.questions.values()}, key=natural_key)

    def subset(self, qids: Iterable[str]) -> TrainingSet:
        """Returns the set restricted to some questions (the answers keep their order)."""
        keep = set(qids)
        return TrainingSet(
            name=self.name,
            questions={k: v for k, v in self.questions.items() if k in keep},
            answers=[a for a in self.answers if a.qid in keep],
            scale_max=self.scale_max,
        )


def natural_key(text: str) -> tuple[object, ...]:
    """Sort key that orders "2" before "10" and "11.2" before "11.10", keeping ids as strings."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text))


_MOJIBAKE = re.compile(r"[ÂÃâ][\x80-\xbf\u0152-\u2122]{1,3}")
_BROKEN = re.compile(r"[ÂÃâ]?\ufffd+")
_TYPOGRAPHIC = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u2013": "-", "\u2014": "-"})


def _undo_double_encoding(match: re.Match[str]) -> str:
    """Re-decodes one run of UTF-8 bytes that were read as Windows-1252 and encoded again."""
    raw = bytearray()
    for char in match.group(0):
        try:
            raw += char.encode("cp1252")
        except UnicodeEncodeError:
            # Windows-1252 leaves 0x81, 0x8d, 0x8f, 0x90 and 0x9d undefined; decoders pass them through as C1 code points.
            if ord(char) > 0xFF:
                return match.group(0)
            raw.append(ord(char))
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return match.group(0)


def clean_text(text: str) -> str:
    """Normalises an answer as written in a web form or the Mohler raw files.

    Turns ``<br>`` into spaces, unescapes HTML entities, repairs doubly-encoded UTF-8 quotes
    ("â€™" → "'"), maps typographic quotes and dashes to ASCII and collapses whitespace.

    Args:
        text: The raw text.

    Returns:
        The cleaned text.
    """
    text = re.sub(r"<br\s*/?>", " ", text, flags=re.IGNORECASE)
    text = html.unescape(text)
    text = _MOJIBAKE.sub(_undo_double_encoding, text)
    # Two Mohler answers were encoded three times and lost bytes; all that is left is a quote mark.
    text = _BROKEN.sub("'", text)
    text = text.translate(_TYPOGRAPHIC)
    return " ".join(text.split())


def default_mohler_dir() -> Path:
    """Where the Mohler data set is: ``$XLI_MOHLER_DIR`` or ``../shared/data/mohler-asag-v2``."""
    configured = os.environ.get(MOHLER_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mohler-asag-v2"


def _id_lines(path: Path) -> dict[str, str]:
    """Reads ``<qid> <text>`` lines into a mapping keyed by the id *string*."""
    out: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            qid, _, text = line.partition(" ")
            out[qid] = clean_text(text)
    return out


def load_mohler(root: Path | None = None) -> TrainingSet:
    """Loads the 81 open-ended questions of Mohler ShortAnswerGrading v2.0 (benchmark only).

    Follows the authors' protocol: questions commented out in ``data/docs/files`` (closed-ended
    selection/ordering questions) are skipped, the gold grade is ``data/scores/<qid>/ave``
    (0–5), answers come from ``data/raw`` and are cleaned with :func:`clean_text`. The
    cross-validation group is the assignment (the part of the id before the dot).

    Args:
        root: The data set folder (holding ``data/``); default :func:`default_mohler_dir`.

    Returns:
        The training set, named "mohler".

    Raises:
        FileNotFoundError: The data set is not there.
        ValueError: A question's answers and grades do not line up.
    """
    root = root or default_mohler_dir()
    data = root / "data"
    if not (data / "docs" / "files").is_file():
        raise FileNotFoundError(f"Mohler ShortAnswerGrading v2.0 not found under {root} (set {MOHLER_ENV})")
    prompts = _id_lines(data / "raw" / "questions")
    references = _id_lines(data / "raw" / "answers")
    qids = [
        line.strip()
        for line in (data / "docs" / "files").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    questions: dict[str, Question] = {}
    answers: list[GradedAnswer] = []
    for qid in qids:
        questions[qid] = Question(qid=qid, group=qid.split(".")[0], prompt=prompts[qid], references=(references[qid],))
        # errors="replace": two files hold byte runs that are not UTF-8 (see clean_text).
        raw = (data / "raw" / qid).read_text(encoding="utf-8", errors="replace")
        texts = [line for line in raw.splitlines() if line.strip()]
        grades = [float(x) for x in (data / "scores" / qid / "ave").read_text(encoding="utf-8").split()]
        if len(texts) != len(grades):
            raise ValueError(f"Mohler {qid}: {len(texts)} answers but {len(grades)} grades")
        for line, grade in zip(texts, grades, strict=True):
            prefix, _, text = line.partition(" ")
            if prefix != qid:
                raise ValueError(f"Mohler {qid}: answer line starts with {prefix!r}")
            answers.append(GradedAnswer(qid=qid, text=clean_text(text), grade=grade))
    return TrainingSet(name="mohler", questions=questions, answers=answers, scale_max=MOHLER_SCALE)


def load_jsonl(path: Path, scale_max: float = MOHLER_SCALE) -> TrainingSet:
    """Loads product training data: one question per line with its graded answers.

    Each line is a JSON object::

        {"qid": "xl-017", "prompt": "...", "references": ["..."],
         "criteria": [{"name": "...", "terms": ["..."], "weight": 1.0}],   # optional
         "group": "xl-017",                                                 # optional
         "answers": [{"text": "...", "grade": 4.0}, ...]}

    Grades are on ``0..scale_max``. Without ``group`` a question is its own group.

    Args:
        path: The JSONL file.
        scale_max: The top grade.

    Returns:
        The training set, named after the file.
    """
    questions: dict[str, Question] = {}
    answers: list[GradedAnswer] = []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        obj = json.loads(line)
        qid = str(obj["qid"])
        if qid in questions:
            raise ValueError(f"{path}:{number}: question {qid!r} appears twice")
        criteria = tuple(
            (str(c["name"]), tuple(str(t) for t in c["terms"]), float(c.get("weight", 1.0)))
            for c in obj.get("criteria", [])
        )
        questions[qid] = Question(
            qid=qid,
            group=str(obj.get("group", qid)),
            prompt=clean_text(obj["prompt"]),
            references=tuple(clean_text(r) for r in obj["references"]),
            criteria=criteria,
        )
        answers.extend(GradedAnswer(qid=qid, text=clean_text(a["text"]), grade=float(a["grade"])) for a in obj["answers"])
    return TrainingSet(name=path.stem, questions=questions, answers=answers, scale_max=scale_max)


def load_jsonl_files(paths: Sequence[Path], scale_max: float = MOHLER_SCALE) -> TrainingSet:
    """Loads several product JSONL files as one training set (see :func:`load_jsonl`).

    Args:
        paths: The files, in order; one file gives exactly what :func:`load_jsonl` gives.
        scale_max: The top grade of every file.

    Returns:
        The training set, named after the files joined by "+".

    Raises:
        ValueError: A question id appears in more than one file.
    """
    sets = [load_jsonl(path, scale_max) for path in paths]
    if len(sets) == 1:
        return sets[0]
    questions: dict[str, Question] = {}
    for data in sets:
        repeated = sorted(set(questions) & set(data.questions))
        if repeated:
            raise ValueError(f"{data.name}: question(s) {', '.join(repeated)} appear in an earlier file")
        questions.update(data.questions)
    return TrainingSet(
        name="+".join(d.name for d in sets),
        questions=questions,
        answers=[a for d in sets for a in d.answers],
        scale_max=scale_max,
    )


def answers_by_question(answers: Sequence[GradedAnswer]) -> dict[str, list[int]]:
    """Groups answer indices by question id, keeping order."""
    out: dict[str, list[int]] = {}
    for index, answer in enumerate(answers):
        out.setdefault(answer.qid, []).append(index)
    return out
