//! Formula checking, evaluation and grading on top of IronCalc.
//!
//! Pure Rust (no PyO3): the Python bindings in `lib.rs` only convert values.
//!
//! The flow is:
//!
//! 1. [`check_formula`] validates a formula *strictly* (IronCalc's
//!    `set_user_input` silently closes a missing parenthesis and its parser
//!    ignores trailing tokens, so both are rejected here before the engine
//!    ever sees the formula) and extracts the functions it calls and whether
//!    it references any cell.
//! 2. [`PreparedSheet::new`] lays the sheet out from A1 once and keeps a
//!    serialized snapshot of the workbook.
//! 3. [`PreparedSheet::evaluate`] reloads the snapshot, writes the formula in
//!    a cell to the right of the data ([`EVAL_ROW`], [`EVAL_COLUMN`]) so a
//!    dynamic array has room to spill, recalculates, and reads the spill.
//!
//! Whole-column and whole-row references (`A:A`, `2:2`, `A1:A1048576`) are
//! evaluated as the sheet area (`A$1:A$200`, `$A2:$AX2`): the data never
//! extends beyond it, and an array operation over a million-row column costs
//! seconds and gigabytes. Other ranges over [`MAX_RANGE_CELLS`] are refused.

use std::collections::{BTreeSet, HashMap};

use ironcalc_base::expressions::lexer::{Lexer, LexerMode};
use ironcalc_base::expressions::parser::{new_parser_english, Node};
use ironcalc_base::expressions::token::TokenType;
use ironcalc_base::expressions::types::CellReferenceRC;
use ironcalc_base::language::get_default_language;
use ironcalc_base::locale::get_default_locale;
use ironcalc_base::types::Cell as IcCell;
use ironcalc_base::Model;

use crate::error::CoreErr;
use crate::features;

/// Largest sheet accepted: rows.
pub const MAX_ROWS: usize = 200;
/// Largest sheet accepted: columns (A..AX).
pub const MAX_COLUMNS: usize = 50;
/// Longest text accepted in one sheet cell (Excel's own cell limit).
pub const MAX_CELL_CHARS: usize = 32_767;
/// Longest formula accepted, in characters (without the leading `=`).
pub const MAX_FORMULA_CHARS: usize = 2000;
/// Deepest nesting of parentheses/braces accepted (Excel allows 64 levels).
pub const MAX_NESTING: usize = 64;
/// Largest range accepted after whole-column/row clamping (IronCalc's own
/// cap on array sizes).
pub const MAX_RANGE_CELLS: u64 = 1_000_000;
/// Last row / column of a worksheet (whole-column / whole-row references).
const LAST_ROW: i32 = 1_048_576;
const LAST_COLUMN: i32 = 16_384;
/// Row (1-based) of the cell the formula under evaluation is written to.
pub const EVAL_ROW: i32 = 1;
/// Column (1-based) of that cell: `BH`, well right of the largest sheet.
pub const EVAL_COLUMN: i32 = 60;
/// At most this many rows of a spilled result are read back.
pub const MAX_RESULT_ROWS: usize = 1000;
/// At most this many columns of a spilled result are read back.
pub const MAX_RESULT_COLUMNS: usize = 100;

const SHEET_NAME: &str = "Sheet1";

/// A sheet cell or a formula result. Errors (`#DIV/0!`, `#N/A`, ...) are
/// reported as [`Value::Text`], as IronCalc does.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Number(f64),
    Text(String),
    Bool(bool),
    Empty,
}

/// A rectangular block of values, row-major.
pub type Grid = Vec<Vec<Value>>;

/// A formula that passed [`check_formula`].
#[derive(Debug, Clone)]
pub struct CheckedFormula {
    /// The formula without the leading `=` (and surrounding whitespace).
    pub body: String,
    /// `body` with whole-column/row references clamped to the sheet area:
    /// what the engine evaluates.
    pub eval_body: String,
    /// Upper-case names of the functions it calls, sorted and unique.
    pub functions: Vec<String>,
    /// Whether it reads any cell: a reference, a range, a name, or INDIRECT/OFFSET.
    pub references_cells: bool,
}

