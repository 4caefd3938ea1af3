//! PyO3 classes of the grading API: a prepared question (`PreparedSheet`) and
//! the references of a graded formula (`FormulaReference`). A child module of
//! `bindings` in lib.rs, so it shares its conversions and engine runner.

use std::sync::Arc;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use super::{
    extract_sheet, extract_strings, fits_inline, py_bool, run_engine, to_pyerr, FormulaGrade,
};
use crate::formula::{Reference, Value};
use crate::grading::Question;

/// A cell or range reference of a formula, as written.
#[pyclass(frozen, get_all, eq, module = "core_rs._native")]
#[derive(Clone, PartialEq)]
pub struct FormulaReference {
    text: String,
    sheet: Option<String>,
    first_row: i32,
    first_column: i32,
    last_row: i32,
    last_column: i32,
    is_range: bool,
    anchoring: String,
    whole_column: bool,
    whole_row: bool,
    inside_sheet: bool,
}

impl FormulaReference {
    pub fn new(r: Reference, inside_sheet: bool) -> Self {
        FormulaReference {
            anchoring: r.anchoring.as_str().to_string(),
            text: r.text,
            sheet: r.sheet,
            first_row: r.first_row,
            first_column: r.first_column,
            last_row: r.last_row,
            last_column: r.last_column,
            is_range: r.is_range,
            whole_column: r.whole_column,
            whole_row: r.whole_row,
            inside_sheet,
        }
    }
}

#[pymethods]
impl FormulaReference {
    fn __repr__(&self) -> String {
        format!(
            "FormulaReference(text={:?}, anchoring={:?}, whole_column={}, whole_row={}, inside_sheet={})",
            self.text,
            self.anchoring,
            py_bool(self.whole_column),
            py_bool(self.whole_row),
            py_bool(self.inside_sheet),
        )
    }
}

/// A question ready for grading, built once and reused for every answer.
///
/// Holds the sample sheet, its hidden variants (numbers perturbed, text keys
/// renamed, data rows shuffled; what the reference names literally is kept)
/// and the reference's values on each. Grading evaluates the candidate on all
/// of them; ``values_match`` requires a match everywhere. NOW()/TODAY() use a
/// fixed clock (2024-01-15 09:30 UTC) and RAND/RANDBETWEEN seeded stand-ins,
/// so a grade is reproducible. Calls release the GIL; one object may be shared
/// by threads (its evaluations are serialized).
///
/// Args:
///     sheet: Rows of cells laid out from A1 (at most 200 x 50).
///     reference: The model answer formula. Give it or ``expected``.
///     expected: The expected result as rows of cells, when there is no
///         reference formula; then no variants are checked.
///     variant_seed: Seed of the variants, stored with the question; None
///         derives one from the sheet and the reference.
///     variants: How many variants to build (0 to 16); one identical to the
///         sample is skipped.
///
/// Raises:
///     ValueError: Neither or both of ``reference`` and ``expected`` given.
///     FormulaSyntaxError: The reference does not parse.
///     LimitError: The reference is too long or nested too deep.
///     SheetError: A bad sheet or expected value, or more than 16 variants.
#[pyclass(frozen, name = "PreparedSheet", module = "core_rs._native")]
pub struct PyPreparedSheet {
    question: Arc<Question>,
    has_reference: bool,
}

#[pymethods]
impl PyPreparedSheet {
    #[new]
    #[pyo3(signature = (sheet, reference=None, *, expected=None, variant_seed=None, variants=4))]
    fn new(
        py: Python<'_>,
        sheet: &Bound<'_, PyAny>,
        reference: Option<String>,
        expected: Option<&Bound<'_, PyAny>>,
        variant_seed: Option<u64>,
        variants: usize,
    ) -> PyResult<Self> {
        let rows = extract_sheet(sheet)?;
        let expected = expected.map(extract_sheet).transpose()?;
        let has_reference = reference.is_some();
        let question = match (reference, expected) {
            (Some(reference), None) => run_engine(py, fits_inline(&reference), move || {
                Question::with_reference(&rows, &reference, variant_seed, variants)
            }),
            (None, Some(expected)) => {
                run_engine(py, true, move || Question::with_expected(&rows, expected))
            }
            _ => {
                return Err(PyValueError::new_err(
                    "give exactly one of reference and expected",
                ))
            }
        }
        .map_err(|e| to_pyerr(py, e))?;
        Ok(PyPreparedSheet {
            question: Arc::new(question),
            has_reference,
        })
    }

    /// The expected result on the sample sheet.
    #[getter]
    fn reference_value(&self) -> Vec<Vec<Value>> {
        self.question.expected_values[0].values.clone()
    }

    /// The seed of the variants (None when graded against expected values).
    #[getter]
    fn variant_seed(&self) -> Option<u64> {
        self.has_reference.then_some(self.question.seed)
    }

    /// How many variants a candidate is checked on.
    #[getter]
    fn variants_checked(&self) -> usize {
        self.question.variants.len()
    }

    /// The variant sheets, for inspection.
    #[getter]
    fn variant_sheets(&self) -> Vec<Vec<Vec<Value>>> {
        self.question.variant_rows.clone()
    }

    /// The reference's result on each variant.
    #[getter]
    fn variant_reference_values(&self) -> Vec<Vec<Vec<Value>>> {
        self.question.expected_values[1..]
            .iter()
            .map(|e| e.values.clone())
            .collect()
    }

    /// Grades one candidate formula.
    fn grade(&self, py: Python<'_>, candidate: String) -> PyResult<FormulaGrade> {
        let question = Arc::clone(&self.question);
        let inline = fits_inline(&candidate);
        run_engine(py, inline, move || Ok(question.grade(&candidate)))
            .map(FormulaGrade::from)
            .map_err(|e| to_pyerr(py, e))
    }

    /// Grades many candidates with the GIL released.
    fn grade_many(
        &self,
        py: Python<'_>,
        candidates: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<FormulaGrade>> {
        let candidates = extract_strings(candidates, "candidates")?;
        let question = Arc::clone(&self.question);
        let inline = candidates.iter().all(|c| fits_inline(c));
        run_engine(py, inline, move || {
            Ok(candidates.iter().map(|c| question.grade(c)).collect::<Vec<_>>())
        })
        .map(|grades| grades.into_iter().map(FormulaGrade::from).collect())
        .map_err(|e| to_pyerr(py, e))
    }

    /// Evaluates a formula on the sample sheet.
    fn evaluate(&self, py: Python<'_>, formula: String) -> PyResult<Vec<Vec<Value>>> {
        let question = Arc::clone(&self.question);
        let inline = fits_inline(&formula);
        run_engine(py, inline, move || question.evaluate(&formula).map(|e| e.values))
            .map_err(|e| to_pyerr(py, e))
    }

    fn __repr__(&self) -> String {
        format!(
            "PreparedSheet(rows={}, columns={}, variants_checked={})",
            self.question.sample.rows,
            self.question.sample.columns,
            self.question.variants.len()
        )
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<FormulaReference>()?;
    m.add_class::<PyPreparedSheet>()?;
    Ok(())
}
