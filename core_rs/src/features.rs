//! The fixed feature vector shared by formula and text answers.

use crate::grading::Grade;
use crate::text::TextFeatures;

/// Names of the entries of every `features` vector, in order.
pub const FEATURE_NAMES: [&str; 10] = [
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
];

fn flag(b: bool) -> f64 {
    if b {
        1.0
    } else {
        0.0
    }
}

/// Features of a graded formula: the text features are 0.
pub fn formula_features(g: &Grade) -> Vec<f64> {
    vec![
        1.0,
        0.0,
        flag(g.parses),
        flag(g.values_match),
        g.function_overlap,
        flag(g.hardcoded),
        0.0,
        0.0,
        0.0,
        0.0,
    ]
}

/// Features of a text answer: the formula features are 0; `length_ratio` is
/// scaled to 0..1 (it is capped at 2).
pub fn text_features(t: &TextFeatures) -> Vec<f64> {
    let density = (t.excel_vocab as f64 / t.token_count.max(1) as f64 * 5.0).min(1.0);
    vec![
        0.0,
        1.0,
        0.0,
        0.0,
        0.0,
        0.0,
        t.concept_coverage,
        t.reference_recall,
        t.length_ratio / 2.0,
        density,
    ]
}
