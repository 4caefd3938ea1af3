//! Grading a candidate formula against a question: the sample sheet, its
//! hidden variants and the reference (a formula, or expected values).
//!
//! A [`Question`] is prepared once (sheets built, reference evaluated on the
//! sample and on every variant) and grades any number of candidates.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::CoreErr;
use crate::features;
use crate::formula::{
    check_formula, evaluations_match, jaccard, value_eq, CheckedFormula, Evaluation, Grid,
    PreparedSheet, Reference, Value,
};
use crate::variants;

/// Most variants a question may ask for.
pub const MAX_VARIANTS: usize = 16;

/// Excel's error values, as the engine reports them (text).
const ERROR_VALUES: [&str; 12] = [
    "#N/A", "#DIV/0!", "#VALUE!", "#REF!", "#NAME?", "#NUM!", "#NULL!", "#SPILL!", "#CALC!",
    "#CIRC!", "#ERROR!", "#N/IMPL!",
];

/// How a candidate relates to the reference.
pub mod class {
    /// Does not parse, or the engine failed on it.
    pub const INVALID: &str = "invalid";
    /// The same formula up to case, spaces, `$` and `_xlfn.`.
    pub const IDENTICAL: &str = "identical";
    /// A different formula with the same values on the sample and every variant.
    pub const EQUIVALENT: &str = "equivalent";
    /// Right on the sample sheet, wrong on some variant.
    pub const SAMPLE_ONLY: &str = "sample_only";
    /// Wrong on the sample sheet.
    pub const DIFFERENT: &str = "different";
}

/// The grade of one candidate formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    pub parses: bool,
    pub error: Option<String>,
    pub error_position: Option<usize>,
    pub candidate_value: Grid,
    pub reference_value: Grid,
    /// Matches on the sample sheet and on every variant.
    pub values_match: bool,
    pub functions_used: Vec<String>,
    pub reference_functions: Vec<String>,
    pub function_overlap: f64,
    pub hardcoded: bool,
    pub features: Vec<f64>,
    pub sample_match: bool,
    pub variant_matches: Vec<bool>,
    pub variants_checked: usize,
    /// The candidate's references, each with whether it lies inside the sample sheet.
    pub references: Vec<(Reference, bool)>,
    pub off_by_one: bool,
    pub nesting_depth: usize,
    pub volatile: bool,
    pub error_handling: bool,
    /// Literals of the candidate equal to a value of the expected result
    /// (and not literals of the reference): the signature of hard-coding.
    pub hardcoded_values: Vec<Value>,
    pub equivalence_class: &'static str,
    /// The first Excel error value in the candidate's result (`#N/A`, `#CIRC!`...).
    pub result_error: Option<String>,
}

/// What a candidate is compared with.
enum Expected {
    Formula(Box<CheckedFormula>),
    Values,
}

/// A question prepared for grading.
pub struct Question {
    pub sample: PreparedSheet,
    pub variants: Vec<PreparedSheet>,
    /// The variant sheets themselves (for inspection).
    pub variant_rows: Vec<Grid>,
    pub seed: u64,
    expected: Expected,
    /// The expected result on the sample, then on each variant.
    pub expected_values: Vec<Evaluation>,
}

fn guarded<T>(work: impl FnOnce() -> Result<T, CoreErr>) -> Result<T, CoreErr> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|_| Err(CoreErr::Internal("the formula engine panicked".into())))
}

/// The first Excel error value in a result.
pub fn first_error(values: &Grid) -> Option<String> {
    values.iter().flatten().find_map(|v| match v {
        Value::Text(s) if ERROR_VALUES.contains(&s.as_str()) => Some(s.clone()),
        _ => None,
    })
}

