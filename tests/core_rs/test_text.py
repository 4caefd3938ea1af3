"""Text-answer features through the public core_rs API."""

from __future__ import annotations

import pytest

from core_rs import FEATURE_NAMES, TextFeatures, text_features, text_features_batch

REFERENCES = [
    "An absolute reference such as $A$1 does not change when the formula is copied; "
    "press F4 to toggle it.",
    "Use dollar signs to lock the row and column.",
]
CRITERIA: list[tuple[str, list[str], float]] = [
    ("absolute", ["absolute reference", "$A$1"], 2.0),
    ("shortcut", ["F4"], 1.0),
    ("pivot", ["pivot table"], 1.0),
]


def test_criteria_hits_and_coverage() -> None:
    f = text_features(
        "I would make it an Absolute References ($B$2) so copying keeps it; F4 toggles it.",
        REFERENCES,
        CRITERIA,
    )
    assert isinstance(f, TextFeatures)
    assert f.criteria_hits == [True, True, False]
    assert f.matched_terms == [["absolute reference"], ["F4"], []]
    assert f.concept_coverage == pytest.approx(3 / 4)
    assert len(f.features) == len(FEATURE_NAMES)
    assert f.features[FEATURE_NAMES.index("kind_formula")] == 0.0
    assert f.features[FEATURE_NAMES.index("kind_text")] == 1.0
    assert f.features[FEATURE_NAMES.index("concept_coverage")] == pytest.approx(0.75)
    for name in ("parses", "value_match", "function_overlap", "hardcoded"):
        assert f.features[FEATURE_NAMES.index(name)] == 0.0


def test_phrase_must_be_contiguous_and_plural_matches() -> None:
    crit = [("pivot", ["pivot table"], 1.0)]
    assert text_features("Pivot Tables summarise data", [], crit).criteria_hits == [True]
    assert text_features("pivot the table", [], crit).criteria_hits == [False]
    assert text_features("PIVOT-TABLE", [], crit).criteria_hits == [True]
    # Function names keep their final S: SUMIF is not SUMIFS.
    assert text_features("use SUMIF", [], [("s", ["SUMIFS"], 1.0)]).criteria_hits == [False]
    assert text_features("use sumifs", [], [("s", ["SUMIFS"], 1.0)]).criteria_hits == [True]


def test_recall_length_and_vocabulary() -> None:
    refs = ["Pivot tables summarise large data quickly."]
    f = text_features("A pivot table can summarise data.", refs, [])
    # content words of the reference: pivot, table, summarise, large, data, quickly
    assert f.reference_recall == pytest.approx(4 / 6)
    assert f.token_count == 6
    assert f.length_ratio == pytest.approx(1.0)
    assert f.features[FEATURE_NAMES.index("length_ratio")] == pytest.approx(0.5)
    assert f.excel_vocab == 1  # "pivot table"
    density = f.features[FEATURE_NAMES.index("excel_vocab_density")]
    assert density == pytest.approx(min(1.0, 1 / 6 * 5))

    long = text_features(" ".join(["data"] * 50), refs, [])
    assert long.length_ratio == 2.0


def test_best_reference_wins() -> None:
    refs = ["VLOOKUP searches the first column", "XLOOKUP returns a match from any column"]
    f = text_features("XLOOKUP returns the match from any column", refs, [])
    assert f.reference_recall == pytest.approx(1.0)


def test_excel_vocabulary_needs_excel_words() -> None:
    plain = text_features("If you want, and or not, it is fine.", [], [])
    assert plain.excel_vocab == 0
    excel = text_features("=IF(A1>0, VLOOKUP(A1, $D$2:$E$9, 2, FALSE), 0)", [], [])
    assert excel.excel_vocab >= 5
    assert excel.features[FEATURE_NAMES.index("excel_vocab_density")] == 1.0


def test_empty_inputs() -> None:
    f = text_features("", [], [])
    assert f.token_count == 0
    assert f.criteria_hits == [] and f.matched_terms == []
    assert f.concept_coverage == 0.0 and f.reference_recall == 0.0 and f.length_ratio == 0.0
    assert f.features == [0.0, 1.0] + [0.0] * 8


def test_unicode_and_case() -> None:
    f = text_features("ÉTÉ Tabelle", [], [("de", ["été"], 1.0), ("t", ["TABELLE"], 1.0)])
    assert f.criteria_hits == [True, True]


def test_batch_equals_single() -> None:
    answers = [
        "Absolute reference with F4",
        "I don't know",
        "",
        "Use a pivot table, then $A$1",
    ]
    batch = text_features_batch(answers, REFERENCES, CRITERIA)
    assert len(batch) == len(answers)
    for answer, result in zip(answers, batch):
        assert result == text_features(answer, REFERENCES, CRITERIA)
    assert text_features_batch([], REFERENCES, CRITERIA) == []


def test_bad_argument_types() -> None:
    # A str type-checks as Sequence[str]; the runtime rejects it (it is
    # almost certainly a forgotten list around a single reference).
    with pytest.raises(TypeError):
        text_features("x", "not a list", [])
    with pytest.raises(TypeError):
        text_features("x", [], [("name", "terms-as-str", 1.0)])