/// Strips whitespace and one leading `=`; returns the body and its char offset
/// in `input`.
fn split_body(input: &str) -> (usize, &str) {
    let trimmed_start = input.trim_start();
    let mut offset = input[..input.len() - trimmed_start.len()].chars().count();
    let mut body = trimmed_start;
    if let Some(rest) = body.strip_prefix('=') {
        body = rest;
        offset += 1;
    }
    (offset, body.trim_end())
}

fn syntax(message: impl Into<String>, position: usize) -> CoreErr {
    CoreErr::Syntax {
        message: message.into(),
        position: Some(position),
    }
}

/// Validates `input` (with or without the leading `=`) strictly.
///
/// Positions in errors are char offsets into `input` as given.
pub fn check_formula(input: &str) -> Result<CheckedFormula, CoreErr> {
    let (offset, body) = split_body(input);
    let body_chars = body.chars().count();
    if body_chars > MAX_FORMULA_CHARS {
        return Err(CoreErr::Limit(format!(
            "formula is {body_chars} characters long; the limit is {MAX_FORMULA_CHARS}"
        )));
    }
    if body.is_empty() {
        return Err(syntax("empty formula", offset));
    }
    scan_tokens(body, offset)?;

    let context = CellReferenceRC {
        sheet: SHEET_NAME.to_string(),
        column: EVAL_COLUMN,
        row: EVAL_ROW,
    };
    let mut parser = new_parser_english(vec![SHEET_NAME.to_string()], vec![], HashMap::new());
    let node = parser.parse(body, &context);
    if let Some((message, position)) = first_parse_error(&node) {
        return Err(syntax(message, position.min(body_chars) + offset));
    }
    // The parser stops at the end of the first complete expression and ignores
    // the rest ("1 2" parses as 1). Inside parentheses the rest is an error.
    let wrapped = parser.parse(&format!("({body})"), &context);
    if let Some((_, position)) = first_parse_error(&wrapped) {
        // The parser reports the end of the unexpected token; point at its start.
        let position = token_start(body, position.saturating_sub(1)).min(body_chars);
        return Err(syntax(
            "unexpected text after the end of the formula",
            position + offset,
        ));
    }

    let eval_body = clamp_ranges(body)?;
    let mut walk = Walk::default();
    walk.visit(&node);
    Ok(CheckedFormula {
        body: body.to_string(),
        eval_body,
        functions: walk.functions.into_iter().collect(),
        references_cells: walk.references_cells,
    })
}

/// Lexes the whole body: illegal tokens (e.g. an unterminated string),
/// unbalanced parentheses/braces, and nesting beyond [`MAX_NESTING`].
/// Iterative, so it is safe on any input before the recursive parser runs.
/// `offset` (the char offset of `body` in the user's input) is added to every
/// position reported.
fn scan_tokens(body: &str, offset: usize) -> Result<(), CoreErr> {
    let mut lexer = Lexer::new(
        body,
        LexerMode::A1,
        get_default_locale(),
        get_default_language(),
    );
    let mut open: Vec<(char, usize)> = Vec::new();
    let max_tokens = body.chars().count() + 2;
    for _ in 0..=max_tokens {
        let token = lexer.next_token();
        let end = lexer.get_position().max(0) as usize;
        let start = end.saturating_sub(1);
        match token {
            TokenType::EOF => break,
            TokenType::Illegal(err) => return Err(syntax(err.message, err.position + offset)),
            TokenType::LeftParenthesis | TokenType::LeftBrace => {
                let ch = if token == TokenType::LeftParenthesis {
                    '('
                } else {
                    '{'
                };
                open.push((ch, start + offset));
                if open.len() > MAX_NESTING {
                    return Err(CoreErr::Limit(format!(
                        "formula is nested more than {MAX_NESTING} levels deep"
                    )));
                }
            }
            TokenType::RightParenthesis | TokenType::RightBrace => {
                let (want, close) = if token == TokenType::RightParenthesis {
                    ('(', ')')
                } else {
                    ('{', '}')
                };
                match open.pop() {
                    Some((ch, _)) if ch == want => {}
                    Some((ch, at)) => {
                        return Err(syntax(
                            format!("'{close}' does not match the '{ch}' opened at position {at}"),
                            start + offset,
                        ))
                    }
                    None => return Err(syntax(format!("unmatched '{close}'"), start + offset)),
                }
            }
            _ => {}
        }
    }
    if let Some((ch, at)) = open.pop() {
        let close = if ch == '(' { ')' } else { '}' };
        return Err(syntax(
            format!("missing '{close}' for the '{ch}' opened at position {at}"),
            body.chars().count() + offset,
        ));
    }
    Ok(())
}