impl Question {
    /// Prepares a question from a reference formula.
    ///
    /// `seed` picks the variants (None: derived from the sheet and the
    /// reference). A variant identical to the sample is dropped.
    ///
    /// Errors: [`CoreErr::Syntax`]/[`CoreErr::Limit`] for a bad reference,
    /// [`CoreErr::Sheet`] for a bad sheet or too many variants.
    pub fn with_reference(
        rows: &[Vec<Value>],
        reference: &str,
        seed: Option<u64>,
        variants: usize,
    ) -> Result<Self, CoreErr> {
        if variants > MAX_VARIANTS {
            return Err(CoreErr::Sheet(format!(
                "{variants} variants asked for; the limit is {MAX_VARIANTS}"
            )));
        }
        let formula = check_formula(reference)?;
        let sample = PreparedSheet::new(rows)?;
        let seed = seed.unwrap_or_else(|| variants::default_seed(rows, &formula.body));
        let mut expected_values = vec![guarded(|| sample.evaluate(&formula))?];
        let mut variant_sheets = Vec::new();
        let mut variant_rows = Vec::new();
        for index in 0..variants {
            let rows_v = variants::variant(rows, &formula.constants, seed, index);
            if rows_v.as_slice() == rows || variant_rows.contains(&rows_v) {
                continue;
            }
            let sheet = PreparedSheet::new(&rows_v)?;
            expected_values.push(guarded(|| sheet.evaluate(&formula))?);
            variant_sheets.push(sheet);
            variant_rows.push(rows_v);
        }
        Ok(Question {
            sample,
            variants: variant_sheets,
            variant_rows,
            seed,
            expected: Expected::Formula(Box::new(formula)),
            expected_values,
        })
    }

    /// Prepares a question from the expected result on the sample sheet; no
    /// variants can be checked (nothing says what they should give).
    pub fn with_expected(rows: &[Vec<Value>], expected: Grid) -> Result<Self, CoreErr> {
        let width = expected.first().map_or(0, Vec::len);
        if expected.is_empty() || width == 0 || expected.iter().any(|r| r.len() != width) {
            return Err(CoreErr::Sheet(
                "expected values must be a non-empty rectangle of rows".to_string(),
            ));
        }
        let sample = PreparedSheet::new(rows)?;
        let shape = (expected.len(), width);
        Ok(Question {
            sample,
            variants: Vec::new(),
            variant_rows: Vec::new(),
            seed: 0,
            expected: Expected::Values,
            expected_values: vec![Evaluation {
                values: expected,
                shape,
            }],
        })
    }

    fn reference(&self) -> Option<&CheckedFormula> {
        match &self.expected {
            Expected::Formula(f) => Some(f),
            Expected::Values => None,
        }
    }

    /// Checks and evaluates one formula on the sample sheet.
    pub fn evaluate(&self, formula: &str) -> Result<Evaluation, CoreErr> {
        let checked = check_formula(formula)?;
        guarded(|| self.sample.evaluate(&checked))
    }

    /// Grades one candidate. Never fails: problems with the candidate are
    /// reported in [`Grade::error`]; a panic inside the engine is caught.
    pub fn grade(&self, candidate: &str) -> Grade {
        let reference = self.reference();
        let mut grade = Grade {
            parses: false,
            error: None,
            error_position: None,
            candidate_value: Vec::new(),
            reference_value: self.expected_values[0].values.clone(),
            values_match: false,
            functions_used: Vec::new(),
            reference_functions: reference.map(|r| r.functions.clone()).unwrap_or_default(),
            function_overlap: 0.0,
            hardcoded: false,
            features: Vec::new(),
            sample_match: false,
            variant_matches: Vec::new(),
            variants_checked: self.variants.len(),
            references: Vec::new(),
            off_by_one: false,
            nesting_depth: 0,
            volatile: false,
            error_handling: false,
            hardcoded_values: Vec::new(),
            equivalence_class: class::INVALID,
            result_error: None,
        };
        match check_formula(candidate) {
            Err(err) => {
                grade.error = Some(err.message());
                grade.error_position = err.position();
            }
            Ok(formula) => {
                grade.parses = true;
                self.grade_checked(&mut grade, formula);
            }
        }
        grade.features = features::formula_features(&grade);
        grade
    }

