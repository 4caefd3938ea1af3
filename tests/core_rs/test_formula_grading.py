"""Grading signals: hidden variants, references, hard-coding, classes, fixed clock."""

from __future__ import annotations

import pytest

import core_rs
from core_rs import FormulaSyntaxError, PreparedSheet, SheetError, evaluate_formula, grade_formula

HEADER: list[core_rs.Cell] = ["Region", "Product", "Units", "Price"]
SALES: list[list[core_rs.Cell]] = [HEADER] + [
    [region, product, float(units), price]
    for region, product, units, price in [
        ("East", "Apples", 10, 1.5),
        ("West", "Pears", 20, 2.0),
        ("East", "Pears", 30, 2.25),
        ("North", "Apples", 40, 1.75),
        ("West", "Kiwis", 5, 3.0),
        ("South", "Apples", 12, 1.5),
        ("East", "Kiwis", 8, 3.25),
        ("North", "Pears", 17, 2.5),
    ]
]
SUMIFS_EAST = '=SUMIFS(C2:C9,A2:A9,"East")'


def test_variants_are_deterministic_and_keep_the_layout() -> None:
    a = PreparedSheet(SALES, SUMIFS_EAST, variant_seed=11)
    b = PreparedSheet(SALES, SUMIFS_EAST, variant_seed=11)
    c = PreparedSheet(SALES, SUMIFS_EAST, variant_seed=12)
    assert a.variant_seed == 11 and a.variants_checked == 4
    assert a.variant_sheets == b.variant_sheets != c.variant_sheets
    for variant in a.variant_sheets:
        assert variant != SALES and len(variant) == len(SALES)
        assert variant[0] == SALES[0]
        # The key the reference names is kept: every variant still has East rows.
        assert sum(row[0] == "East" for row in variant[1:]) == 3
        assert [type(v) for row in variant for v in row] == [type(v) for row in SALES for v in row]
    # The reference's value moves with the data.
    assert a.reference_value == [[48.0]]
    assert any(v != [[48.0]] for v in a.variant_reference_values)
    # Without a seed one is derived from the sheet and the reference, stably.
    assert PreparedSheet(SALES, SUMIFS_EAST).variant_seed == PreparedSheet(SALES, SUMIFS_EAST).variant_seed


@pytest.mark.parametrize(
    ("candidate", "values_match", "equivalence_class"),
    [
        ('=SUMIFS(C2:C9,A2:A9,"East")', True, "identical"),
        ('= sumifs( $C$2:$C$9 , A2:A9 , "East" )', True, "identical"),
        ('=SUMIF(A:A,"east",C:C)', True, "equivalent"),
        ('=SUMPRODUCT((A2:A9="East")*C2:C9)', True, "equivalent"),
        ("=C2+C4+C8", False, "sample_only"),  # right rows by position only
        ("=48", False, "sample_only"),
        ('=SUMIFS(C2:C9,A2:A9,"West")', False, "different"),
        ("=SUM(C2:C9", False, "invalid"),
    ],
)
def test_equivalence_classes(candidate: str, values_match: bool, equivalence_class: str) -> None:
    g = grade_formula(SALES, SUMIFS_EAST, candidate, variant_seed=3)
    assert g.values_match is values_match
    assert g.equivalence_class == equivalence_class
    if g.parses:
        assert g.sample_match is (equivalence_class != "different")
        assert len(g.variant_matches) == g.variants_checked == 4
        assert all(g.variant_matches) is (equivalence_class in ("identical", "equivalent"))


def test_index_match_equals_xlookup_on_every_variant() -> None:
    sheet = PreparedSheet(SALES, '=INDEX(D2:D9,MATCH("North",A2:A9,0))', variant_seed=5)
    g = sheet.grade('=XLOOKUP("North",A2:A9,D2:D9)')
    assert g.values_match and g.variant_matches == [True] * 4 and not g.hardcoded
    g = sheet.grade("=D5")  # the right cell on the sample only
    assert g.sample_match and not g.values_match