fn column_letters(mut column: i32) -> String {
    let mut letters = Vec::new();
    while column > 0 {
        let rem = ((column - 1) % 26) as u8;
        letters.push((b'A' + rem) as char);
        column = (column - 1) / 26;
    }
    letters.iter().rev().collect()
}

fn dollar(absolute: bool) -> &'static str {
    if absolute {
        "$"
    } else {
        ""
    }
}

/// Rewrites whole-column/row ranges to the sheet area (see the module docs);
/// refuses any other range over [`MAX_RANGE_CELLS`] cells.
fn clamp_ranges(body: &str) -> Result<String, CoreErr> {
    let chars: Vec<char> = body.chars().collect();
    let mut lexer = Lexer::new(
        body,
        LexerMode::A1,
        get_default_locale(),
        get_default_language(),
    );
    let mut out = String::with_capacity(body.len());
    let mut copied = 0usize; // chars of `body` already copied to `out`
    let mut previous_end = 0usize;
    for _ in 0..=chars.len() + 1 {
        let token = lexer.next_token();
        if token == TokenType::EOF {
            break;
        }
        let end = (lexer.get_position().max(0) as usize).min(chars.len());
        let mut start = previous_end;
        while start < end && chars[start].is_whitespace() {
            start += 1;
        }
        previous_end = end;
        let TokenType::Range { sheet, left, right } = token else {
            continue;
        };
        let whole_columns = left.row == 1 && right.row == LAST_ROW;
        let whole_rows = left.column == 1 && right.column == LAST_COLUMN;
        if !whole_columns && !whole_rows {
            let cells = (i64::from(right.row - left.row).unsigned_abs() + 1)
                * (i64::from(right.column - left.column).unsigned_abs() + 1);
            if cells > MAX_RANGE_CELLS {
                let text: String = chars[start..end].iter().collect();
                return Err(CoreErr::Limit(format!(
                    "range {text} has {cells} cells; the limit is {MAX_RANGE_CELLS}"
                )));
            }
            continue;
        }
        let (mut r1, mut c1, mut r2, mut c2) = (
            (left.row, left.absolute_row),
            (left.column, left.absolute_column),
            (right.row, right.absolute_row),
            (right.column, right.absolute_column),
        );
        if whole_columns {
            r1 = (1, true);
            r2 = (MAX_ROWS as i32, true);
        }
        if whole_rows {
            c1 = (1, true);
            c2 = (MAX_COLUMNS as i32, true);
        }
        let prefix = sheet
            .map(|name| format!("'{}'!", name.replace('\'', "''")))
            .unwrap_or_default();
        out.extend(&chars[copied..start]);
        out.push_str(&format!(
            "{prefix}{}{}{}{}:{}{}{}{}",
            dollar(c1.1),
            column_letters(c1.0),
            dollar(r1.1),
            r1.0,
            dollar(c2.1),
            column_letters(c2.0),
            dollar(r2.1),
            r2.0,
        ));
        copied = end;
    }
    out.extend(&chars[copied..]);
    Ok(out)
}