    fn grade_checked(&self, grade: &mut Grade, formula: CheckedFormula) {
        let reference = self.reference();
        if let Some(r) = reference {
            grade.function_overlap = jaccard(&formula.functions, &r.functions);
            grade.off_by_one = off_by_one(&formula.references, &r.references);
        } else {
            grade.function_overlap = 1.0;
        }
        grade.nesting_depth = formula.nesting_depth;
        grade.volatile = formula.volatile;
        grade.error_handling = formula.error_handling;
        grade.references = formula
            .references
            .iter()
            .map(|r| (r.clone(), r.inside(self.sample.rows, self.sample.columns)))
            .collect();
        grade.hardcoded_values = hardcoded_values(
            &formula.constants,
            &self.expected_values[0].values,
            reference
                .map(|r| r.constants.as_slice())
                .unwrap_or_default(),
        );
        match guarded(|| self.sample.evaluate(&formula)) {
            Err(err) => grade.error = Some(format!("evaluation failed: {}", err.message())),
            Ok(evaluation) => {
                grade.sample_match = evaluations_match(&evaluation, &self.expected_values[0]);
                grade.result_error = first_error(&evaluation.values);
                grade.candidate_value = evaluation.values;
                for (sheet, expected) in self.variants.iter().zip(&self.expected_values[1..]) {
                    let matched = guarded(|| sheet.evaluate(&formula))
                        .map(|e| evaluations_match(&e, expected))
                        .unwrap_or(false);
                    grade.variant_matches.push(matched);
                }
                let all_variants = grade.variant_matches.iter().all(|m| *m);
                grade.values_match = grade.sample_match && all_variants;
                // Hard-coding only means something when the expected result
                // comes from the sheet.
                let reads_sheet = reference.is_none_or(|r| r.references_cells);
                grade.hardcoded = grade.sample_match
                    && ((!formula.references_cells && reads_sheet)
                        || (!grade.hardcoded_values.is_empty() && !all_variants));
                grade.equivalence_class =
                    if reference.is_some_and(|r| r.normalized == formula.normalized) {
                        class::IDENTICAL
                    } else if grade.values_match {
                        class::EQUIVALENT
                    } else if grade.sample_match {
                        class::SAMPLE_ONLY
                    } else {
                        class::DIFFERENT
                    };
            }
        }
        grade.functions_used = formula.functions;
    }
}

/// Literals of the candidate that equal a value of the expected result and
/// are not literals of the reference. 0, 1 and "" are too common to tell.
fn hardcoded_values(candidate: &[Value], expected: &Grid, reference: &[Value]) -> Vec<Value> {
    let trivial = |v: &Value| match v {
        Value::Number(x) => *x == 0.0 || *x == 1.0,
        Value::Text(s) => s.is_empty(),
        _ => true,
    };
    let mut out: Vec<Value> = Vec::new();
    for constant in candidate {
        if trivial(constant)
            || reference.iter().any(|r| value_eq(r, constant))
            || out.iter().any(|o| value_eq(o, constant))
        {
            continue;
        }
        if expected.iter().flatten().any(|e| value_eq(e, constant)) {
            out.push(constant.clone());
        }
    }
    out
}