def test_literal_equal_to_result_is_hardcoding() -> None:
    g = grade_formula(SALES, SUMIFS_EAST, "=C2*0+48", variant_seed=1)
    assert g.sample_match and not g.values_match
    assert g.hardcoded and g.hardcoded_values == [48.0]
    # A criterion literal that the reference also uses is not hard-coding.
    g = grade_formula(SALES, SUMIFS_EAST, '=SUMIF(A2:A9,"East",C2:C9)')
    assert g.hardcoded_values == [] and not g.hardcoded


def test_references_and_off_by_one() -> None:
    g = grade_formula(SALES, SUMIFS_EAST, '=SUMIFS($C$2:$C$8,A$2:A$9,"East",B:B,"<>x")')
    assert [r.text for r in g.references] == ["$C$2:$C$8", "A$2:A$9", "B:B"]
    assert [r.anchoring for r in g.references] == ["absolute", "mixed", "relative"]
    assert [r.whole_column for r in g.references] == [False, False, True]
    assert (g.references[0].first_row, g.references[0].last_row) == (2, 8)
    assert all(r.inside_sheet for r in g.references)
    assert g.off_by_one
    assert not grade_formula(SALES, SUMIFS_EAST, '=SUMIFS(C2:C9,A2:A9,"East")').off_by_one
    assert not grade_formula(SALES, SUMIFS_EAST, '=SUMIFS(C2:C7,A2:A7,"East")').off_by_one
    outside = grade_formula(SALES, SUMIFS_EAST, "=SUM(C2:C500)+Z1")
    assert [r.inside_sheet for r in outside.references] == [False, False]


def test_nesting_volatile_and_error_handling() -> None:
    g = grade_formula(SALES, SUMIFS_EAST, '=IFERROR(ROUND(SUMIFS(C2:C9,A2:A9,"East"),0),0)')
    assert g.nesting_depth == 3 and g.error_handling and not g.volatile
    assert g.values_match
    g = grade_formula(SALES, SUMIFS_EAST, '=XLOOKUP("x",A2:A9,C2:C9,"none")')
    assert g.error_handling and g.nesting_depth == 1
    assert not grade_formula(SALES, SUMIFS_EAST, '=XLOOKUP("x",A2:A9,C2:C9)').error_handling
    g = grade_formula(SALES, SUMIFS_EAST, "=A1")
    assert g.nesting_depth == 0
    for volatile in ("=NOW()", "=OFFSET(A1,1,0)", "=RAND()", '=INDIRECT("C2")'):
        assert grade_formula(SALES, SUMIFS_EAST, volatile).volatile, volatile


def test_fixed_clock_and_seeded_random() -> None:
    # 2024-01-15 09:30 UTC, on every run.
    assert evaluate_formula([], "=TODAY()") == [[45306.0]]
    assert evaluate_formula([], '=TEXT(NOW(),"yyyy-mm-dd hh:mm")') == [["2024-01-15 09:30"]]
    first = evaluate_formula([], "=RAND()+RANDBETWEEN(1,6)")
    assert first == evaluate_formula([], "=RAND()+RANDBETWEEN(1,6)")
    value = evaluate_formula([], "=RAND()")[0][0]
    assert isinstance(value, float) and 0.0 <= value < 1.0
    die = evaluate_formula([], "=RANDBETWEEN(1,6)")[0][0]
    assert die in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0)
    grid = evaluate_formula([], "=RANDARRAY(2,3,1,6,TRUE)")
    assert len(grid) == 2 and all(len(row) == 3 for row in grid)
    assert all(v in (1.0, 2.0, 3.0, 4.0, 5.0, 6.0) for row in grid for v in row)
    assert grid == evaluate_formula([], "=RANDARRAY(2,3,1,6,TRUE)")
    g = grade_formula(SALES, "=RAND()", "=RAND()")
    assert g.values_match and g.volatile


def test_circular_and_bad_references_give_a_clear_result() -> None:
    g = grade_formula(SALES, SUMIFS_EAST, '=INDIRECT("BH1")')  # its own cell
    assert g.parses and g.result_error == "#CIRC!" and g.equivalence_class == "different"
    g = grade_formula(SALES, SUMIFS_EAST, "=Sheet2!A1")
    assert g.result_error == "#REF!"
    g = grade_formula(SALES, SUMIFS_EAST, "=VLOOKUP(\"Nowhere\",A2:D9,2,FALSE)")
    assert g.result_error == "#N/A"
    assert grade_formula(SALES, SUMIFS_EAST, "=1").result_error is None