/// The start (char offset, after whitespace) of the token of `body` that ends
/// at `end`; `end` itself when no token does.
fn token_start(body: &str, end: usize) -> usize {
    let chars: Vec<char> = body.chars().collect();
    let mut lexer = Lexer::new(
        body,
        LexerMode::A1,
        get_default_locale(),
        get_default_language(),
    );
    let mut previous_end = 0usize;
    for _ in 0..=chars.len() + 1 {
        if lexer.next_token() == TokenType::EOF {
            break;
        }
        let token_end = lexer.get_position().max(0) as usize;
        if token_end >= end {
            let mut start = previous_end;
            while start < token_end && chars.get(start).is_some_and(|c| c.is_whitespace()) {
                start += 1;
            }
            return start;
        }
        previous_end = token_end;
    }
    end
}

/// The first `ParseErrorKind` in the tree (the parser normally returns it at
/// the root, but lambdas can nest one).
fn first_parse_error(node: &Node) -> Option<(String, usize)> {
    let mut found = None;
    visit_nodes(node, &mut |n| {
        if found.is_none() {
            if let Node::ParseErrorKind {
                message, position, ..
            } = n
            {
                found = Some((message.clone(), *position));
            }
        }
    });
    found
}

/// Calls `f` on every node of the tree, parents first.
fn visit_nodes(node: &Node, f: &mut dyn FnMut(&Node)) {
    // An explicit stack: binary-operator chains ("1+1+1+...") make deep trees.
    let mut stack = vec![node];
    while let Some(n) = stack.pop() {
        f(n);
        match n {
            Node::OpRangeKind { left, right }
            | Node::OpConcatenateKind { left, right }
            | Node::OpSumKind { left, right, .. }
            | Node::OpProductKind { left, right, .. }
            | Node::OpPowerKind { left, right }
            | Node::CompareKind { left, right, .. } => {
                stack.push(right);
                stack.push(left);
            }
            Node::FunctionKind { args, .. } | Node::NamedFunctionKind { args, .. } => {
                stack.extend(args.iter().rev());
            }
            Node::LambdaDefKind { body, .. } => stack.push(body),
            Node::LambdaCallKind { lambda, args } => {
                stack.extend(args.iter().rev());
                stack.push(lambda);
            }
            Node::ImplicitIntersection { child, .. } | Node::SpillRangeOperator { child } => {
                stack.push(child)
            }
            Node::UnaryKind { right, .. } => stack.push(right),
            _ => {}
        }
    }
}

#[derive(Default)]
struct Walk {
    functions: BTreeSet<String>,
    references_cells: bool,
}

impl Walk {
    fn visit(&mut self, node: &Node) {
        let language = get_default_language();
        visit_nodes(node, &mut |n| match n {
            Node::FunctionKind { kind, .. } => {
                let name = kind.to_localized_name(language).to_uppercase();
                if name == "INDIRECT" || name == "OFFSET" {
                    self.references_cells = true;
                }
                self.functions.insert(name);
            }
            Node::NamedFunctionKind { name, .. } => {
                self.functions.insert(name.to_uppercase());
            }
            Node::LambdaDefKind { .. } => {
                self.functions.insert("LAMBDA".to_string());
            }
            Node::ReferenceKind { .. }
            | Node::RangeKind { .. }
            | Node::WrongReferenceKind { .. }
            | Node::WrongRangeKind { .. }
            | Node::DefinedNameKind(_)
            | Node::TableNameKind(_) => self.references_cells = true,
            _ => {}
        });
    }
}

/// A sheet laid out from A1 and snapshotted, ready to evaluate formulas on.
pub struct PreparedSheet {
    snapshot: Vec<u8>,
}

/// The result of evaluating one formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The values, at most [`MAX_RESULT_ROWS`] x [`MAX_RESULT_COLUMNS`].
    pub values: Grid,
    /// The full (untruncated) shape: (rows, columns).
    pub shape: (usize, usize),
}

