//! The workbook a sheet is evaluated in, kept alive between evaluations.
//!
//! Reloading a snapshot costs more than evaluating a short formula, and
//! IronCalc's `evaluate()` walks every cell of every sheet that holds a
//! formula. So the data lives alone on [`SHEET_NAME`] (no formula: never
//! walked) and the formula under evaluation goes to a second sheet,
//! [`EVAL_SHEET`], with its references qualified to the data sheet
//! ([`CheckedFormula::eval_body`]). Only a formula that needs its own sheet
//! (INDIRECT) is written next to the data. After each evaluation the touched
//! sheet is put back from a pristine copy, and every [`REBUILD_EVERY`]
//! evaluations the whole model is reloaded so that nothing IronCalc keeps
//! between evaluations (LET/LAMBDA bookkeeping) can grow without bound.
//!
//! A question evaluates each candidate on five sheets of the same layout.
//! IronCalc parses a formula when it is written into a cell; the parse of the
//! first sheet ([`Installed`]) is written into the others as it is, so each
//! formula is parsed by the engine once (and once more by the strict check).
//!
//! Time is fixed: IronCalc is built with its `mock_time` feature and
//! [`FIXED_NOW_MS`] is set before every evaluation, so NOW() and TODAY()
//! give the same answer on every run.

use std::sync::{Arc, Mutex, PoisonError};

use ironcalc_base::cell::CellValue;
use ironcalc_base::expressions::parser::static_analysis::StaticResult;
use ironcalc_base::expressions::parser::Node;
use ironcalc_base::types::{ArrayKind, Cell as IcCell, Worksheet};
use ironcalc_base::Model;

use crate::error::CoreErr;
use crate::formula::{
    validate_sheet, CheckedFormula, Evaluation, Value, EVAL_COLUMN, EVAL_ROW, MAX_RESULT_COLUMNS,
    MAX_RESULT_ROWS, SHEET_NAME,
};

/// The clock of every evaluation: 2024-01-15 09:30:00 UTC.
pub const FIXED_NOW_MS: i64 = 1_705_311_000_000;
/// Name of the sheet the formula under evaluation is written to.
pub const EVAL_SHEET: &str = "Eval";
/// Evaluations between two full reloads of the model.
pub const REBUILD_EVERY: usize = 256;

const DATA: u32 = 0;
const EVAL: u32 = 1;

struct Live {
    model: Model<'static>,
    /// The data sheet and the evaluation sheet as loaded.
    pristine: [Worksheet; 2],
    evaluations: usize,
    /// Set while an evaluation is in progress: a panic leaves it set, and
    /// the next evaluation reloads instead of trusting a half-updated model.
    dirty: bool,
}

impl Live {
    fn load(snapshot: &[u8]) -> Result<Live, CoreErr> {
        let model = Model::from_bytes(snapshot, "en").map_err(CoreErr::Internal)?;
        let pristine = [
            model.workbook.worksheets[DATA as usize].clone(),
            model.workbook.worksheets[EVAL as usize].clone(),
        ];
        Ok(Live {
            model,
            pristine,
            evaluations: 0,
            dirty: false,
        })
    }

    fn restore(&mut self, sheet: u32) {
        let index = sheet as usize;
        self.model.workbook.worksheets[index] = self.pristine[index].clone();
        // The shared-formula lookup notices the shorter list and rebuilds itself.
        if let Some(parsed) = self.model.parsed_formulas.get_mut(index) {
            parsed.clear();
        }
    }
}

/// A formula as IronCalc wrote it into the evaluation cell of one model:
/// enough to write it into another model of the same layout without parsing
/// it again.
///
/// `Model::update_cell_with_formula` parses the text in the context of the
/// cell, adds the parse and its R1C1 text to the sheet's shared formulas and
/// writes a formula cell pointing at them: a dynamic-array anchor when its
/// static analysis cannot prove a scalar, a plain formula cell otherwise.
/// Every model of a question has the same sheets (names, order) and no
/// defined names, so the parse is the same in each, and writing these
/// pieces back is what the call would have done.
#[derive(Clone, Debug)]
pub struct Installed {
    node: Arc<Node>,
    text: String,
    dynamic: bool,
    style: i32,
}

impl Installed {
    /// What the last `update_cell_with_formula` wrote at the evaluation cell.
    fn capture(model: &Model, sheet: u32) -> Option<Installed> {
        let worksheet = model.workbook.worksheets.get(sheet as usize)?;
        let (f, style, dynamic) = match worksheet.cell(EVAL_ROW, EVAL_COLUMN).as_deref()? {
            IcCell::CellFormula { f, s, .. } => (*f, *s, false),
            IcCell::ArrayFormula {
                f,
                s,
                r: (1, 1),
                kind: ArrayKind::Dynamic,
                ..
            } => (*f, *s, true),
            _ => return None,
        };
        let index = usize::try_from(f).ok()?;
        Some(Installed {
            node: Arc::clone(&model.parsed_formulas.get(sheet as usize)?.get(index)?.0),
            text: worksheet.shared_formulas.get(index)?.clone(),
            dynamic,
            style,
        })
    }

