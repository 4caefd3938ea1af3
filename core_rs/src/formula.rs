//! Formula checking, evaluation and grading on top of IronCalc.
//!
//! Pure Rust (no PyO3): the Python bindings in `lib.rs` only convert values.
//!
//! The flow is:
//!
//! 1. [`check_formula`] validates a formula *strictly* (IronCalc's
//!    `set_user_input` silently closes a missing parenthesis and its parser
//!    ignores trailing tokens, so both are rejected here before the engine
//!    ever sees the formula), extracts what grading looks at (functions,
//!    references, literals, nesting) and builds the text the engine
//!    evaluates.
//! 2. [`PreparedSheet`] (`engine.rs`) keeps a live workbook of the sheet and
//!    evaluates formulas on it with a fixed clock.
//! 3. [`Question`] (`grading.rs`) grades candidates against a reference on
//!    the sample sheet and its hidden variants (`variants.rs`).
//!
//! Whole-column and whole-row references (`A:A`, `2:2`, `A1:A1048576`) are
//! evaluated as the sheet area (`A$1:A$200`, `$A2:$AX2`): the data never
//! extends beyond it, and an array operation over a million-row column costs
//! seconds and gigabytes. Other ranges over [`MAX_RANGE_CELLS`] are refused.

use std::collections::{BTreeSet, HashMap};

use ironcalc_base::expressions::lexer::{Lexer, LexerMode};
use ironcalc_base::expressions::parser::{new_parser_english, ArrayNode, Node, Parser};
use ironcalc_base::expressions::token::{OpUnary, TokenType};
use ironcalc_base::expressions::types::{CellReferenceRC, ParsedReference};
use ironcalc_base::language::get_default_language;
use ironcalc_base::locale::get_default_locale;

use crate::error::CoreErr;
pub use crate::engine::PreparedSheet;
pub use crate::grading::{Grade, Question};

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

/// Name of the sheet the data is laid out on.
pub const SHEET_NAME: &str = "Sheet1";

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

/// Functions whose result changes between recalculations of the same sheet.
pub const VOLATILE_FUNCTIONS: [&str; 9] = [
    "CELL",
    "INDIRECT",
    "INFO",
    "NOW",
    "OFFSET",
    "RAND",
    "RANDARRAY",
    "RANDBETWEEN",
    "TODAY",
];

/// Functions that exist to catch or test for errors.
const ERROR_FUNCTIONS: [&str; 6] = ["ERROR.TYPE", "IFERROR", "IFNA", "ISERR", "ISERROR", "ISNA"];

/// Seed of the stand-ins for RAND/RANDBETWEEN/RANDARRAY (see [`check_formula`]).
const RANDOM_SEED: u64 = 0x5EED_0F_E8CE1;

/// How a reference pins its rows and columns with `$`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Anchoring {
    Absolute,
    Relative,
    Mixed,
}

impl Anchoring {
    pub fn as_str(self) -> &'static str {
        match self {
            Anchoring::Absolute => "absolute",
            Anchoring::Relative => "relative",
            Anchoring::Mixed => "mixed",
        }
    }
}

/// A cell or range reference as the formula writes it. Rows and columns are
/// 1-based; a whole column spans rows 1..=1048576 here (not clamped).
#[derive(Debug, Clone, PartialEq)]
pub struct Reference {
    /// The text as written, e.g. `$C$2:$C$51` or `A:A`.
    pub text: String,
    pub sheet: Option<String>,
    pub first_row: i32,
    pub first_column: i32,
    pub last_row: i32,
    pub last_column: i32,
    pub is_range: bool,
    pub anchoring: Anchoring,
    pub whole_column: bool,
    pub whole_row: bool,
}

impl Reference {
    /// Whether every cell it covers lies inside a sheet of `rows` x `columns`.
    /// Whole columns/rows count as inside when the sheet has those columns/rows.
    pub fn inside(&self, rows: usize, columns: usize) -> bool {
        let last_row = if self.whole_column { 1 } else { self.last_row };
        let last_column = if self.whole_row { 1 } else { self.last_column };
        self.first_row >= 1
            && self.first_column >= 1
            && last_row as i64 <= rows as i64
            && last_column as i64 <= columns as i64
    }
}