impl PreparedSheet {
    /// Builds the workbook. Errors: [`CoreErr::Sheet`] for a sheet over the
    /// limits or a non-finite number.
    pub fn new(rows: &[Vec<Value>]) -> Result<Self, CoreErr> {
        validate_sheet(rows)?;
        let mut model = new_model()?;
        for (r, row) in rows.iter().enumerate() {
            for (c, value) in row.iter().enumerate() {
                let (r1, c1) = (r as i32 + 1, c as i32 + 1);
                let result = match value {
                    Value::Number(x) => model.update_cell_with_number(0, r1, c1, *x),
                    Value::Text(s) => model.update_cell_with_text(0, r1, c1, s),
                    Value::Bool(b) => model.update_cell_with_bool(0, r1, c1, *b),
                    Value::Empty => Ok(()),
                };
                result.map_err(|e| CoreErr::Sheet(format!("row {r}, column {c}: {e}")))?;
            }
        }
        Ok(PreparedSheet {
            snapshot: model.to_bytes(),
        })
    }

    /// Evaluates a checked formula on a fresh copy of the sheet.
    pub fn evaluate(&self, formula: &CheckedFormula) -> Result<Evaluation, CoreErr> {
        let mut model = Model::from_bytes(&self.snapshot, "en").map_err(CoreErr::Internal)?;
        model
            .update_cell_with_formula(0, EVAL_ROW, EVAL_COLUMN, format!("={}", formula.eval_body))
            .map_err(CoreErr::Internal)?;
        model.evaluate();
        read_result(&model)
    }
}

fn new_model() -> Result<Model<'static>, CoreErr> {
    Model::new_empty("sheet", "en", "UTC", "en").map_err(CoreErr::Internal)
}

/// Checks the sheet against the limits.
pub fn validate_sheet(rows: &[Vec<Value>]) -> Result<(), CoreErr> {
    if rows.len() > MAX_ROWS {
        return Err(CoreErr::Sheet(format!(
            "sheet has {} rows; the limit is {MAX_ROWS}",
            rows.len()
        )));
    }
    for (r, row) in rows.iter().enumerate() {
        if row.len() > MAX_COLUMNS {
            return Err(CoreErr::Sheet(format!(
                "row {r} has {} cells; the limit is {MAX_COLUMNS} columns",
                row.len()
            )));
        }
        for (c, value) in row.iter().enumerate() {
            match value {
                Value::Number(x) if !x.is_finite() => {
                    return Err(CoreErr::Sheet(format!(
                        "row {r}, column {c}: {x} is not a finite number"
                    )))
                }
                Value::Text(s) if s.chars().count() > MAX_CELL_CHARS => {
                    return Err(CoreErr::Sheet(format!(
                        "row {r}, column {c}: text longer than {MAX_CELL_CHARS} characters"
                    )))
                }
                _ => {}
            }
        }
    }
    Ok(())
}

fn read_result(model: &Model) -> Result<Evaluation, CoreErr> {
    let sheet = model
        .workbook
        .worksheets
        .first()
        .ok_or_else(|| CoreErr::Internal("workbook has no sheet".to_string()))?;
    let (width, height) = match sheet.cell(EVAL_ROW, EVAL_COLUMN).as_deref() {
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
                .get_cell_value_by_index(0, EVAL_ROW + r as i32, EVAL_COLUMN + c as i32)
                .map_err(CoreErr::Internal)?;
            row.push(match v {
                ironcalc_base::cell::CellValue::None => Value::Empty,
                ironcalc_base::cell::CellValue::String(s) => Value::Text(s),
                ironcalc_base::cell::CellValue::Number(x) => Value::Number(x),
                ironcalc_base::cell::CellValue::Boolean(b) => Value::Bool(b),
            });
        }
        values.push(row);
    }
    Ok(Evaluation {
        values,
        shape: (height, width),
    })
}

/// Rounds to Excel's 15 significant digits.
fn round15(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.14e}").parse().unwrap_or(x)
}