    /// Writes the formula into the evaluation cell of `model`. False (and
    /// nothing written) when the sheet's formula lists are not in step, which
    /// a freshly restored sheet always is.
    fn write(&self, model: &mut Model, sheet: u32) -> bool {
        let index = sheet as usize;
        let (Some(worksheet), Some(parsed)) = (
            model.workbook.worksheets.get_mut(index),
            model.parsed_formulas.get_mut(index),
        ) else {
            return false;
        };
        if parsed.len() != worksheet.shared_formulas.len() {
            return false;
        }
        let Ok(f) = i32::try_from(parsed.len()) else {
            return false;
        };
        // Only the kind of the static result is ever read (when the cell is
        // written), and the cell kind below already says it.
        let analysis = if self.dynamic {
            StaticResult::Unknown
        } else {
            StaticResult::Scalar
        };
        parsed.push((Arc::clone(&self.node), analysis));
        worksheet.shared_formulas.push(self.text.clone());
        let written = if self.dynamic {
            worksheet.set_cell_with_dynamic_formula(EVAL_ROW, EVAL_COLUMN, f, self.style, 1, 1)
        } else {
            worksheet.set_cell_with_formula(EVAL_ROW, EVAL_COLUMN, f, self.style)
        };
        written.is_ok()
    }
}

/// A sheet laid out from A1, ready to evaluate formulas on.
///
/// Evaluations of one `PreparedSheet` are serialized (one live model);
/// separate sheets evaluate in parallel.
pub struct PreparedSheet {
    snapshot: Vec<u8>,
    live: Mutex<Option<Live>>,
    /// Rows and columns of the sheet as given (its used area).
    pub rows: usize,
    pub columns: usize,
}

impl PreparedSheet {
    /// Builds the workbook. Errors: [`CoreErr::Sheet`] for a sheet over the
    /// limits or a non-finite number.
    pub fn new(rows: &[Vec<Value>]) -> Result<Self, CoreErr> {
        validate_sheet(rows)?;
        let mut model = Model::new_empty("sheet", "en", "UTC", "en").map_err(CoreErr::Internal)?;
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                let (r1, c1) = (r as i32 + 1, c as i32 + 1);
                let result = match value {
                    Value::Number(x) => model.update_cell_with_number(DATA, r1, c1, *x),
                    Value::Text(s) => model.update_cell_with_text(DATA, r1, c1, s),
                    Value::Bool(b) => model.update_cell_with_bool(DATA, r1, c1, *b),
                    Value::Empty => Ok(()),
                };
                result.map_err(|e| CoreErr::Sheet(format!("row {r}, column {c}: {e}")))?;
            }
        }
        model.add_sheet(EVAL_SHEET).map_err(CoreErr::Internal)?;
        debug_assert_eq!(model.workbook.worksheets[DATA as usize].name, SHEET_NAME);
        Ok(PreparedSheet {
            snapshot: model.to_bytes(),
            live: Mutex::new(None),
            rows: rows.len(),
            columns: rows.iter().map(Vec::len).max().unwrap_or(0),
        })
    }

    /// Evaluates a checked formula on the sheet; the sheet is unchanged after.
    pub fn evaluate(&self, formula: &CheckedFormula) -> Result<Evaluation, CoreErr> {
        let mut guard = self.live.lock().unwrap_or_else(PoisonError::into_inner);
        let reload = match guard.as_ref() {
            None => true,
            Some(live) => live.dirty || live.evaluations >= REBUILD_EVERY,
        };
        if reload {
            *guard = Some(Live::load(&self.snapshot)?);
        }
        let live = guard
            .as_mut()
            .ok_or_else(|| CoreErr::Internal("no model".to_string()))?;
        live.evaluations += 1;
        live.dirty = true;
        ironcalc_base::mock_time::set_mock_time(FIXED_NOW_MS);
        let sheet = if formula.same_sheet { DATA } else { EVAL };
        let reused = formula
            .installed
            .get()
            .is_some_and(|installed| installed.write(&mut live.model, sheet));
        let written = if reused {
            Ok(())
        } else {
            let written = live.model.update_cell_with_formula(
                sheet,
                EVAL_ROW,
                EVAL_COLUMN,
                format!("={}", formula.eval_body),
            );
            if written.is_ok() && formula.installed.get().is_none() {
                if let Some(installed) = Installed::capture(&live.model, sheet) {
                    // Another thread may have set it first: the same parse.
                    let _ = formula.installed.set(installed);
                }
            }
            written
        };
        let result = written.map_err(CoreErr::Internal).and_then(|()| {
            live.model.evaluate();
            read_result(&live.model, sheet)
        });
        live.restore(sheet);
        live.dirty = false;
        result
    }
}

fn read_result(model: &Model, sheet: u32) -> Result<Evaluation, CoreErr> {
    let worksheet = model
        .workbook
        .worksheets
        .get(sheet as usize)
        .ok_or_else(|| CoreErr::Internal("workbook lacks a sheet".to_string()))?;
    let (width, height) = match worksheet.cell(EVAL_ROW, EVAL_COLUMN).as_deref() {
        Some(IcCell::ArrayFormula { r, .. }) => (r.0.max(1) as usize, r.1.max(1) as usize),
        _ => (1, 1),
    };
    let rows = height.min(MAX_RESULT_ROWS);
    let cols = width.min(MAX_RESULT_COLUMNS);
    let mut values = Vec::with_capacity(rows);
    for r in 0..rows {
        let mut row = Vec::with_capacity(cols);
        for c in 0..cols {
            let v = model
                .get_cell_value_by_index(sheet, EVAL_ROW + r as i32, EVAL_COLUMN + c as i32)
                .map_err(CoreErr::Internal)?;
            row.push(match v {
                CellValue::None => Value::Empty,
                CellValue::String(s) => Value::Text(s),
                CellValue::Number(x) => Value::Number(x),
                CellValue::Boolean(b) => Value::Bool(b),
            });
        }
        values.push(row);
    }
    Ok(Evaluation {
        values,
        shape: (height, width),
    })
}
