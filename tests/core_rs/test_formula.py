"""Formula evaluation and grading through the public core_rs API."""

from __future__ import annotations

import pytest

import core_rs
from core_rs import (
    FEATURE_NAMES,
    CoreError,
    FormulaGrade,
    FormulaSyntaxError,
    LimitError,
    SheetError,
    evaluate_formula,
    grade_formula,
    grade_formulas,
)

SALES: list[list[core_rs.Cell]] = [
    ["Region", "Product", "Units", "Price"],
    ["East", "Apples", 10, 1.5],
    ["West", "Pears", 20, 2.0],
    ["East", "Pears", 30, 2.0],
    ["North", "Apples", 40, 1.5],
    ["West", "Apples", 5, 1.5],
]


def test_feature_names_contract() -> None:
    assert FEATURE_NAMES == (
        "kind_formula",
        "kind_text",
        "parses",
        "value_match",
        "function_overlap",
        "hardcoded",
        "concept_coverage",
        "reference_recall",
        "length_ratio",
        "excel_vocab_density",
    )


def test_sumifs_matches() -> None:
    assert evaluate_formula(SALES, '=SUMIFS(C2:C6, A2:A6, "East", B2:B6, "Pears")') == [[30.0]]
    g = grade_formula(
        SALES,
        '=SUMIFS(C2:C6,A2:A6,"West")',
        '=SUMIF(A2:A6,"west",C2:C6)',  # different function, lower-case criterion
    )
    assert g.parses and g.error is None and g.error_position is None
    assert g.values_match
    assert g.candidate_value == [[25.0]] == g.reference_value
    assert g.functions_used == ["SUMIF"]
    assert g.reference_functions == ["SUMIFS"]
    assert g.function_overlap == 0.0
    assert not g.hardcoded
    assert g.features == [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]


def test_wrong_value_does_not_match() -> None:
    g = grade_formula(SALES, '=SUMIFS(C2:C6,A2:A6,"West")', '=SUMIFS(C2:C6,A2:A6,"East")')
    assert g.parses and not g.values_match and not g.hardcoded
    assert g.candidate_value == [[40.0]]
    assert g.function_overlap == 1.0
    assert g.features[3] == 0.0


def test_index_match_and_xlookup_are_equivalent() -> None:
    index_match = '=INDEX(D2:D6, MATCH("North", A2:A6, 0))'
    xlookup = '=XLOOKUP("North", A2:A6, D2:D6)'
    for reference, candidate in [(index_match, xlookup), (xlookup, index_match)]:
        g = grade_formula(SALES, reference, candidate)
        assert g.values_match, (reference, candidate)
        assert g.candidate_value == [[1.5]]
        assert not g.hardcoded
    g = grade_formula(SALES, index_match, xlookup)
    assert g.functions_used == ["XLOOKUP"]
    assert g.reference_functions == ["INDEX", "MATCH"]
    assert g.function_overlap == 0.0


def test_function_overlap_is_jaccard() -> None:
    g = grade_formula(SALES, "=ROUND(SUM(C2:C6),0)", "=SUM(C2:C6)+ABS(0)")
    assert g.functions_used == ["ABS", "SUM"]
    assert g.function_overlap == pytest.approx(1 / 3)
    g = grade_formula(SALES, "=C2+C3", "=C3+C2")
    assert g.functions_used == [] and g.function_overlap == 1.0


def test_hardcoded_constant() -> None:
    g = grade_formula(SALES, "=SUM(C2:C6)", "=105")
    # Right on the sample, wrong on the variants: a constant does not compute.
    assert g.parses and g.sample_match and g.hardcoded and not g.values_match
    assert g.hardcoded_values == [105.0]
    assert g.equivalence_class == "sample_only"
    assert g.features[FEATURE_NAMES.index("hardcoded")] == 1.0
    assert g.features[FEATURE_NAMES.index("value_match")] == 0.0
    # Without variants the constant matches, and is still flagged.
    g = grade_formula(SALES, "=SUM(C2:C6)", "=105", variants=0)
    assert g.values_match and g.hardcoded and g.variants_checked == 0
    # A constant that is wrong is not "hard-coded the answer".
    assert not grade_formula(SALES, "=SUM(C2:C6)", "=104").hardcoded
    # Reading the sheet is not hard-coding.
    assert not grade_formula(SALES, "=SUM(C2:C6)", "=C2+C3+C4+C5+C6").hardcoded