/// Whether a candidate range is one row or column off a reference range
/// (same other dimension), and not simply one of the reference's ranges.
pub fn off_by_one(candidate: &[Reference], reference: &[Reference]) -> bool {
    let bounds = |r: &Reference| (r.first_row, r.first_column, r.last_row, r.last_column);
    let ranges = |refs: &[Reference]| -> Vec<(i32, i32, i32, i32)> {
        refs.iter()
            .filter(|r| r.is_range && !r.whole_column && !r.whole_row)
            .map(bounds)
            .collect()
    };
    let (mine, theirs) = (ranges(candidate), ranges(reference));
    mine.iter().any(|c| {
        !theirs.contains(c)
            && theirs.iter().any(|r| {
                let rows_off = (c.0 - r.0).abs() + (c.2 - r.2).abs();
                let columns_off = (c.1 - r.1).abs() + (c.3 - r.3).abs();
                (c.1, c.3) == (r.1, r.3) && rows_off == 1
                    || (c.0, c.2) == (r.0, r.2) && columns_off == 1
            })
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formula::check_formula;

    /// Formulas of every kind the engine treats differently: scalars, spills,
    /// INDIRECT (evaluated on the data sheet), LET/LAMBDA, seeded RAND, errors.
    const KINDS: [&str; 14] = [
        "=SUMPRODUCT((A2:A51=\"East\")*G2:G51)",
        "=UNIQUE(A2:A51)",
        "=SORT(D2:D51,,-1)",
        "=A2:B4",
        "=INDIRECT(\"D\"&3)+SUM(D:D)",
        "=LET(x,SUM(D2:D51),y,LAMBDA(a,a*2),y(x))",
        "=MAP(D2:D4,LAMBDA(v,v+1))",
        "=RAND()+RANDBETWEEN(1,6)",
        "=RANDARRAY(2,2)",
        "=1/0",
        "=XLOOKUP(\"X-133\",H2:H51,B2:B51,\"none\")",
        "=FILTER(G2:G51,A2:A51=\"Nowhere\")",
        "=NOW()",
        "=TEXT(SUM(G2:G51),\"#,##0.00\")",
    ];

    /// The engine parse kept from the first sheet gives, on the other sheets,
    /// exactly what writing the formula afresh gives.
    #[test]
    fn reused_parse_equals_a_fresh_one() {
        let q = Question::with_reference(&perf::bench_sheet(), "=SUM(G2:G51)", Some(3), 4).unwrap();
        assert_eq!(q.variants.len(), 4);
        for text in KINDS.iter().chain(&perf::FORMULAS) {
            let shared = check_formula(text).unwrap();
            let first = q.sample.evaluate(&shared).unwrap();
            assert!(shared.installed.get().is_some(), "{text}: nothing kept");
            assert_eq!(
                first,
                q.sample.evaluate(&check_formula(text).unwrap()).unwrap(),
                "{text}"
            );
            for sheet in &q.variants {
                let fresh = sheet.evaluate(&check_formula(text).unwrap()).unwrap();
                assert_eq!(sheet.evaluate(&shared).unwrap(), fresh, "{text}");
            }
            // And again on the first sheet, after the others.
            assert_eq!(q.sample.evaluate(&shared).unwrap(), first, "{text}");
        }
    }
}

/// Micro-benchmarks for profiling (`cargo test --release -- --ignored --nocapture perf_`);
/// they print timings and assert nothing about them.
#[cfg(test)]
mod perf {
    use super::*;
    use std::time::Instant;

    fn n(x: f64) -> Value {
        Value::Number(x)
    }
    fn t(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    /// The sheet of benchmarks/core_rs/bench_formulas.py.
    pub(crate) fn bench_sheet() -> Vec<Vec<Value>> {
        let regions = ["East", "West", "North", "South"];
        let products = ["Apples", "Pears", "Kiwis", "Plums"];
        let mut rows = vec![[
            "Region", "Rep", "Product", "Units", "Price", "Date", "Sales", "Code",
        ]
        .iter()
        .map(|s| t(s))
        .collect::<Vec<_>>()];
        for i in 0..50usize {
            let units = (i * 7 % 23 + 1) as f64;
            let price = [1.5, 2.25, 3.0, 0.75][i % 4];
            rows.push(vec![
                t(regions[i * 3 % 4]),
                t(&format!("Rep{}", i % 7)),
                t(products[i * 5 % 4]),
                n(units),
                n(price),
                n(45292.0 + i as f64 * 3.0),
                n((units * price * 100.0).round() / 100.0),
                t(&format!("X-{}", 100 + i)),
            ]);
        }
        let pairs = [
            ("Product", "Category"),
            ("Apples", "Fruit"),
            ("Pears", "Fruit"),
            ("Kiwis", "Exotic"),
            ("Plums", "Stone"),
        ];
        for (r, (a, b)) in pairs.iter().enumerate() {
            rows[r].extend([Value::Empty, t(a), t(b)]);
        }
        rows
    }

    pub(crate) const FORMULAS: [&str; 16] = [
        "=SUMIFS(G2:G51,A2:A51,\"East\",C2:C51,\"Pears\")",
        "=COUNTIFS(A2:A51,\"West\",D2:D51,\">10\")",
        "=AVERAGEIF(C2:C51,\"Kiwis\",G2:G51)",
        "=VLOOKUP(\"Kiwis\",J2:K5,2,FALSE)",
        "=INDEX(G2:G51,MATCH(\"X-120\",H2:H51,0))",
        "=XLOOKUP(\"X-133\",H2:H51,B2:B51,\"none\")",
        "=IF(D7>15,\"high\",IF(D7>5,\"mid\",\"low\"))",
        "=IFERROR(VLOOKUP(\"Mango\",J2:K5,2,FALSE),\"missing\")",
        "=SUM(FILTER(G2:G51,A2:A51=\"North\"))",
        "=COUNTA(UNIQUE(B2:B51))",
        "=SUMPRODUCT((A2:A51=\"South\")*G2:G51)",
        "=TEXT(SUM(G2:G51),\"#,##0.00\")",
        "=ROUND(AVERAGE(G2:G51),2)",
        "=COUNTIF(B2:B51,\"Rep?\")+SUMIF(C2:C51,\"P*\",D2:D51)",
        "=MATCH(MAX(G2:G51),G2:G51,0)",
        "=MAXIFS(G2:G51,A2:A51,\"East\")",
    ];

    fn time<T>(label: &str, n: usize, mut f: impl FnMut() -> T) {
        for _ in 0..n / 10 {
            std::hint::black_box(f());
        }
        let start = Instant::now();
        for _ in 0..n {
            std::hint::black_box(f());
        }
        println!(
            "{label}: {:.2} µs",
            start.elapsed().as_secs_f64() * 1e6 / n as f64
        );
    }

    /// Stack probe: grades one worst-shaped formula on a thread with
    /// `H_STACK_KB` of stack (a too small stack aborts the process; run it
    /// in a loop from a shell to find the least that suffices).
    #[test]
    #[ignore]
    fn perf_stack_probe() {
        let var = |name: &str| std::env::var(name).ok();
        let (Some(kb), Some(len), Some(piece)) = (
            var("H_STACK_KB").and_then(|v| v.parse::<usize>().ok()),
            var("H_LEN").and_then(|v| v.parse::<usize>().ok()),
            var("H_PIECE"),
        ) else {
            println!("set H_STACK_KB, H_LEN, H_PIECE (and H_TAIL) to probe");
            return;
        };
        let tail = var("H_TAIL").unwrap_or_default();
        let body = piece.repeat(len / piece.len().max(1)) + &tail;
        let q = Question::with_reference(&bench_sheet(), "=SUM(G2:G51)", Some(1), 4).unwrap();
        let g = std::thread::scope(|s| {
            std::thread::Builder::new()
                .stack_size(kb * 1024)
                .spawn_scoped(s, || q.grade(&body))
                .unwrap()
                .join()
                .unwrap()
        });
        println!("PROBE ok parses={} err={:?}", g.parses, g.error);
    }

    #[test]
    #[ignore]
    fn perf_formulas() {
        let rows = bench_sheet();
        let q = Question::with_reference(&rows, "=1", None, 0).unwrap();
        let rounds = std::env::var("PERF_ROUNDS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(2000);
        if std::env::var("PERF_ONLY").as_deref() == Ok("evaluate") {
            time("Question::evaluate x16", rounds, || {
                FORMULAS
                    .iter()
                    .map(|f| q.evaluate(f).unwrap().shape.0)
                    .sum::<usize>()
            });
            return;
        }
        if std::env::var("PERF_ONLY").as_deref() == Ok("grade") {
            let q4 = Question::with_reference(&rows, "=SUMIFS(G2:G51,A2:A51,\"East\")", Some(1), 4)
                .unwrap();
            time("full grade (sample + 4)", rounds * 4, || {
                q4.grade("=SUMPRODUCT((A2:A51=\"East\")*G2:G51)")
                    .values_match
            });
            return;
        }
        time("check_formula x16", rounds, || {
            FORMULAS
                .iter()
                .map(|f| check_formula(f).unwrap().nesting_depth)
                .sum::<usize>()
        });
        let checked: Vec<_> = FORMULAS.iter().map(|f| check_formula(f).unwrap()).collect();
        time("evaluate x16 (checked)", rounds, || {
            checked
                .iter()
                .map(|f| q.sample.evaluate(f).unwrap().shape.0)
                .sum::<usize>()
        });
        time("grade x16 (no variants)", rounds, || {
            FORMULAS
                .iter()
                .map(|f| q.grade(f).parses as usize)
                .sum::<usize>()
        });
        let q4 =
            Question::with_reference(&rows, "=SUMIFS(G2:G51,A2:A51,\"East\")", Some(1), 4).unwrap();
        time("full grade (sample + 4)", rounds * 4, || {
            q4.grade("=SUMPRODUCT((A2:A51=\"East\")*G2:G51)")
                .values_match
        });
    }
}