def test_expected_values_instead_of_a_reference() -> None:
    sheet = PreparedSheet(SALES, expected=[[48.0]])
    assert sheet.variants_checked == 0 and sheet.variant_seed is None
    g = sheet.grade('=SUMIF(A2:A9,"East",C2:C9)')
    assert g.values_match and g.equivalence_class == "equivalent" and not g.hardcoded
    g = sheet.grade("=48")
    assert g.values_match and g.hardcoded
    with pytest.raises(ValueError):
        PreparedSheet(SALES)
    with pytest.raises(ValueError):
        PreparedSheet(SALES, "=1", expected=[[1.0]])
    with pytest.raises(SheetError):
        PreparedSheet(SALES, expected=[])


def test_prepared_sheet_equals_grade_formula() -> None:
    candidates = ['=SUMIF(A2:A9,"East",C2:C9)', "=48", "=SUM(", "=C2+C4+C8", '=FILTER(C2:C9,A2:A9="East")']
    sheet = PreparedSheet(SALES, SUMIFS_EAST, variant_seed=9)
    many = sheet.grade_many(candidates)
    assert many == [sheet.grade(c) for c in candidates]
    assert many == [grade_formula(SALES, SUMIFS_EAST, c, variant_seed=9) for c in candidates]
    assert sheet.evaluate("=UNIQUE(A2:A9)") == [["East"], ["West"], ["North"], ["South"]]
    with pytest.raises(FormulaSyntaxError):
        sheet.evaluate("=SUM(")
    with pytest.raises(FormulaSyntaxError):
        PreparedSheet(SALES, "=SUM(")
    with pytest.raises(SheetError):
        PreparedSheet(SALES, SUMIFS_EAST, variants=17)


def test_repeated_evaluations_do_not_leak_state() -> None:
    # The live model is reused (and reloaded every 256 evaluations): spills,
    # scalars and errors must not influence later results.
    sheet = PreparedSheet(SALES, SUMIFS_EAST, variants=0)
    formulas = ['=FILTER(B2:C9,A2:A9="East")', "=1/0", "=SEQUENCE(3)", '=LET(x,2,x*C2)', "=C2", "=A2:A9"]
    fresh = [evaluate_formula(SALES, f) for f in formulas]
    for _ in range(60):
        assert [sheet.evaluate(f) for f in formulas] == fresh


def test_long_and_lambda_formulas_give_what_short_ones_give() -> None:
    # Short formulas run on the calling thread; long ones and any with LAMBDA
    # on the engine threads (large stacks). Padding a formula with spaces
    # sends the same formula the other way: every field must agree.
    prepared = PreparedSheet(SALES, SUMIFS_EAST, variant_seed=5)
    for short in ['=SUMPRODUCT((A2:A9="East")*C2:C9)', "=UNIQUE(A2:A9)", "=SUM(C2:C9", "=48"]:
        padded = short + " " * 300
        assert prepared.grade(padded) == prepared.grade(short)
        assert prepared.grade_many([short, padded]) == [prepared.grade(short)] * 2
        assert grade_formula(SALES, SUMIFS_EAST, padded) == grade_formula(SALES, SUMIFS_EAST, short)
    assert evaluate_formula(SALES, "=SUM(C2:C9)" + " " * 300) == evaluate_formula(SALES, "=SUM(C2:C9)")
    via_lambda = prepared.grade('=LET(f,LAMBDA(r,SUMIFS(C2:C9,r,"East")),f(A2:A9))')
    assert via_lambda.values_match and via_lambda.equivalence_class == "equivalent"


def test_one_prepared_sheet_shared_by_threads() -> None:
    from concurrent.futures import ThreadPoolExecutor

    prepared = PreparedSheet(SALES, SUMIFS_EAST, variant_seed=5)
    candidates = ['=SUMIF(A2:A9,"East",C2:C9)', "=48", "=SUM(C2:C9", "=FILTER(C2:C9,A2:A9=\"East\")"] * 4
    expected = [prepared.grade(c) for c in candidates]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(prepared.grade, candidates * 4))
    assert results == expected * 4