/// A formula that passed [`check_formula`].
#[derive(Debug, Clone)]
pub struct CheckedFormula {
    /// The formula without the leading `=` (and surrounding whitespace).
    pub body: String,
    /// What the engine evaluates: `body` with whole-column/row references
    /// clamped to the sheet area, unqualified references qualified with the
    /// data sheet (unless [`CheckedFormula::same_sheet`]), and RAND,
    /// RANDBETWEEN and RANDARRAY replaced by seeded stand-ins.
    pub eval_body: String,
    /// Upper-case names of the functions it calls, sorted and unique.
    pub functions: Vec<String>,
    /// Whether it reads any cell: a reference, a range, a name, or INDIRECT/OFFSET.
    pub references_cells: bool,
    /// The references as written, in order.
    pub references: Vec<Reference>,
    /// Deepest nesting of function calls (0 for `=A1+1`, 2 for `=ROUND(SUM(A:A),0)`).
    pub nesting_depth: usize,
    /// Number and text literals (a negated number literal counts as negative).
    pub constants: Vec<Value>,
    /// Upper-cased, without whitespace, `$` and `_xlfn.` outside strings: two
    /// formulas with the same normal form are the same formula.
    pub normalized: String,
    /// Must be evaluated in a cell of the data sheet: INDIRECT resolves its
    /// text against the sheet of the formula.
    pub same_sheet: bool,
    /// Calls a function from [`VOLATILE_FUNCTIONS`].
    pub volatile: bool,
    /// Handles errors: IFERROR, IFNA, ISERROR..., or the if-not-found argument
    /// of XLOOKUP / the if-empty argument of FILTER.
    pub error_handling: bool,
    /// The engine's parse of [`CheckedFormula::eval_body`], kept by the first
    /// evaluation so that the other sheets of a question reuse it.
    pub(crate) installed: std::sync::OnceLock<crate::engine::Installed>,
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

thread_local! {
    // Building a parser costs more than parsing a short formula, so each
    // thread keeps one.
    static PARSER: std::cell::RefCell<Parser<'static>> = std::cell::RefCell::new(
        new_parser_english(vec![SHEET_NAME.to_string()], vec![], HashMap::new())
    );
}

fn parse(text: &str) -> Node {
    let context = CellReferenceRC {
        sheet: SHEET_NAME.to_string(),
        column: EVAL_COLUMN,
        row: EVAL_ROW,
    };
    PARSER.with(|parser| parser.borrow_mut().parse(text, &context))
}

/// Validates `input` (with or without the leading `=`) strictly.
///
/// Positions in errors are char offsets into `input` as given.
pub fn check_formula(input: &str) -> Result<CheckedFormula, CoreErr> {
    let (offset, body) = split_body(input);
    let chars: Vec<char> = body.chars().collect();
    if chars.len() > MAX_FORMULA_CHARS {
        return Err(CoreErr::Limit(format!(
            "formula is {} characters long; the limit is {MAX_FORMULA_CHARS}",
            chars.len()
        )));
    }
    if body.is_empty() {
        return Err(syntax("empty formula", offset));
    }
    let tokens = lex(body, &chars, offset)?;

    // The parser stops at the end of the first complete expression and ignores
    // the rest ("1 2" parses as 1); inside parentheses the rest is an error.
    // Parentheses leave no node, so the wrapped tree is the formula's tree.
    let node = parse(&format!("({body})"));
    if first_parse_error(&node).is_some() {
        return Err(explain_parse_error(body, chars.len(), offset));
    }

    refuse_recursion(&node)?;

    let references = collect_references(&chars, &tokens)?;
    let mut walk = Walk::default();
    walk.visit(&node);
    let same_sheet = walk.functions.contains("INDIRECT");
    let eval_body = Rewriter {
        chars: &chars,
        tokens: &tokens,
        qualify: !same_sheet,
        random_calls: std::cell::Cell::new(0),
    }
    .render(0, tokens.len());
    let volatile = VOLATILE_FUNCTIONS
        .iter()
        .any(|f| walk.functions.contains(*f));
    let error_handling =
        walk.error_arguments || ERROR_FUNCTIONS.iter().any(|f| walk.functions.contains(*f));
    Ok(CheckedFormula {
        body: body.to_string(),
        eval_body,
        functions: walk.functions.into_iter().collect(),
        references_cells: walk.references_cells,
        references,
        nesting_depth: walk.nesting_depth,
        constants: walk.constants,
        normalized: normalize(&chars),
        same_sheet,
        volatile,
        error_handling,
        installed: std::sync::OnceLock::new(),
    })
}