/// Excel-style equality of two values: numbers to 15 significant digits,
/// text case-insensitively, booleans exactly, empty only equals empty.
pub fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => round15(*x) == round15(*y),
        (Value::Text(x), Value::Text(y)) => x == y || x.to_lowercase() == y.to_lowercase(),
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Empty, Value::Empty) => true,
        _ => false,
    }
}

/// Same shape and every value equal per [`value_eq`].
pub fn evaluations_match(a: &Evaluation, b: &Evaluation) -> bool {
    a.shape == b.shape
        && a.values.len() == b.values.len()
        && a.values
            .iter()
            .zip(&b.values)
            .all(|(ra, rb)| ra.len() == rb.len() && ra.iter().zip(rb).all(|(x, y)| value_eq(x, y)))
}

/// Jaccard similarity of two sorted unique name lists; 1.0 when both are empty.
pub fn jaccard(a: &[String], b: &[String]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let sa: BTreeSet<&String> = a.iter().collect();
    let sb: BTreeSet<&String> = b.iter().collect();
    let inter = sa.intersection(&sb).count() as f64;
    let union = sa.union(&sb).count() as f64;
    inter / union
}

/// The grade of one candidate formula against the reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Grade {
    pub parses: bool,
    pub error: Option<String>,
    pub error_position: Option<usize>,
    pub candidate_value: Grid,
    pub reference_value: Grid,
    pub values_match: bool,
    pub functions_used: Vec<String>,
    pub reference_functions: Vec<String>,
    pub function_overlap: f64,
    pub hardcoded: bool,
    pub features: Vec<f64>,
}

/// A reference formula checked and evaluated once, for grading many candidates.
pub struct PreparedReference {
    pub formula: CheckedFormula,
    pub evaluation: Evaluation,
}

impl PreparedReference {
    /// Errors: [`CoreErr::Syntax`]/[`CoreErr::Limit`] for a bad reference.
    pub fn new(sheet: &PreparedSheet, reference: &str) -> Result<Self, CoreErr> {
        let formula = check_formula(reference)?;
        let evaluation = sheet.evaluate(&formula)?;
        Ok(PreparedReference {
            formula,
            evaluation,
        })
    }
}

/// Grades one candidate. Never fails: problems with the candidate are
/// reported in [`Grade::error`]. A panic inside the engine is caught.
pub fn grade(sheet: &PreparedSheet, reference: &PreparedReference, candidate: &str) -> Grade {
    let mut grade = Grade {
        parses: false,
        error: None,
        error_position: None,
        candidate_value: Vec::new(),
        reference_value: reference.evaluation.values.clone(),
        values_match: false,
        functions_used: Vec::new(),
        reference_functions: reference.formula.functions.clone(),
        function_overlap: 0.0,
        hardcoded: false,
        features: Vec::new(),
    };
    match check_formula(candidate) {
        Err(err) => {
            grade.error = Some(err.message());
            grade.error_position = err.position();
        }
        Ok(formula) => {
            grade.parses = true;
            grade.function_overlap = jaccard(&formula.functions, &reference.formula.functions);
            let evaluated =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sheet.evaluate(&formula)))
                    .unwrap_or_else(|_| {
                        Err(CoreErr::Internal("the formula engine panicked".into()))
                    });
            match evaluated {
                Ok(evaluation) => {
                    grade.values_match = evaluations_match(&evaluation, &reference.evaluation);
                    // Hard-coding only means something when the reference
                    // itself reads the sheet.
                    grade.hardcoded = grade.values_match
                        && !formula.references_cells
                        && reference.formula.references_cells;
                    grade.candidate_value = evaluation.values;
                }
                Err(err) => grade.error = Some(format!("evaluation failed: {}", err.message())),
            }
            grade.functions_used = formula.functions;
        }
    }
    grade.features = features::formula_features(&grade);
    grade
}

/// Prepares the sheet and the reference once and grades every candidate.
pub fn grade_all(
    rows: &[Vec<Value>],
    reference: &str,
    candidates: &[String],
) -> Result<Vec<Grade>, CoreErr> {
    let sheet = PreparedSheet::new(rows)?;
    let reference = PreparedReference::new(&sheet, reference)?;
    Ok(candidates
        .iter()
        .map(|c| grade(&sheet, &reference, c))
        .collect())
}