def test_numbers_compare_to_15_significant_digits() -> None:
    sheet: list[list[core_rs.Cell]] = [[0.1], [0.2]]
    # variants=0: the constant would (rightly) fail on the hidden variants.
    assert grade_formula(sheet, "=A1+A2", "=0.3", variants=0).values_match
    assert not grade_formula(sheet, "=A1+A2", "=0.300000000000001", variants=0).values_match
    assert grade_formula(sheet, "=A1+A2", "=A2+A1").values_match


@pytest.mark.parametrize(("before", "after"), [(991.37, 941.3), (1524.8, 765.61), (1985.09, 2699.62), (607.43, 660.63)])
def test_the_same_growth_computed_two_ways_matches(before: float, after: float) -> None:
    # A2/A1-1 and (A2-A1)/A1 differ by rounding error that can straddle a 15-digit boundary.
    sheet: list[list[core_rs.Cell]] = [[before], [after]]
    assert grade_formula(sheet, "=(A2-A1)/A1", "=IFERROR(A2/A1-1,0)", variants=0).values_match


def test_unbalanced_candidate_does_not_raise() -> None:
    g = grade_formula(SALES, "=SUM(A1:A3)", "=SUM(A1:A3")
    assert g.parses is False
    assert g.error
    assert g.error_position == 10  # end of the input, where ")" is missing
    assert g.candidate_value == []
    assert not g.values_match and not g.hardcoded
    assert g.features[:4] == [1.0, 0.0, 0.0, 0.0]
    assert g.reference_value == [[0.0]]  # SUM over text cells


@pytest.mark.parametrize(
    ("formula", "position"),
    [
        ("=SUM(A1:A3", 10),
        ("SUM(A1:A3", 9),
        ("=SUM(A1:A3))", 11),
        ('="abc', None),
        ("=1 2", 3),
        ("=SUM(C2:C6) C1", 12),
        ("=1+", None),
        ("={1,2", None),
    ],
)
def test_syntax_errors_are_strict(formula: str, position: int | None) -> None:
    with pytest.raises(FormulaSyntaxError) as info:
        evaluate_formula(SALES, formula)
    assert isinstance(info.value.position, int)
    assert 0 <= info.value.position <= len(formula)
    if position is not None:
        assert info.value.position == position
    assert str(info.value)


def test_bad_reference_raises() -> None:
    with pytest.raises(FormulaSyntaxError):
        grade_formula(SALES, "=SUM(C2:C6", "=1")
    with pytest.raises(FormulaSyntaxError):
        grade_formulas(SALES, "=SUM(C2:C6", ["=1"])


def test_filter_and_unique_spill() -> None:
    assert evaluate_formula(SALES, "=UNIQUE(A2:A6)") == [["East"], ["West"], ["North"]]
    assert evaluate_formula(SALES, '=FILTER(B2:C6, A2:A6="East")') == [
        ["Apples", 10.0],
        ["Pears", 30.0],
    ]
    g = grade_formula(SALES, '=FILTER(C2:C6,A2:A6="West")', '=FILTER(C2:C6, A2:A6 = "WEST")')
    assert g.values_match and g.candidate_value == [[20.0], [5.0]]
    # Same values in a different shape do not match.
    g = grade_formula(SALES, '=FILTER(C2:C6,A2:A6="West")', '=TRANSPOSE(FILTER(C2:C6,A2:A6="West"))')
    assert g.candidate_value == [[20.0, 5.0]]
    assert not g.values_match


def test_values_of_every_type() -> None:
    sheet: list[list[core_rs.Cell]] = [[1, "x", True, None, 2.5]]
    assert evaluate_formula(sheet, "=A1:E1") == [[1.0, "x", True, 0.0, 2.5]]
    assert evaluate_formula(sheet, "=1/0") == [["#DIV/0!"]]
    assert evaluate_formula(sheet, '=NOSUCHFUNCTION(1)') == [["#NAME?"]]
    assert evaluate_formula(sheet, "=C1") == [[True]]
    assert evaluate_formula(sheet, '="a"&"b"') == [["ab"]]
    assert evaluate_formula([], "=1+1") == [[2.0]]


def test_volatile_functions_do_not_crash() -> None:
    for formula in ("=NOW()", "=RAND()", "=TODAY()", "=RANDARRAY(2,2)"):
        value = evaluate_formula(SALES, formula)
        assert value and value[0]