/// The syntax error of a body the wrapped parse rejected: the parser's own
/// message when the body alone fails, else "unexpected text" at the first
/// token after a complete expression.
fn explain_parse_error(body: &str, body_chars: usize, offset: usize) -> CoreErr {
    if let Some((message, position)) = first_parse_error(&parse(body)) {
        return syntax(message, position.min(body_chars) + offset);
    }
    let position = match first_parse_error(&parse(&format!("({body})"))) {
        // The parser reports the end of the unexpected token (counting the
        // added parenthesis); point at the token's start.
        Some((_, position)) => token_start(body, position.saturating_sub(1)).min(body_chars),
        None => body_chars,
    };
    syntax(
        "unexpected text after the end of the formula",
        position + offset,
    )
}

/// One lexer token and its char span in the body (`start` after whitespace).
struct Tok {
    kind: TokenType,
    start: usize,
    end: usize,
}

/// Lexes the whole body, rejecting illegal tokens (e.g. an unterminated
/// string), unbalanced parentheses/braces, and nesting beyond
/// [`MAX_NESTING`]. Iterative, so it is safe on any input before the
/// recursive parser runs. `offset` (the char offset of `body` in the user's
/// input) is added to every position reported.
fn lex(body: &str, chars: &[char], offset: usize) -> Result<Vec<Tok>, CoreErr> {
    let mut lexer = Lexer::new(
        body,
        LexerMode::A1,
        get_default_locale(),
        get_default_language(),
    );
    let mut tokens = Vec::new();
    let mut open: Vec<(char, usize)> = Vec::new();
    let mut previous_end = 0usize;
    for _ in 0..=chars.len() + 2 {
        let kind = lexer.next_token();
        let end = (lexer.get_position().max(0) as usize).min(chars.len());
        let mut start = previous_end;
        while start < end && chars[start].is_whitespace() {
            start += 1;
        }
        previous_end = end;
        match &kind {
            TokenType::EOF => break,
            TokenType::Illegal(err) => return Err(syntax(err.message.clone(), err.position + offset)),
            TokenType::LeftParenthesis | TokenType::LeftBrace => {
                let ch = if kind == TokenType::LeftParenthesis {
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
                let (want, close) = if kind == TokenType::RightParenthesis {
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
        tokens.push(Tok { kind, start, end });
    }
    if let Some((ch, at)) = open.pop() {
        let close = if ch == '(' { ')' } else { '}' };
        return Err(syntax(
            format!("missing '{close}' for the '{ch}' opened at position {at}"),
            chars.len() + offset,
        ));
    }
    Ok(tokens)
}

/// The references of the token stream; refuses a range over
/// [`MAX_RANGE_CELLS`] cells unless it is a whole column/row (clamped later).
fn collect_references(chars: &[char], tokens: &[Tok]) -> Result<Vec<Reference>, CoreErr> {
    let mut out = Vec::new();
    for tok in tokens {
        let text: String = chars[tok.start..tok.end].iter().collect();
        let reference = match &tok.kind {
            TokenType::Reference {
                sheet,
                row,
                column,
                absolute_column,
                absolute_row,
            } => Reference {
                text,
                sheet: sheet.clone(),
                first_row: *row,
                first_column: *column,
                last_row: *row,
                last_column: *column,
                is_range: false,
                anchoring: anchoring(&[*absolute_row, *absolute_column]),
                whole_column: false,
                whole_row: false,
            },
            TokenType::Range { sheet, left, right } => {
                let whole_column = left.row == 1 && right.row == LAST_ROW;
                let whole_row = left.column == 1 && right.column == LAST_COLUMN;
                let cells = (i64::from(right.row - left.row).unsigned_abs() + 1)
                    * (i64::from(right.column - left.column).unsigned_abs() + 1);
                if !whole_column && !whole_row && cells > MAX_RANGE_CELLS {
                    return Err(CoreErr::Limit(format!(
                        "range {text} has {cells} cells; the limit is {MAX_RANGE_CELLS}"
                    )));
                }
                // A whole column has no row to pin (and vice versa).
                let mut pins = Vec::with_capacity(4);
                if !whole_column {
                    pins.extend([left.absolute_row, right.absolute_row]);
                }
                if !whole_row {
                    pins.extend([left.absolute_column, right.absolute_column]);
                }
                Reference {
                    text,
                    sheet: sheet.clone(),
                    first_row: left.row.min(right.row),
                    first_column: left.column.min(right.column),
                    last_row: left.row.max(right.row),
                    last_column: left.column.max(right.column),
                    is_range: true,
                    anchoring: anchoring(&pins),
                    whole_column,
                    whole_row,
                }
            }
            _ => continue,
        };
        out.push(reference);
    }
    Ok(out)
}

fn anchoring(pins: &[bool]) -> Anchoring {
    if pins.iter().all(|p| *p) {
        Anchoring::Absolute
    } else if pins.iter().any(|p| *p) {
        Anchoring::Mixed
    } else {
        Anchoring::Relative
    }
}

/// Upper-case, without whitespace, `$` and `_xlfn.`/`_xlws.` outside strings.
fn normalize(chars: &[char]) -> String {
    let mut out = String::with_capacity(chars.len());
    let mut in_string = false;
    for &c in chars {
        if c == '"' {
            in_string = !in_string;
            out.push(c);
        } else if in_string {
            out.push(c);
        } else if !c.is_whitespace() && c != '$' {
            out.extend(c.to_uppercase());
        }
    }
    out.replace("_XLFN.", "").replace("_XLWS.", "")
}

/// SplitMix64: a stand-in random number in [0, 1) for call `k` of a formula.
fn seeded_unit(k: u64) -> f64 {
    let mut z = RANDOM_SEED.wrapping_add(k.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_14EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// Builds the text the engine evaluates from the tokens (see
/// [`CheckedFormula::eval_body`]).
///
/// IronCalc draws RAND from the thread's OS-seeded generator, which cannot be
/// seeded from outside, so the random functions are replaced by seeded
/// numbers: call `k` of the formula gets [`seeded_unit`]`(k)`. The same
/// formula therefore always evaluates to the same value, and `RAND()` in a
/// candidate equals `RAND()` in the reference.
struct Rewriter<'a> {
    chars: &'a [char],
    tokens: &'a [Tok],
    qualify: bool,
    random_calls: std::cell::Cell<u64>,
}

impl Rewriter<'_> {
    fn text(&self, from: usize, to: usize) -> String {
        self.chars[from..to].iter().collect()
    }

    /// Renders tokens `a..b`, keeping the whitespace between them.
    fn render(&self, a: usize, b: usize) -> String {
        let mut out = String::new();
        let mut t = a;
        while t < b {
            if t > a {
                out.push_str(&self.text(self.tokens[t - 1].end, self.tokens[t].start));
            }
            t = self.render_one(t, b, &mut out);
        }
        out
    }

    /// Renders the token (or the call) at `t`; returns the next token index.
    fn render_one(&self, t: usize, b: usize, out: &mut String) -> usize {
        let tok = &self.tokens[t];
        match &tok.kind {
            TokenType::Ident(name) if t + 1 < b && self.tokens[t + 1].kind == TokenType::LeftParenthesis => {
                let upper = name.to_uppercase();
                let upper = upper.trim_start_matches("_XLFN.");
                if matches!(upper, "RAND" | "RANDBETWEEN" | "RANDARRAY" | "SORT" | "_XLWS.SORT") {
                    if let Some(close) = self.matching_close(t + 1, b) {
                        let args = self.arguments(t + 2, close);
                        if upper.ends_with("SORT") {
                            out.push_str(&sort_with_defaults(&args));
                        } else {
                            out.push_str(&self.random_stand_in(upper, &args));
                        }
                        return close + 1;
                    }
                }
                out.push_str(&self.text(tok.start, tok.end));
            }
            TokenType::Reference { sheet: None, .. } if self.qualify => {
                out.push_str(&format!("{SHEET_NAME}!"));
                out.push_str(&self.text(tok.start, tok.end));
            }
            TokenType::Range { sheet, left, right } => {
                let whole_columns = left.row == 1 && right.row == LAST_ROW;
                let whole_rows = left.column == 1 && right.column == LAST_COLUMN;
                let prefix = match sheet {
                    Some(name) => format!("'{}'!", name.replace('\'', "''")),
                    None if self.qualify => format!("{SHEET_NAME}!"),
                    None => String::new(),
                };
                if whole_columns || whole_rows {
                    out.push_str(&prefix);
                    out.push_str(&clamped_range(left, right, whole_columns, whole_rows));
                } else {
                    if sheet.is_none() {
                        out.push_str(&prefix);
                    }
                    out.push_str(&self.text(tok.start, tok.end));
                }
            }
            _ => out.push_str(&self.text(tok.start, tok.end)),
        }
        t + 1
    }

    /// Index of the `)` closing the `(` at `open`, before `b`.
    fn matching_close(&self, open: usize, b: usize) -> Option<usize> {
        let mut depth = 0usize;
        for t in open..b {
            match self.tokens[t].kind {
                TokenType::LeftParenthesis | TokenType::LeftBrace => depth += 1,
                TokenType::RightParenthesis | TokenType::RightBrace => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(t);
                    }
                }
                _ => {}
            }
        }
        None
    }

    /// The rendered arguments between `a` and `b` (exclusive), split at
    /// top-level commas; an omitted argument is an empty string.
    fn arguments(&self, a: usize, b: usize) -> Vec<String> {
        if a >= b {
            return Vec::new();
        }
        let mut args = Vec::new();
        let mut depth = 0usize;
        let mut from = a;
        for t in a..b {
            match self.tokens[t].kind {
                TokenType::LeftParenthesis | TokenType::LeftBrace => depth += 1,
                TokenType::RightParenthesis | TokenType::RightBrace => depth -= 1,
                TokenType::Comma if depth == 0 => {
                    args.push(self.render(from, t));
                    from = t + 1;
                }
                _ => {}
            }
        }
        args.push(self.render(from, b));
        args
    }

    fn random_stand_in(&self, function: &str, args: &[String]) -> String {
        let k = self.random_calls.get();
        self.random_calls.set(k + 1);
        let u = format!("{:.17}", seeded_unit(k));
        let arg = |i: usize, default: &str| match args.get(i).map(|a| a.trim()) {
            Some(a) if !a.is_empty() => format!("({a})"),
            _ => default.to_string(),
        };
        match function {
            "RAND" => u,
            // Excel's bounds are integers; the result lies in [bottom, top].
            "RANDBETWEEN" => {
                let (lo, hi) = (arg(0, "0"), arg(1, "0"));
                format!("({lo}+INT({u}*({hi}-{lo}+1)))")
            }
            _ => {
                // A fixed, evenly spread sequence: the golden-ratio additive recurrence.
                let (rows, cols) = (arg(0, "1"), arg(1, "1"));
                let (lo, hi, whole) = (arg(2, "0"), arg(3, "1"), arg(4, "FALSE"));
                // x-INT(x), not MOD(x,1): IronCalc 0.9's MOD does not take arrays.
                let spread = format!("(SEQUENCE({rows},{cols})*0.6180339887498949+{u})");
                let unit = format!("({spread}-INT({spread}))");
                format!("IF({whole},{lo}+INT({unit}*({hi}-{lo}+1)),{lo}+{unit}*({hi}-{lo}))")
            }
        }
    }
}

/// IronCalc 0.9 returns #VALUE! for SORT with an omitted argument
/// (`SORT(r,,-1)`); Excel's defaults (sort index 1, ascending 1) are filled in.
fn sort_with_defaults(args: &[String]) -> String {
    let filled: Vec<&str> = args
        .iter()
        .enumerate()
        .map(|(i, a)| match a.trim() {
            "" if i == 1 || i == 2 => "1",
            other => other,
        })
        .collect();
    format!("SORT({})", filled.join(","))
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

/// A whole-column/row range rewritten to the sheet area (see the module docs).
fn clamped_range(
    left: &ParsedReference,
    right: &ParsedReference,
    whole_columns: bool,
    whole_rows: bool,
) -> String {
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
    format!(
        "{}{}{}{}:{}{}{}{}",
        dollar(c1.1),
        column_letters(c1.0),
        dollar(r1.1),
        r1.0,
        dollar(c2.1),
        column_letters(c2.0),
        dollar(r2.1),
        r2.0,
    )
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
    visit_nodes(node, &mut |n, _| {
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

/// Calls `f` on every node of the tree, parents first, with the number of
/// function calls around the node.
fn visit_nodes(node: &Node, f: &mut dyn FnMut(&Node, usize)) {
    // An explicit stack: binary-operator chains ("1+1+1+...") make deep trees.
    let mut stack = vec![(node, 0usize)];
    while let Some((n, depth)) = stack.pop() {
        f(n, depth);
        match n {
            Node::OpRangeKind { left, right }
            | Node::OpConcatenateKind { left, right }
            | Node::OpSumKind { left, right, .. }
            | Node::OpProductKind { left, right, .. }
            | Node::OpPowerKind { left, right }
            | Node::CompareKind { left, right, .. } => {
                stack.push((right, depth));
                stack.push((left, depth));
            }
            Node::FunctionKind { args, .. } | Node::NamedFunctionKind { args, .. } => {
                stack.extend(args.iter().rev().map(|a| (a, depth + 1)));
            }
            Node::LambdaDefKind { body, .. } => stack.push((body, depth + 1)),
            Node::LambdaCallKind { lambda, args } => {
                stack.extend(args.iter().rev().map(|a| (a, depth + 1)));
                stack.push((lambda, depth));
            }
            Node::ImplicitIntersection { child, .. } | Node::SpillRangeOperator { child } => {
                stack.push((child, depth))
            }
            Node::UnaryKind { right, .. } => stack.push((right, depth)),
            _ => {}
        }
    }
}

/// Refuses a formula that passes a function to a function of its own (a LET name or a
/// LAMBDA parameter called like a function).
///
/// That is the only way a formula can recurse (a LET name is not in scope in its own
/// definition, and the sample sheets define no names), and the engine has no depth
/// limit: `=LET(f,LAMBDA(g,n,IF(n=0,0,1+g(g,n-1))),f(f,100000))` overflows any stack
/// and takes the process down. Built-in higher-order functions (MAP, REDUCE, BYROW...)
/// may still take LAMBDAs: they call them with values, never with a function.
///
/// A name counts as a function when the formula calls it, when LET binds it to a
/// LAMBDA, or when LET aliases it to (or from) such a name.
fn refuse_recursion(node: &Node) -> Result<(), CoreErr> {
    let language = get_default_language();
    let mut functions = BTreeSet::new();
    let mut aliases = Vec::new();
    visit_nodes(node, &mut |n, _| match n {
        Node::NamedFunctionKind { name, .. } => {
            functions.insert(name.to_lowercase());
        }
        Node::FunctionKind { kind, args } if kind.to_localized_name(language).eq_ignore_ascii_case("LET") => {
            // LET(name1, value1, name2, value2, ..., body): the body is the odd one out.
            for pair in args.chunks(2) {
                if let [Node::NamedVariableKind { name, .. }, value] = pair {
                    match value {
                        Node::LambdaDefKind { .. } => {
                            functions.insert(name.to_lowercase());
                        }
                        Node::NamedVariableKind { name: other, .. } => {
                            aliases.push((name.to_lowercase(), other.to_lowercase()))
                        }
                        _ => {}
                    }
                }
            }
        }
        _ => {}
    });
    while let Some((a, b)) = aliases
        .iter()
        .find(|(a, b)| functions.contains(a) != functions.contains(b))
    {
        let (a, b) = (a.clone(), b.clone());
        functions.insert(a);
        functions.insert(b);
    }
    let mut passed = None;
    visit_nodes(node, &mut |n, _| {
        if let Node::NamedFunctionKind { args, .. } | Node::LambdaCallKind { args, .. } = n {
            for arg in args {
                match arg {
                    Node::LambdaDefKind { .. } => passed = passed.take().or(Some("a LAMBDA".to_string())),
                    Node::NamedVariableKind { name, .. } if functions.contains(&name.to_lowercase()) => {
                        passed = passed.take().or(Some(name.clone()))
                    }
                    _ => {}
                }
            }
        }
    });
    match passed {
        Some(what) => Err(CoreErr::Limit(format!(
            "{what} is passed as a function to a LAMBDA of the formula's own; recursion is not \
             supported (built-ins such as MAP and REDUCE may take LAMBDAs)"
        ))),
        None => Ok(()),
    }
}

#[derive(Default)]
struct Walk {
    functions: BTreeSet<String>,
    references_cells: bool,
    nesting_depth: usize,
    constants: Vec<Value>,
    error_arguments: bool,
}

impl Walk {
    fn visit(&mut self, node: &Node) {
        let language = get_default_language();
        visit_nodes(node, &mut |n, depth| match n {
            Node::FunctionKind { kind, args } => {
                let name = kind.to_localized_name(language).to_uppercase();
                if name == "INDIRECT" || name == "OFFSET" {
                    self.references_cells = true;
                }
                let given = |i: usize| args.get(i).is_some_and(|a| !matches!(a, Node::EmptyArgKind));
                if (name == "XLOOKUP" && given(3)) || (name == "FILTER" && given(2)) {
                    self.error_arguments = true;
                }
                self.nesting_depth = self.nesting_depth.max(depth + 1);
                self.functions.insert(name);
            }
            Node::NamedFunctionKind { name, .. } => {
                self.nesting_depth = self.nesting_depth.max(depth + 1);
                self.functions.insert(name.to_uppercase());
            }
            Node::LambdaDefKind { .. } => {
                self.nesting_depth = self.nesting_depth.max(depth + 1);
                self.functions.insert("LAMBDA".to_string());
            }
            Node::NumberKind(x) => self.constants.push(Value::Number(*x)),
            Node::StringKind(s) => self.constants.push(Value::Text(s.clone())),
            Node::UnaryKind {
                kind: OpUnary::Minus,
                right,
            } => {
                // "-5" is a negated literal: record -5 (5 itself is recorded too).
                if let Node::NumberKind(x) = right.as_ref() {
                    self.constants.push(Value::Number(-x));
                }
            }
            Node::ArrayKind(rows) => {
                for cell in rows.iter().flatten() {
                    match cell {
                        ArrayNode::Number(x) => self.constants.push(Value::Number(*x)),
                        ArrayNode::String(s) => self.constants.push(Value::Text(s.clone())),
                        _ => {}
                    }
                }
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

/// The result of evaluating one formula.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The values, at most [`MAX_RESULT_ROWS`] x [`MAX_RESULT_COLUMNS`].
    pub values: Grid,
    /// The full (untruncated) shape: (rows, columns).
    pub shape: (usize, usize),
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

/// Rounds to Excel's 15 significant digits.
fn round15(x: f64) -> f64 {
    if x == 0.0 || !x.is_finite() {
        return x;
    }
    format!("{x:.14e}").parse().unwrap_or(x)
}

/// Relative difference below which two numbers are the same result computed two
/// ways: `C5/B5-1` and `(C5-B5)/B5` differ by a few units in the last place,
/// which can straddle a 15-digit rounding boundary. About 9 ulps: a difference
/// in the 15th significant digit (>= 1e-15 relative, mostly more) stays a difference.
const SAME_NUMBER_RELATIVE: f64 = 2e-15;

/// Excel-style equality of two values: numbers to 15 significant digits (or
/// within rounding error of each other), text case-insensitively, booleans
/// exactly, empty only equals empty.
pub fn value_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            round15(*x) == round15(*y) || (x - y).abs() <= SAME_NUMBER_RELATIVE * x.abs().max(y.abs())
        }
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

/// Prepares the sheet and the reference once and grades every candidate.
pub fn grade_all(
    rows: &[Vec<Value>],
    reference: &str,
    candidates: &[String],
    seed: Option<u64>,
    variants: usize,
) -> Result<Vec<Grade>, CoreErr> {
    let question = Question::with_reference(rows, reference, seed, variants)?;
    Ok(candidates.iter().map(|c| question.grade(c)).collect())
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
    use crate::features;

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
    fn recursion_is_refused_before_it_can_overflow_the_stack() {
        for formula in [
            "=LET(f,LAMBDA(g,n,IF(n=0,0,1+g(g,n-1))),f(f,100000))",
            "=LET(f,LAMBDA(g,n,IF(n=0,0,1+g(g,n-1))),f(f,10))",
            // Through an alias, and the fixed-point combinator's self-application.
            "=LET(f,LAMBDA(g,n,LET(h,g,IF(n=0,0,1+h(g,n-1)))),f(f,3))",
            "=LET(y,LAMBDA(x,x(x)),y(y))",
            "=LAMBDA(g,g(g))(LAMBDA(g,g(g)))",
        ] {
            match check_formula(formula) {
                Err(CoreErr::Limit(message)) => assert!(message.contains("recursion"), "{formula}: {message}"),
                other => panic!("{formula}: expected a limit error, got {other:?}"),
            }
        }
        for formula in [
            "=LET(sq,LAMBDA(x,x*x),n,5,sq(n))",
            "=MAP(A1:A3,LAMBDA(v,v*2))",
            "=LET(sq,LAMBDA(x,x*x),MAP(A1:A3,sq))",
            "=REDUCE(0,A1:A3,LAMBDA(acc,v,acc+v))",
            "=LAMBDA(a,b,a+b)(1,2)",
        ] {
            assert!(check_formula(formula).is_ok(), "{formula}");
        }
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
            "SUMIF(Sheet1!A$1:A$200,\"x\",Sheet1!$C$1:$C$200)"
        );
        assert_eq!(
            clamp("SUM(2:2) + SUM($3:$4)"),
            "SUM(Sheet1!$A2:$AX2) + SUM(Sheet1!$A$3:$AX$4)"
        );
        assert_eq!(clamp("'Sheet1'!B:C"), "'Sheet1'!B$1:C$200");
        assert_eq!(clamp("A1:A1048576"), "Sheet1!A$1:A$200");
        assert_eq!(clamp("\"A:A\" & B1:C2"), "\"A:A\" & Sheet1!B1:C2");
        assert_eq!(clamp("SORT(A1:A3,,-1)"), "SORT(Sheet1!A1:A3,1,-1)");
        assert_eq!(clamp("_xlfn._xlws.SORT(A:A, 1)"), "SORT(Sheet1!A$1:A$200,1)");
        // INDIRECT resolves text against the formula's own sheet: not qualified.
        assert_eq!(clamp("INDIRECT(\"A1\")+A:A"), "INDIRECT(\"A1\")+A$1:A$200");
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
        let q = Question::with_reference(&sales(), "=INDEX(C2:C5,MATCH(\"north\",A2:A5,0))", Some(1), 4)
            .unwrap();
        let g = q.grade("=XLOOKUP(\"North\",A2:A5,C2:C5)");
        assert!(g.parses && g.sample_match && g.values_match && !g.hardcoded);
        assert_eq!(g.function_overlap, 0.0);
        assert_eq!(g.equivalence_class, "equivalent");
        let g = q.grade("=40.0000000000000001");
        assert!(g.sample_match && g.hardcoded);
        let g = q.grade("=41");
        assert!(!g.values_match && !g.hardcoded);
        let g = q.grade("=SUM(C2:C5");
        assert!(!g.parses);
        assert_eq!(g.error_position, Some(10));
        assert_eq!(g.features.len(), features::FEATURE_NAMES.len());
    }

    #[test]
    fn value_equality() {
        assert!(value_eq(&n(0.1 + 0.2), &n(0.3)));
        // 0.1499999999999999 rounds to 0.149999999999999 at 15 digits, 0.15 stays.
        assert!(value_eq(&n(1.15 - 1.0), &n(0.15)));
        assert!(value_eq(&n(1450.0 / 1200.0 - 1.0), &n((1450.0 - 1200.0) / 1200.0)));
        assert!(!value_eq(&n(0.3), &n(0.300000000000001)));
        assert!(!value_eq(&n(0.15), &n(0.1500001)));
        assert!(!value_eq(&n(0.0), &n(1e-300)));
        assert!(value_eq(&t("East"), &t("EAST")));
        assert!(!value_eq(&t("1"), &n(1.0)));
        assert_eq!(jaccard(&[], &[]), 1.0);
        let a = vec!["A".to_string(), "B".to_string()];
        let b = vec!["B".to_string(), "C".to_string()];
        assert!((jaccard(&a, &b) - 1.0 / 3.0).abs() < 1e-12);
    }
}
