//! `core_rs`: formula grading on the IronCalc engine and text-answer features.
//!
//! The logic lives in pure-Rust modules ([`formula`], [`text`], [`features`])
//! that `cargo test` exercises without Python. This file only holds the PyO3
//! bindings, compiled when the optional `pyo3` dependency is enabled (maturin
//! does so through `features = ["pyo3/extension-module"]`), producing the
//! private extension module `core_rs._native`.

pub mod cat;
#[cfg(feature = "pyo3")]
mod cat_py;
pub mod engine;
pub mod error;
mod excel_names;
pub mod features;
pub mod formula;
pub mod grading;
pub mod text;
pub mod variants;

pub use excel_names::EXCEL_FUNCTIONS;

#[cfg(feature = "pyo3")]
mod bindings {
    use std::convert::Infallible;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use pyo3::create_exception;
    use pyo3::exceptions::PyException;
    use pyo3::prelude::*;
    use pyo3::types::{PyBool, PyFloat, PyInt, PyString, PyTuple};

    use crate::error::CoreErr;
    use crate::features::FEATURE_NAMES;
    use crate::formula::{self, Value};
    use crate::grading;

    // core_rs/src/bindings/{grading_py,pool}.rs
    mod grading_py;
    mod pool;
    use grading_py::FormulaReference;
    use crate::text::{self, Criterion};

    create_exception!(
        core_rs._native,
        CoreError,
        PyException,
        "Base class of every error raised by core_rs."
    );
    create_exception!(
        core_rs._native,
        FormulaSyntaxError,
        CoreError,
        "The formula does not parse; `position` is the char offset of the error (or None)."
    );
    create_exception!(
        core_rs._native,
        SheetError,
        CoreError,
        "Bad sheet input: too many rows/columns, or a cell of an unsupported type."
    );
    create_exception!(
        core_rs._native,
        LimitError,
        CoreError,
        "The formula is too long or nested too deep."
    );

    /// Stack for the thread that runs the engine: IronCalc's parser and
    /// evaluator are recursive, and a stack overflow would abort the process.
    const ENGINE_STACK_BYTES: usize = 256 * 1024 * 1024;

    fn to_pyerr(py: Python<'_>, err: CoreErr) -> PyErr {
        match err {
            CoreErr::Syntax { message, position } => {
                let e = FormulaSyntaxError::new_err(message);
                // Ignore a failure to set the attribute: the class default is None.
                let _ = e.value(py).setattr("position", position);
                e
            }
            CoreErr::Sheet(m) => SheetError::new_err(m),
            CoreErr::Limit(m) => LimitError::new_err(m),
            CoreErr::Internal(m) => CoreError::new_err(m),
        }
    }

    fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
        let detail = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_default();
        format!("internal error in core_rs: {detail}")
    }

    /// Longest formula (bytes) that may run on the caller's own thread.
    ///
    /// Handing a job to an engine thread and waiting for it costs a wake-up
    /// and two context switches each way, as much as grading a short formula.
    /// How deep the engine recurses is bounded by the formula's length unless
    /// it defines a LAMBDA (a lambda that is handed itself recurses as deep as
    /// its data says). The worst shape measured, a chain of unary minus, needs
    /// about 2 KB of stack a character in a release build (500 of them fit in
    /// 1 MB), so a formula up to this length needs under 1 MB.
    const INLINE_MAX_BYTES: usize = 256;
    /// Stack the caller's thread must have left to run such a formula there:
    /// several times the need above (a debug build has larger frames).
    const INLINE_STACK_BYTES: usize = 4 * 1024 * 1024;

    /// Whether `formula` can be worked on the calling thread (see
    /// [`INLINE_MAX_BYTES`]); LAMBDA is looked for anywhere in the text, a
    /// string literal included, which only sends more work to the engine threads.
    fn fits_inline(formula: &str) -> bool {
        formula.len() <= INLINE_MAX_BYTES
            && !formula
                .as_bytes()
                .windows(6)
                .any(|w| w.eq_ignore_ascii_case(b"LAMBDA"))
    }

    /// Runs `work` without the GIL: on the calling thread when `inline` (see
    /// [`fits_inline`]) and its stack has room, otherwise on an engine thread
    /// with a large stack. A panic becomes [`CoreErr::Internal`].
    fn run_engine<T, F>(py: Python<'_>, inline: bool, work: F) -> Result<T, CoreErr>
    where
        T: Send,
        F: FnOnce() -> Result<T, CoreErr> + Send,
    {
        py.detach(|| {
            if inline && stacker::remaining_stack().is_some_and(|left| left >= INLINE_STACK_BYTES) {
                return catch_unwind(AssertUnwindSafe(work))
                    .unwrap_or_else(|payload| Err(CoreErr::Internal(panic_message(payload.as_ref()))));
            }
            // The long-lived engine threads; a thread of its own only if
            // none could be started.
            let mut work = Some(work);
            let pooled = pool::run(ENGINE_STACK_BYTES, || work.take().map(|w| w()));
            match pooled {
                Some(Ok(Some(result))) => return result,
                Some(Err(payload)) => return Err(CoreErr::Internal(panic_message(payload.as_ref()))),
                _ => {}
            }
            let Some(work) = work.take() else {
                return Err(CoreErr::Internal("engine job lost".to_string()));
            };
            std::thread::scope(|scope| {
                let handle = std::thread::Builder::new()
                    .name("core_rs-engine".to_string())
                    .stack_size(ENGINE_STACK_BYTES)
                    .spawn_scoped(scope, || catch_unwind(AssertUnwindSafe(work)));
                match handle {
                    Err(e) => Err(CoreErr::Internal(format!(
                        "cannot start engine thread: {e}"
                    ))),
                    Ok(h) => match h.join() {
                        Ok(Ok(result)) => result,
                        Ok(Err(payload)) | Err(payload) => {
                            Err(CoreErr::Internal(panic_message(payload.as_ref())))
                        }
                    },
                }
            })
        })
    }

    /// Runs cheap pure work without the GIL; a panic becomes [`CoreErr::Internal`].
    fn run_detached<T, F>(py: Python<'_>, work: F) -> Result<T, CoreErr>
    where
        T: Send,
        F: FnOnce() -> T + Send,
    {
        py.detach(|| {
            catch_unwind(AssertUnwindSafe(work))
                .map_err(|payload| CoreErr::Internal(panic_message(payload.as_ref())))
        })
    }

    impl<'py> IntoPyObject<'py> for &Value {
        type Target = PyAny;
        type Output = Bound<'py, PyAny>;
        type Error = Infallible;

        fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
            Ok(match self {
                Value::Number(x) => PyFloat::new(py, *x).into_any(),
                Value::Text(s) => PyString::new(py, s).into_any(),
                Value::Bool(b) => PyBool::new(py, *b).to_owned().into_any(),
                Value::Empty => py.None().into_bound(py),
            })
        }
    }

    impl<'py> IntoPyObject<'py> for Value {
        type Target = PyAny;
        type Output = Bound<'py, PyAny>;
        type Error = Infallible;

        fn into_pyobject(self, py: Python<'py>) -> Result<Self::Output, Self::Error> {
            (&self).into_pyobject(py)
        }
    }

    fn type_name(obj: &Bound<'_, PyAny>) -> String {
        obj.get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".to_string())
    }

    fn sheet_error(message: String) -> PyErr {
        SheetError::new_err(message)
    }

    fn iterable_not_text<'py>(
        obj: &Bound<'py, PyAny>,
        what: &str,
    ) -> PyResult<Bound<'py, pyo3::types::PyIterator>> {
        if obj.is_instance_of::<PyString>() || obj.is_instance_of::<pyo3::types::PyBytes>() {
            return Err(sheet_error(format!(
                "{what} must be a sequence, not {}",
                type_name(obj)
            )));
        }
        obj.try_iter()
            .map_err(|_| sheet_error(format!("{what} must be a sequence, not {}", type_name(obj))))
    }

    /// Converts the Python sheet, enforcing the size limits while reading.
    fn extract_sheet(sheet: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<Value>>> {
        let mut rows = Vec::new();
        for (r, row) in iterable_not_text(sheet, "sheet")?.enumerate() {
            if r >= formula::MAX_ROWS {
                return Err(sheet_error(format!(
                    "sheet has more than {} rows",
                    formula::MAX_ROWS
                )));
            }
            let row = row?;
            let mut cells = Vec::new();
            for (c, cell) in iterable_not_text(&row, &format!("sheet row {r}"))?.enumerate() {
                if c >= formula::MAX_COLUMNS {
                    return Err(sheet_error(format!(
                        "row {r} has more than {} columns",
                        formula::MAX_COLUMNS
                    )));
                }
                cells.push(extract_cell(&cell?, r, c)?);
            }
            rows.push(cells);
        }
        Ok(rows)
    }

    fn extract_cell(cell: &Bound<'_, PyAny>, r: usize, c: usize) -> PyResult<Value> {
        if cell.is_none() {
            return Ok(Value::Empty);
        }
        if let Ok(b) = cell.cast::<PyBool>() {
            return Ok(Value::Bool(b.is_true()));
        }
        if let Ok(s) = cell.cast::<PyString>() {
            return Ok(Value::Text(s.to_str()?.to_string()));
        }
        if cell.is_instance_of::<PyFloat>() || cell.is_instance_of::<PyInt>() {
            if let Ok(x) = cell.extract::<f64>() {
                return Ok(Value::Number(x));
            }
            return Err(sheet_error(format!(
                "row {r}, column {c}: the number does not fit a float"
            )));
        }
        Err(sheet_error(format!(
            "row {r}, column {c}: unsupported cell type {} (expected float, int, str, bool or None)",
            type_name(cell)
        )))
    }

    fn extract_strings(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Vec<String>> {
        if obj.is_instance_of::<PyString>() {
            return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "{what} must be a sequence of str, not a str"
            )));
        }
        obj.extract::<Vec<String>>()
    }

    fn extract_criteria(obj: &Bound<'_, PyAny>) -> PyResult<Vec<Criterion>> {
        let mut out = Vec::new();
        for item in obj.try_iter()? {
            let item = item?;
            let (name, terms, weight): (String, Bound<'_, PyAny>, f64) = item.extract()?;
            let terms = extract_strings(&terms, "criterion terms")?;
            out.push(Criterion {
                name,
                terms,
                weight,
            });
        }
        Ok(out)
    }

    /// The grade of a candidate formula against the reference formula.
    #[pyclass(frozen, get_all, eq, module = "core_rs._native")]
    #[derive(Clone, PartialEq)]
    pub struct FormulaGrade {
        parses: bool,
        error: Option<String>,
        error_position: Option<usize>,
        candidate_value: Vec<Vec<Value>>,
        reference_value: Vec<Vec<Value>>,
        values_match: bool,
        functions_used: Vec<String>,
        reference_functions: Vec<String>,
        function_overlap: f64,
        hardcoded: bool,
        features: Vec<f64>,
        sample_match: bool,
        variant_matches: Vec<bool>,
        variants_checked: usize,
        references: Vec<FormulaReference>,
        off_by_one: bool,
        nesting_depth: usize,
        volatile: bool,
        error_handling: bool,
        hardcoded_values: Vec<Value>,
        equivalence_class: String,
        result_error: Option<String>,
    }

    impl From<grading::Grade> for FormulaGrade {
        fn from(g: grading::Grade) -> Self {
            FormulaGrade {
                parses: g.parses,
                error: g.error,
                error_position: g.error_position,
                candidate_value: g.candidate_value,
                reference_value: g.reference_value,
                values_match: g.values_match,
                functions_used: g.functions_used,
                reference_functions: g.reference_functions,
                function_overlap: g.function_overlap,
                hardcoded: g.hardcoded,
                features: g.features,
                sample_match: g.sample_match,
                variant_matches: g.variant_matches,
                variants_checked: g.variants_checked,
                references: g
                    .references
                    .into_iter()
                    .map(|(r, inside)| FormulaReference::new(r, inside))
                    .collect(),
                off_by_one: g.off_by_one,
                nesting_depth: g.nesting_depth,
                volatile: g.volatile,
                error_handling: g.error_handling,
                hardcoded_values: g.hardcoded_values,
                equivalence_class: g.equivalence_class.to_string(),
                result_error: g.result_error,
            }
        }
    }

    #[pymethods]
    impl FormulaGrade {
        fn __repr__(&self) -> String {
            format!(
                "FormulaGrade(parses={}, values_match={}, equivalence_class={:?}, hardcoded={}, \
                 function_overlap={:?}, functions_used={:?}, error={})",
                py_bool(self.parses),
                py_bool(self.values_match),
                self.equivalence_class,
                py_bool(self.hardcoded),
                self.function_overlap,
                self.functions_used,
                self.error
                    .as_ref()
                    .map_or("None".to_string(), |e| format!("{e:?}")),
            )
        }
    }

    fn py_bool(b: bool) -> &'static str {
        if b {
            "True"
        } else {
            "False"
        }
    }

    /// Features of a free-text answer.
    #[pyclass(frozen, get_all, eq, module = "core_rs._native")]
    #[derive(Clone, PartialEq)]
    pub struct TextFeatures {
        token_count: usize,
        criteria_hits: Vec<bool>,
        matched_terms: Vec<Vec<String>>,
        concept_coverage: f64,
        reference_recall: f64,
        length_ratio: f64,
        excel_vocab: usize,
        features: Vec<f64>,
    }

    impl From<text::TextFeatures> for TextFeatures {
        fn from(t: text::TextFeatures) -> Self {
            TextFeatures {
                token_count: t.token_count,
                criteria_hits: t.criteria_hits,
                matched_terms: t.matched_terms,
                concept_coverage: t.concept_coverage,
                reference_recall: t.reference_recall,
                length_ratio: t.length_ratio,
                excel_vocab: t.excel_vocab,
                features: t.features,
            }
        }
    }

    #[pymethods]
    impl TextFeatures {
        fn __repr__(&self) -> String {
            format!(
                "TextFeatures(token_count={}, criteria_hits=[{}], concept_coverage={:?}, \
                 reference_recall={:?}, length_ratio={:?}, excel_vocab={})",
                self.token_count,
                self.criteria_hits
                    .iter()
                    .map(|b| py_bool(*b))
                    .collect::<Vec<_>>()
                    .join(", "),
                self.concept_coverage,
                self.reference_recall,
                self.length_ratio,
                self.excel_vocab,
            )
        }
    }

    /// Evaluates `formula` on `sheet` (laid out from A1) and returns its value
    /// as rows of cells; a dynamic array spills into several rows/columns.
    #[pyfunction]
    fn evaluate_formula(
        py: Python<'_>,
        sheet: &Bound<'_, PyAny>,
        formula: String,
    ) -> PyResult<Vec<Vec<Value>>> {
        let rows = extract_sheet(sheet)?;
        let inline = fits_inline(&formula);
        run_engine(py, inline, move || {
            formula::evaluate(&rows, &formula).map(|e| e.values)
        })
        .map_err(|e| to_pyerr(py, e))
    }

    /// Grades `candidate` against `reference` on `sheet` and its variants.
    #[pyfunction]
    #[pyo3(signature = (sheet, reference, candidate, *, variant_seed=None, variants=4))]
    fn grade_formula(
        py: Python<'_>,
        sheet: &Bound<'_, PyAny>,
        reference: String,
        candidate: String,
        variant_seed: Option<u64>,
        variants: usize,
    ) -> PyResult<FormulaGrade> {
        let rows = extract_sheet(sheet)?;
        let inline = fits_inline(&reference) && fits_inline(&candidate);
        let mut grades = run_engine(py, inline, move || {
            formula::grade_all(&rows, &reference, &[candidate], variant_seed, variants)
        })
        .map_err(|e| to_pyerr(py, e))?;
        grades
            .pop()
            .map(FormulaGrade::from)
            .ok_or_else(|| CoreError::new_err("no grade produced"))
    }

    /// Grades every candidate; the sheet and the reference are prepared once.
    #[pyfunction]
    #[pyo3(signature = (sheet, reference, candidates, *, variant_seed=None, variants=4))]
    fn grade_formulas(
        py: Python<'_>,
        sheet: &Bound<'_, PyAny>,
        reference: String,
        candidates: &Bound<'_, PyAny>,
        variant_seed: Option<u64>,
        variants: usize,
    ) -> PyResult<Vec<FormulaGrade>> {
        let rows = extract_sheet(sheet)?;
        let candidates = extract_strings(candidates, "candidates")?;
        let inline = fits_inline(&reference) && candidates.iter().all(|c| fits_inline(c));
        let grades = run_engine(py, inline, move || {
            formula::grade_all(&rows, &reference, &candidates, variant_seed, variants)
        })
        .map_err(|e| to_pyerr(py, e))?;
        Ok(grades.into_iter().map(FormulaGrade::from).collect())
    }

    /// Features of a free-text `answer` given reference answers and rubric
    /// criteria `(name, terms, weight)`.
    #[pyfunction]
    fn text_features(
        py: Python<'_>,
        answer: String,
        references: &Bound<'_, PyAny>,
        criteria: &Bound<'_, PyAny>,
    ) -> PyResult<TextFeatures> {
        let references = extract_strings(references, "references")?;
        let criteria = extract_criteria(criteria)?;
        run_detached(py, move || {
            text::text_features(&answer, &references, &criteria)
        })
        .map(TextFeatures::from)
        .map_err(|e| to_pyerr(py, e))
    }

    /// Features of many answers against the same references and criteria.
    #[pyfunction]
    fn text_features_batch(
        py: Python<'_>,
        answers: &Bound<'_, PyAny>,
        references: &Bound<'_, PyAny>,
        criteria: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<TextFeatures>> {
        let answers = extract_strings(answers, "answers")?;
        let references = extract_strings(references, "references")?;
        let criteria = extract_criteria(criteria)?;
        run_detached(py, move || {
            text::text_features_batch(&answers, &references, &criteria)
        })
        .map(|v| v.into_iter().map(TextFeatures::from).collect())
        .map_err(|e| to_pyerr(py, e))
    }

    #[pymodule]
    fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = m.py();
        m.add("FEATURE_NAMES", PyTuple::new(py, FEATURE_NAMES)?)?;
        m.add("CoreError", py.get_type::<CoreError>())?;
        let syntax = py.get_type::<FormulaSyntaxError>();
        syntax.setattr("position", py.None())?;
        m.add("FormulaSyntaxError", syntax)?;
        m.add("SheetError", py.get_type::<SheetError>())?;
        m.add("LimitError", py.get_type::<LimitError>())?;
        m.add_class::<FormulaGrade>()?;
        m.add_class::<TextFeatures>()?;
        m.add_function(wrap_pyfunction!(evaluate_formula, m)?)?;
        m.add_function(wrap_pyfunction!(grade_formula, m)?)?;
        m.add_function(wrap_pyfunction!(grade_formulas, m)?)?;
        m.add_function(wrap_pyfunction!(text_features, m)?)?;
        m.add_function(wrap_pyfunction!(text_features_batch, m)?)?;
        grading_py::register(m)?;
        crate::cat_py::register(m)?;
        Ok(())
    }
}
