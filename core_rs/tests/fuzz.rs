//! Property test: random and malformed formulas never panic, never hang, and
//! a formula that is refused says why (a syntax error with a position inside
//! the input, or a limit). Bounded: a fixed number of cases, each timed.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use core_rs::error::CoreErr;
use core_rs::formula::{check_formula, Value, MAX_FORMULA_CHARS};
use core_rs::grading::Question;
use proptest::prelude::*;

/// Generous for a loaded CI machine: a formula costs microseconds to
/// milliseconds, the worst legal one (a million-cell array) under a second.
const PER_FORMULA: Duration = Duration::from_secs(5);

fn question() -> &'static Question {
    static QUESTION: OnceLock<Question> = OnceLock::new();
    QUESTION.get_or_init(|| {
        let mut rows = vec![vec![
            Value::Text("Region".into()),
            Value::Text("Product".into()),
            Value::Text("Units".into()),
        ]];
        for i in 0..20 {
            rows.push(vec![
                Value::Text(["East", "West", "North"][i % 3].into()),
                Value::Text(["Apples", "Pears"][i % 2].into()),
                Value::Number((i * 7 % 11) as f64),
            ]);
        }
        Question::with_reference(&rows, "=SUMIFS(C2:C21,A2:A21,\"East\")", Some(1), 2).unwrap()
    })
}

const PIECES: &[&str] = &[
    "SUM(", "SUMIFS(", "COUNTIFS(", "AVERAGEIF(", "VLOOKUP(", "INDEX(", "MATCH(", "XLOOKUP(",
    "IF(", "IFERROR(", "FILTER(", "UNIQUE(", "SORT(", "SUMPRODUCT(", "TEXT(", "ROUND(", "LET(",
    "LAMBDA(", "INDIRECT(", "OFFSET(", "RAND(", "RANDBETWEEN(", "SEQUENCE(", "NOW(", "TEXTJOIN(",
    "A1", "C2:C21", "$A$2:$A$21", "A:A", "2:2", "Sheet1!B2", "Sheet2!A1", "XFD1048576", "BH1",
    "\"East\"", "\"*a?\"", "\"\"", "\"unterminated", "1", "0", "-1", "1E+308", "3.5", "TRUE",
    "#N/A", "{1,2;3,4}", "(", ")", "{", "}", ",", ";", ":", "+", "-", "*", "/", "^", "&", "=",
    "<>", ">=", "%", "@", "#", "!", "$", " ", "x", "é", "😀", "\u{0}", "\n",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(PIECES), 0..40).prop_map(|p| p.concat())
}

fn huge() -> impl Strategy<Value = String> {
    (prop::sample::select(&["(", "SUM(", "{", "1+", "-", "A1:", "\"x", "é"][..]), 1usize..6000)
        .prop_map(|(piece, n)| piece.repeat(n))
}

fn formulas() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => token_soup(),
        2 => any::<String>(),
        1 => "[=A-Z0-9(),:;$\"!&<>+*/^%{} .#@-]{0,120}",
        1 => huge(),
        // Deep but within limits: nested calls up to and beyond 64 levels.
        1 => (1usize..80).prop_map(|n| format!("={}1{}", "ABS(".repeat(n), ")".repeat(n))),
    ]
}

fn check_one(formula: &str) -> Result<(), TestCaseError> {
    let start = Instant::now();
    let grade = question().grade(formula);
    let elapsed = start.elapsed();
    prop_assert!(elapsed < PER_FORMULA, "{elapsed:?} for {formula:?}");
    prop_assert_eq!(grade.features.len(), 10);
    prop_assert_eq!(grade.variant_matches.len() <= 2, true);
    if grade.parses {
        prop_assert!(!grade.candidate_value.is_empty() || grade.error.is_some());
    } else {
        prop_assert!(grade.error.as_ref().is_some_and(|e| !e.is_empty()));
        prop_assert!(!grade.values_match && !grade.hardcoded);
    }
    match check_formula(formula) {
        Ok(_) => prop_assert!(grade.parses),
        Err(CoreErr::Syntax { position, .. }) => {
            let position = position.expect("a syntax error has a position");
            prop_assert!(position <= formula.chars().count(), "{position} in {formula:?}");
            prop_assert_eq!(grade.error_position, Some(position));
        }
        Err(CoreErr::Limit(_)) => prop_assert_eq!(grade.error_position, None),
        Err(other) => prop_assert!(false, "unexpected error {other:?} for {formula:?}"),
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 600,
        // The shrinker would re-run slow cases many times; a failure prints its input anyway.
        max_shrink_iters: 64,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn any_formula_gets_a_grade_or_a_clear_error(formula in formulas()) {
        check_one(&formula)?;
    }
}

#[test]
fn fixed_malformed_inputs() {
    let ten_kb = "SUM(A1,".repeat(1500);
    let cases = [
        "=".to_string(),
        "=SUM(A1:A3".to_string(),
        "=))((".to_string(),
        format!("={}", "(".repeat(10_000)),
        format!("={}1", "-".repeat(MAX_FORMULA_CHARS)),
        ten_kb.clone(),
        format!("=\"{}\"", "é".repeat(10_000)),
        "=LET(x,x,x)".to_string(),
        "=LAMBDA(x,x)(LAMBDA(x,x))".to_string(),
        "=INDIRECT(\"BH1\")".to_string(),
        "=SEQUENCE(1000,1000)".to_string(),
        "=SUM(A1:ALL1000)".to_string(),
        "=A1:XFD1048576".to_string(),
    ];
    for formula in &cases {
        check_one(formula).unwrap();
    }
    assert!(matches!(check_formula(&ten_kb), Err(CoreErr::Limit(_))));
    let circular = question().grade("=INDIRECT(\"BH1\")");
    assert_eq!(circular.result_error.as_deref(), Some("#CIRC!"));
}
