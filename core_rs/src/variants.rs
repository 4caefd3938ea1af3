//! Hidden variants of a question's sample sheet.
//!
//! A formula that computes the right thing gives the reference's result on
//! any sheet of the same layout; one that hard-codes the answer or only works
//! by accident (a cell picked by position, a constant) does not. A variant
//! keeps the layout and the types of every cell and changes the data:
//!
//! * numbers are perturbed through one mapping for the whole sheet, so a
//!   value that appears twice (a key and its lookup) changes the same way and
//!   distinct values stay distinct; integers stay integers, decimals keep
//!   their number of decimals, signs are kept;
//! * text keys (values with a letter and no digit) are renamed, again through
//!   one mapping;
//! * the data rows (below a header row) are shuffled.
//!
//! What the reference formula names literally (`"East"`, `102`) is never
//! changed: otherwise the reference would look up something that no longer
//! exists on every variant. A column whose numbers or texts are sorted is
//! left alone and the rows are then not shuffled, because approximate-match
//! lookups (VLOOKUP(...,TRUE), MATCH(...,1)) are only defined on sorted data.
//!
//! Everything is a function of the seed: the same sheet, protected values
//! and seed give the same variants on every machine.

use std::collections::{HashMap, HashSet};

use crate::formula::{Grid, Value};

/// A small, fast, well-mixed generator (SplitMix64); reproducible everywhere.
pub struct SplitMix64(u64);