/// Checks and evaluates one formula on the sheet.
pub fn evaluate(rows: &[Vec<Value>], formula: &str) -> Result<Evaluation, CoreErr> {
    let checked = check_formula(formula)?;
    let sheet = PreparedSheet::new(rows)?;
    sheet.evaluate(&checked)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(x: f64) -> Value {
        Value::Number(x)
    }
    fn t(s: &str) -> Value {
        Value::Text(s.to_string())
    }

    fn sales() -> Vec<Vec<Value>> {
        vec![
            vec![t("Region"), t("Product"), t("Amount")],
            vec![t("East"), t("Apples"), n(10.0)],
            vec![t("West"), t("Pears"), n(20.0)],
            vec![t("East"), t("Pears"), n(30.0)],
            vec![t("North"), t("Apples"), n(40.0)],
        ]
    }

    #[test]
    fn evaluates_sumifs() {
        let e = evaluate(&sales(), "=SUMIFS(C2:C5,A2:A5,\"East\")").unwrap();
        assert_eq!(e.values, vec![vec![n(40.0)]]);
        assert_eq!(e.shape, (1, 1));
    }

    #[test]
    fn without_equals_sign() {
        let e = evaluate(&sales(), "SUM(C2:C5)").unwrap();
        assert_eq!(e.values, vec![vec![n(100.0)]]);
    }

    #[test]
    fn unique_spills_rows() {
        let e = evaluate(&sales(), "=UNIQUE(A2:A5)").unwrap();
        assert_eq!(e.shape, (3, 1));
        assert_eq!(
            e.values,
            vec![vec![t("East")], vec![t("West")], vec![t("North")]]
        );
    }

    #[test]
    fn errors_are_text() {
        let e = evaluate(&sales(), "=1/0").unwrap();
        assert_eq!(e.values, vec![vec![t("#DIV/0!")]]);
    }

    #[test]
    fn unbalanced_parenthesis_is_rejected_with_position() {
        match check_formula("=SUM(A1:A3") {
            Err(CoreErr::Syntax { position, .. }) => assert_eq!(position, Some(10)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        match check_formula("SUM(A1:A3))") {
            Err(CoreErr::Syntax { position, .. }) => assert_eq!(position, Some(10)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
    }

    #[test]
    fn unterminated_string_is_rejected() {
        assert!(matches!(
            check_formula("=\"abc"),
            Err(CoreErr::Syntax {
                position: Some(_),
                ..
            })
        ));
    }

    #[test]
    fn trailing_tokens_are_rejected() {
        match check_formula("=1 2") {
            Err(CoreErr::Syntax { position, .. }) => assert_eq!(position, Some(3)),
            other => panic!("expected a syntax error, got {other:?}"),
        }
        assert!(check_formula("=SUM(A1:A3) B1").is_err());
    }

    #[test]
    fn limits() {
        let long = format!("={}", "1+".repeat(1000) + "1");
        assert!(matches!(check_formula(&long), Err(CoreErr::Limit(_))));
        let deep = format!("={}1{}", "(".repeat(65), ")".repeat(65));
        assert!(matches!(check_formula(&deep), Err(CoreErr::Limit(_))));
        let ok = format!("={}1{}", "(".repeat(64), ")".repeat(64));
        assert!(check_formula(&ok).is_ok());
    }

    #[test]
    fn functions_and_references() {
        let f = check_formula("=INDEX(C2:C5, MATCH(\"West\", A2:A5, 0)) + sum(1)").unwrap();
        assert_eq!(f.functions, vec!["INDEX", "MATCH", "SUM"]);
        assert!(f.references_cells);
        let f = check_formula("=_xlfn.XLOOKUP(1,{1},{2})").unwrap();
        assert_eq!(f.functions, vec!["XLOOKUP"]);
        assert!(!f.references_cells);
        assert!(check_formula("=INDIRECT(\"A1\")").unwrap().references_cells);
    }

    #[test]
    fn whole_columns_and_rows_are_clamped() {
        let clamp = |f: &str| check_formula(f).unwrap().eval_body;
        assert_eq!(
            clamp("=SUMIF(A:A,\"x\",$C:$C)"),
            "SUMIF(A$1:A$200,\"x\",$C$1:$C$200)"
        );
        assert_eq!(
            clamp("SUM(2:2) + SUM($3:$4)"),
            "SUM($A2:$AX2) + SUM($A$3:$AX$4)"
        );
        assert_eq!(clamp("'Sheet1'!B:C"), "'Sheet1'!B$1:C$200");
        assert_eq!(clamp("A1:A1048576"), "A$1:A$200");
        assert_eq!(clamp("\"A:A\" & B1:C2"), "\"A:A\" & B1:C2");
        assert!(matches!(
            check_formula("=SUM(A2:Z1048576)"),
            Err(CoreErr::Limit(_))
        ));
        let e = evaluate(&sales(), "=A:A").unwrap();
        assert_eq!(e.shape, (MAX_ROWS, 1));
        let e = evaluate(&sales(), "=SUMIF(A:A,\"East\",C:C)").unwrap();
        assert_eq!(e.values, vec![vec![n(40.0)]]);
        let e = evaluate(&sales(), "=SUM(1:1)").unwrap(); // not circular
        assert_eq!(e.values, vec![vec![n(0.0)]]);
    }

    #[test]
    fn sheet_limits() {
        let too_many_rows = vec![vec![n(1.0)]; MAX_ROWS + 1];
        assert!(matches!(
            PreparedSheet::new(&too_many_rows),
            Err(CoreErr::Sheet(_))
        ));
        let too_wide = vec![vec![n(1.0); MAX_COLUMNS + 1]];
        assert!(matches!(
            PreparedSheet::new(&too_wide),
            Err(CoreErr::Sheet(_))
        ));
        assert!(matches!(
            PreparedSheet::new(&[vec![n(f64::NAN)]]),
            Err(CoreErr::Sheet(_))
        ));
        let full = vec![vec![n(1.0); MAX_COLUMNS]; MAX_ROWS];
        let e = evaluate(&full, "=SUM(A1:AX200)").unwrap();
        assert_eq!(e.values, vec![vec![n((MAX_ROWS * MAX_COLUMNS) as f64)]]);
    }

    #[test]
    fn grading() {
        let sheet = PreparedSheet::new(&sales()).unwrap();
        let reference =
            PreparedReference::new(&sheet, "=INDEX(C2:C5,MATCH(\"north\",A2:A5,0))").unwrap();
        let g = grade(&sheet, &reference, "=XLOOKUP(\"North\",A2:A5,C2:C5)");
        assert!(g.parses && g.values_match && !g.hardcoded);
        assert_eq!(g.function_overlap, 0.0);
        let g = grade(&sheet, &reference, "=40.0000000000000001");
        assert!(g.values_match && g.hardcoded);
        let g = grade(&sheet, &reference, "=41");
        assert!(!g.values_match && !g.hardcoded);
        let g = grade(&sheet, &reference, "=SUM(C2:C5");
        assert!(!g.parses);
        assert_eq!(g.error_position, Some(10));
        assert_eq!(g.features.len(), features::FEATURE_NAMES.len());
    }

    #[test]
    fn value_equality() {
        assert!(value_eq(&n(0.1 + 0.2), &n(0.3)));
        assert!(!value_eq(&n(0.3), &n(0.300000000000001)));
        assert!(value_eq(&t("East"), &t("EAST")));
        assert!(!value_eq(&t("1"), &n(1.0)));
        assert_eq!(jaccard(&[], &[]), 1.0);
        let a = vec!["A".to_string(), "B".to_string()];
        let b = vec!["B".to_string(), "C".to_string()];
        assert!((jaccard(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
    }
}