def test_batch_equals_single() -> None:
    reference = '=SUMIFS(C2:C6,A2:A6,"East")'
    candidates = [
        '=SUMIF(A2:A6,"East",C2:C6)',
        "=40",
        "=SUM(C2:C6",
        '=SUMPRODUCT((A2:A6="East")*C2:C6)',
        "=C2+C4",
        "",
        "=1 2",
    ]
    batch = grade_formulas(SALES, reference, candidates)
    assert len(batch) == len(candidates)
    for candidate, grade in zip(candidates, batch):
        single = grade_formula(SALES, reference, candidate)
        assert isinstance(grade, FormulaGrade)
        assert grade == single, candidate
        assert grade.features == single.features
    # "=40" and "=C2+C4" (picks rows by position) are right only on the sample.
    assert [g.sample_match for g in batch] == [True, True, False, True, True, False, False]
    assert [g.values_match for g in batch] == [True, False, False, True, False, False, False]
    assert [g.hardcoded for g in batch] == [False, True, False, False, False, False, False]
    assert grade_formulas(SALES, reference, []) == []


def test_a_recursive_lambda_is_refused_instead_of_crashing_the_process() -> None:
    # Without the check this overflows the engine thread's stack and kills the interpreter.
    with pytest.raises(LimitError, match="recursion"):
        evaluate_formula(SALES, "=LET(f,LAMBDA(g,n,IF(n=0,0,1+g(g,n-1))),f(f,100000))")
    assert evaluate_formula(SALES, "=LET(sq,LAMBDA(x,x*x),n,5,sq(n))") == [[25.0]]
    assert evaluate_formula(SALES, "=REDUCE(0,{1,2,3},LAMBDA(acc,v,acc+v))") == [[6.0]]


def test_exceptions_are_typed() -> None:
    for cls in (FormulaSyntaxError, SheetError, LimitError):
        assert issubclass(cls, CoreError)
    assert issubclass(CoreError, Exception)
    with pytest.raises(LimitError):
        evaluate_formula(SALES, "=" + "1+" * 1000 + "1")
    with pytest.raises(LimitError):
        evaluate_formula(SALES, "=" + "(" * 65 + "1" + ")" * 65)
    with pytest.raises(SheetError):
        evaluate_formula([[1.0]] * 201, "=1")
    with pytest.raises(SheetError):
        evaluate_formula([[1.0] * 51], "=1")
    with pytest.raises(SheetError):
        evaluate_formula([[object()]], "=1")  # type: ignore[list-item]
    with pytest.raises(SheetError):
        evaluate_formula([[float("nan")]], "=1")
    with pytest.raises(SheetError):
        # A str type-checks as Sequence[Sequence[str]]; the runtime rejects it.
        evaluate_formula("not a sheet", "=1")
    # A limit problem in a candidate is reported, not raised.
    g = grade_formula(SALES, "=1", "=" + "1+" * 1000 + "1")
    assert not g.parses and g.error and g.error_position is None


def test_full_sheet_within_limits() -> None:
    sheet: list[list[core_rs.Cell]] = [[1.0] * 50 for _ in range(200)]
    assert evaluate_formula(sheet, "=SUM(A1:AX200)") == [[10000.0]]


def test_grades_are_frozen() -> None:
    g = grade_formula(SALES, "=1", "=1")
    with pytest.raises(AttributeError):
        g.parses = False  # type: ignore[misc]


def test_whole_column_references_are_fast_and_equivalent() -> None:
    import time

    start = time.perf_counter()
    g = grade_formula(SALES, '=SUMIFS(C2:C6,A2:A6,"East")', '=SUMIF(A:A,"East",C:C)')
    assert g.values_match
    g = grade_formula(SALES, '=FILTER(B2:B6,A2:A6="West")', '=FILTER(B:B,A:A="West")')
    assert g.values_match and g.candidate_value == [["Pears"], ["Apples"]]
    # Whole columns stop at the sheet limit (200 rows), not at row 1048576.
    assert len(evaluate_formula(SALES, "=A:A")) == 200
    assert time.perf_counter() - start < 2.0
    with pytest.raises(LimitError):
        evaluate_formula(SALES, "=SUM(A2:Z1048576)")


def test_concurrent_calls_agree() -> None:
    from concurrent.futures import ThreadPoolExecutor

    candidates = ['=SUMIF(A2:A6,"East",C2:C6)', "=40", "=SUM(C2:C6"] * 5
    expected = grade_formulas(SALES, '=SUMIFS(C2:C6,A2:A6,"East")', candidates)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(
            pool.map(
                lambda _: grade_formulas(SALES, '=SUMIFS(C2:C6,A2:A6,"East")', candidates),
                range(8),
            )
        )
    assert all(r == expected for r in results)
