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
//! Time is fixed: IronCalc is built with its `mock_time` feature and
//! [`FIXED_NOW_MS`] is set before every evaluation, so NOW() and TODAY()
//! give the same answer on every run.

use std::sync::{Mutex, PoisonError};

use ironcalc_base::cell::CellValue;
use ironcalc_base::types::{Cell as IcCell, Worksheet};
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
        let mut model =
            Model::new_empty("sheet", "en", "UTC", "en").map_err(CoreErr::Internal)?;
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
        let result = live
            .model
            .update_cell_with_formula(sheet, EVAL_ROW, EVAL_COLUMN, format!("={}", formula.eval_body))
            .map_err(CoreErr::Internal)
            .and_then(|()| {
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