impl SplitMix64 {
    pub fn new(seed: u64) -> Self {
        SplitMix64(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_14EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in 0..n (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// FNV-1a: a stable hash (the standard library's may change between releases).
pub fn stable_hash(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0xff]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// A seed derived from the sheet and the reference, for callers that store none.
pub fn default_seed(rows: &[Vec<Value>], reference: &str) -> u64 {
    let mut bytes = Vec::new();
    for row in rows {
        for cell in row {
            match cell {
                Value::Number(x) => {
                    bytes.push(b'n');
                    bytes.extend(x.to_bits().to_le_bytes());
                }
                Value::Text(s) => {
                    bytes.push(b't');
                    bytes.extend(s.as_bytes());
                    bytes.push(0);
                }
                Value::Bool(b) => bytes.extend([b'b', u8::from(*b)]),
                Value::Empty => bytes.push(b'e'),
            }
        }
        bytes.push(b'\n');
    }
    stable_hash(&[&bytes, reference.as_bytes()])
}

/// Whether row 0 is a header: only text, above at least one row with a number.
fn has_header(rows: &[Vec<Value>]) -> bool {
    let Some(first) = rows.first() else {
        return false;
    };
    let all_text = first
        .iter()
        .all(|v| matches!(v, Value::Text(_) | Value::Empty))
        && first.iter().any(|v| matches!(v, Value::Text(_)));
    all_text
        && rows[1..]
            .iter()
            .any(|row| row.iter().any(|v| matches!(v, Value::Number(_))))
}

fn is_key_text(s: &str) -> bool {
    s.chars().any(char::is_alphabetic) && !s.chars().any(|c| c.is_ascii_digit())
}

/// Columns whose numbers (or texts) are sorted, with at least three values.
fn sorted_columns(data: &[Vec<Value>]) -> Vec<usize> {
    let width = data.iter().map(Vec::len).max().unwrap_or(0);
    let mut sorted = Vec::new();
    for c in 0..width {
        let numbers: Vec<f64> = data
            .iter()
            .filter_map(|row| match row.get(c) {
                Some(Value::Number(x)) => Some(*x),
                _ => None,
            })
            .collect();
        let texts: Vec<String> = data
            .iter()
            .filter_map(|row| match row.get(c) {
                Some(Value::Text(s)) => Some(s.to_lowercase()),
                _ => None,
            })
            .collect();
        let monotonic_numbers = numbers.len() >= 3
            && (numbers.windows(2).all(|w| w[0] <= w[1]) || numbers.windows(2).all(|w| w[0] >= w[1]));
        let monotonic_texts = texts.len() >= 3
            && texts.windows(2).any(|w| w[0] != w[1])
            && (texts.windows(2).all(|w| w[0] <= w[1]) || texts.windows(2).all(|w| w[0] >= w[1]));
        if monotonic_numbers || monotonic_texts {
            sorted.push(c);
        }
    }
    sorted
}

fn decimals(x: f64) -> i32 {
    (0..=6)
        .find(|d| {
            let scaled = x * 10f64.powi(*d);
            (scaled - scaled.round()).abs() < 1e-9 * scaled.abs().max(1.0)
        })
        .unwrap_or(6)
}

/// A different number of the same kind (sign, integer-ness, decimals).
fn perturb(x: f64, rng: &mut SplitMix64) -> f64 {
    let d = decimals(x);
    let step = 10f64.powi(-d);
    // 5% to 30% up or down; at least one unit of the last decimal.
    let fraction = 0.05 + 0.25 * rng.unit();
    let sign = if rng.below(2) == 0 { -1.0 } else { 1.0 };
    let mut delta = (x.abs() * fraction / step).round().max(1.0) * step * sign;
    if x > 0.0 && x + delta <= 0.0 || x < 0.0 && x + delta >= 0.0 {
        delta = -delta;
    }
    let scale = 10f64.powi(d);
    ((x + delta) * scale).round() / scale
}

/// The variant of `rows` number `index` for `seed`; `protected` are the
/// literals of the reference formula.
pub fn variant(rows: &[Vec<Value>], protected: &[Value], seed: u64, index: usize) -> Grid {
    let mut rng = SplitMix64::new(stable_hash(&[&seed.to_le_bytes(), &index.to_le_bytes()]));
    let header = usize::from(has_header(rows));
    let data = &rows[header.min(rows.len())..];
    let sorted = sorted_columns(data);

    let mut fixed_numbers: HashSet<u64> = HashSet::new();
    let mut fixed_texts: HashSet<String> = HashSet::new();
    for value in protected {
        match value {
            Value::Number(x) => {
                fixed_numbers.insert(x.to_bits());
                fixed_numbers.insert((-x).to_bits());
            }
            Value::Text(s) => {
                fixed_texts.insert(s.to_lowercase());
            }
            _ => {}
        }
    }
    for row in data {
        for &c in &sorted {
            match row.get(c) {
                Some(Value::Number(x)) => {
                    fixed_numbers.insert(x.to_bits());
                }
                Some(Value::Text(s)) => {
                    fixed_texts.insert(s.to_lowercase());
                }
                _ => {}
            }
        }
    }

    // Every number already on the sheet is taken, so the mapping stays one-to-one.
    let mut taken: HashSet<u64> = rows
        .iter()
        .flatten()
        .filter_map(|v| match v {
            Value::Number(x) => Some(x.to_bits()),
            _ => None,
        })
        .collect();
    let mut taken_texts: HashSet<String> = rows
        .iter()
        .flatten()
        .filter_map(|v| match v {
            Value::Text(s) => Some(s.to_lowercase()),
            _ => None,
        })
        .collect();
    let mut numbers: HashMap<u64, f64> = HashMap::new();
    let mut texts: HashMap<String, String> = HashMap::new();
    // Visit in sheet order so the mapping does not depend on hash order.
    for row in data {
        for value in row {
            match value {
                Value::Number(x) if *x != 0.0 && !fixed_numbers.contains(&x.to_bits()) => {
                    if numbers.contains_key(&x.to_bits()) {
                        continue;
                    }
                    let mut mapped = *x;
                    for _ in 0..8 {
                        let candidate = perturb(*x, &mut rng);
                        if candidate.is_finite() && !taken.contains(&candidate.to_bits()) {
                            mapped = candidate;
                            break;
                        }
                    }
                    taken.insert(mapped.to_bits());
                    numbers.insert(x.to_bits(), mapped);
                }
                Value::Text(s) if is_key_text(s) && !fixed_texts.contains(&s.to_lowercase()) => {
                    if texts.contains_key(s) {
                        continue;
                    }
                    // About half of the keys change; the rest stay recognisable.
                    let mut renamed = s.clone();
                    if rng.below(2) == 0 {
                        for _ in 0..8 {
                            let suffix = ["q", "x", "z", "v", "k"][rng.below(5)];
                            let candidate = format!("{s}{suffix}");
                            if !taken_texts.contains(&candidate.to_lowercase()) {
                                renamed = candidate;
                                break;
                            }
                        }
                    }
                    taken_texts.insert(renamed.to_lowercase());
                    texts.insert(s.clone(), renamed);
                }
                _ => {}
            }
        }
    }

    let mut order: Vec<usize> = (0..data.len()).collect();
    if sorted.is_empty() {
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i + 1));
        }
    }
    let mut out: Grid = rows[..header.min(rows.len())].to_vec();
    for &i in &order {
        out.push(
            data[i]
                .iter()
                .map(|value| match value {
                    Value::Number(x) => Value::Number(*numbers.get(&x.to_bits()).unwrap_or(x)),
                    Value::Text(s) => Value::Text(texts.get(s).cloned().unwrap_or_else(|| s.clone())),
                    other => other.clone(),
                })
                .collect(),
        );
    }
    out
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

    fn table() -> Vec<Vec<Value>> {
        let mut rows = vec![vec![t("Region"), t("Units"), t("Price")]];
        for (i, region) in ["East", "West", "North", "East", "South", "West"].iter().enumerate() {
            rows.push(vec![t(region), n((i * 7 % 5 + 3) as f64 * 10.0), n(1.25 + i as f64 * 0.5)]);
        }
        rows
    }

    #[test]
    fn deterministic_and_seed_dependent() {
        let rows = table();
        assert_eq!(variant(&rows, &[], 7, 0), variant(&rows, &[], 7, 0));
        assert_ne!(variant(&rows, &[], 7, 0), variant(&rows, &[], 7, 1));
        assert_ne!(variant(&rows, &[], 7, 0), variant(&rows, &[], 8, 0));
    }

    #[test]
    fn keeps_layout_types_header_and_protected_values() {
        let rows = table();
        for index in 0..8 {
            let v = variant(&rows, &[t("east"), n(1.75)], 42, index);
            assert_eq!(v.len(), rows.len());
            assert_eq!(v[0], rows[0]);
            for (a, b) in v.iter().zip(&rows) {
                assert_eq!(a.len(), b.len());
                for (x, y) in a.iter().zip(b) {
                    assert_eq!(std::mem::discriminant(x), std::mem::discriminant(y));
                }
            }
            let regions: Vec<&Value> = v[1..].iter().map(|r| &r[0]).collect();
            assert_eq!(regions.iter().filter(|r| ***r == t("East")).count(), 2);
            assert!(v[1..].iter().any(|r| r[2] == n(1.75)));
            // Integers stay integers, the one decimal of the prices stays.
            for row in &v[1..] {
                let Value::Number(units) = row[1] else { panic!() };
                assert_eq!(units.fract(), 0.0);
                assert!(units > 0.0);
            }
        }
    }

    #[test]
    fn changes_numbers_and_duplicates_change_together() {
        let rows = vec![
            vec![t("Id"), t("Amount")],
            vec![n(17.0), n(250.0)],
            vec![n(23.0), n(90.0)],
            vec![n(11.0), n(250.0)],
        ];
        let v = variant(&rows, &[], 3, 0);
        let mut amounts: Vec<f64> = v[1..]
            .iter()
            .map(|r| match r[1] {
                Value::Number(x) => x,
                _ => panic!("a number stays a number"),
            })
            .collect();
        amounts.sort_by(f64::total_cmp);
        // One value appears twice (the two 250s, changed alike), one once.
        let (twice, once) = if amounts[0] == amounts[1] {
            (amounts[0], amounts[2])
        } else {
            (amounts[2], amounts[0])
        };
        assert_eq!(amounts.iter().filter(|x| **x == twice).count(), 2);
        assert_ne!(twice, 250.0);
        assert_ne!(once, 90.0);
        assert!((187.0..=313.0).contains(&twice), "{twice}");
    }

    #[test]
    fn sorted_columns_are_kept_and_rows_not_shuffled() {
        let rows = vec![
            vec![t("From"), t("Rate")],
            vec![n(0.0), n(0.1)],
            vec![n(10000.0), n(0.2)],
            vec![n(50000.0), n(0.4)],
        ];
        let v = variant(&rows, &[], 5, 0);
        let from: Vec<&Value> = v.iter().map(|r| &r[0]).collect();
        assert_eq!(from, rows.iter().map(|r| &r[0]).collect::<Vec<_>>());
    }
}
