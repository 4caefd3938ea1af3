//! Features of a free-text answer: rubric criteria hit, recall of the
//! reference answers' content words, relative length and Excel vocabulary.
//!
//! Pure Rust and deterministic. Text is normalised to lower-case
//! Unicode-aware word tokens (`char::is_alphanumeric`); an apostrophe, a `$`
//! or a `.` *inside* a word does not split it (`don't` -> `dont`, `$A$1` ->
//! `a1`, `NORM.DIST` -> `norm.dist`). Tokens are compared through a *key*:
//! the token with a simple plural ending removed (`references` ->
//! `reference`, `matches` -> `match`, `queries` -> `query`), except for Excel
//! function names, so `SUMIFS` and `SUMIF` stay different.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use rustc_hash::{FxHashMap, FxHashSet, FxHasher};

use crate::excel_names::EXCEL_FUNCTIONS;
use crate::features;

/// One word of a text.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// Lower-cased word.
    pub norm: String,
    /// The comparison key when it differs from `norm` (see [`Token::key`]).
    key: Option<String>,
    /// The word was written in upper case (and has at least one letter).
    pub upper: bool,
    /// The word is directly followed by `(` (spaces allowed), like a call.
    pub call: bool,
}

impl Token {
    /// Comparison key: `norm` singularised (unless it is a function name).
    pub fn key(&self) -> &str {
        self.key.as_deref().unwrap_or(&self.norm)
    }
}

/// A rubric criterion: a name, the terms (words or phrases) that show it, a weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Criterion {
    pub name: String,
    pub terms: Vec<String>,
    pub weight: f64,
}

/// Features of one answer.
#[derive(Debug, Clone, PartialEq)]
pub struct TextFeatures {
    pub token_count: usize,
    pub criteria_hits: Vec<bool>,
    pub matched_terms: Vec<Vec<String>>,
    pub concept_coverage: f64,
    pub reference_recall: f64,
    pub length_ratio: f64,
    pub excel_vocab: usize,
    pub features: Vec<f64>,
}

/// Cap of [`TextFeatures::length_ratio`].
pub const MAX_LENGTH_RATIO: f64 = 2.0;

#[rustfmt::skip]
const STOPWORDS: &[&str] = &[
    "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
    "are", "aren", "arent", "as", "at", "be", "because", "been", "before", "being", "below",
    "between", "both", "but", "by", "can", "cannot", "cant", "could", "couldnt", "did", "didnt",
    "do", "does", "doesnt", "doing", "dont", "down", "during", "e.g", "each", "either", "etc",
    "few", "for", "from", "further", "get", "gets", "got", "had", "hadnt", "has", "hasnt",
    "have", "havent", "having", "he", "her", "here", "hers", "herself", "him", "himself", "his",
    "how", "i", "i.e", "if", "im", "in", "into", "is", "isnt", "it", "its", "itself", "ive",
    "just", "let", "lets", "like", "may", "me", "might", "more", "most", "much", "must", "my",
    "myself", "no", "nor", "not", "now", "of", "off", "on", "once", "one", "only", "or",
    "other", "our", "ours", "ourselves", "out", "over", "own", "same", "shall", "she", "should",
    "so", "some", "such", "than", "that", "thats", "the", "their", "theirs", "them",
    "themselves", "then", "there", "these", "they", "this", "those", "through", "to", "too",
    "under", "until", "up", "us", "use", "used", "uses", "using", "very", "via", "was", "wasnt",
    "we", "were", "what", "when", "where", "whether", "which", "while", "who", "whom", "why",
    "will", "with", "within", "without", "would", "wont", "you", "your", "yours", "yourself",
    "yourselves",
];

/// Function names that are also everyday English words: in prose they only
/// count as Excel vocabulary when written in upper case or called (`if(`).
#[rustfmt::skip]
const AMBIGUOUS_FUNCTIONS: &[&str] = &[
    "address", "and", "areas", "base", "cell", "char", "choose", "clean", "code", "column",
    "columns", "complex", "convert", "count", "date", "day", "days", "decimal", "degrees",
    "delta", "drop", "duration", "effect", "even", "exact", "expand", "false", "find", "fixed",
    "floor", "forecast", "frequency", "growth", "hour", "if", "index", "info", "int", "left",
    "let", "ln", "log", "lower", "map", "match", "max", "mid", "min", "minute", "mode", "month",
    "n", "na", "nominal", "not", "now", "odd", "or", "pi", "power", "price", "product",
    "proper", "rank", "rate", "received", "reduce", "replace", "right", "round", "row", "rows",
    "scan", "search", "second", "sheet", "sheets", "sign", "sort", "sum", "switch", "t", "take",
    "text", "time", "today", "trend", "trim", "true", "type", "upper", "value", "year", "yield",
];

/// Excel concepts counted as vocabulary (matched as token sequences, longest first).
#[rustfmt::skip]
const CONCEPTS: &[&str] = &[
    "absolute reference", "relative reference", "mixed reference", "cell reference",
    "structured reference", "circular reference", "3d reference", "named range", "defined name",
    "name manager", "pivot table", "pivottable", "pivot chart", "pivot", "power query",
    "power pivot", "data model", "conditional formatting", "data validation", "drop down list",
    "dropdown", "array formula", "dynamic array", "spill range", "spill", "spills", "lookup",
    "lookup value", "lookup table", "lookup array", "return array", "exact match",
    "approximate match", "wildcard", "criteria range", "sum range", "fill handle", "autofill",
    "flash fill", "autosum", "freeze panes", "goal seek", "scenario manager",
    "what if analysis", "solver", "macro", "vba", "slicer", "sparkline", "trendline",
    "text to columns", "remove duplicates", "advanced filter", "autofilter", "excel table",
    "format as table", "number format", "custom format", "workbook", "worksheet", "spreadsheet",
    "formula", "formula bar", "paste special", "helper column", "nested if", "logical test",
    "error handling", "iterative calculation", "volatile", "f4", "ctrl shift enter",
    "index match", "subtotal", "data table", "power bi", "vlookup", "hlookup", "xlookup",
    "sumifs", "countifs", "iferror", "dollar sign",
];

fn is_joiner(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}' | '.')
}

/// The char at byte `i` of `text` and its length in bytes.
#[inline]
fn char_at(text: &str, i: usize) -> Option<(char, usize)> {
    let b = *text.as_bytes().get(i)?;
    if b.is_ascii() {
        return Some((b as char, 1));
    }
    text.get(i..)?.chars().next().map(|c| (c, c.len_utf8()))
}

/// Splits `text` into word tokens (see the module documentation).
pub fn tokenize(text: &str) -> Vec<Token> {
    let mut tokens = Vec::with_capacity(text.len() / 6 + 1);
    let mut i = 0;
    while let Some((c, width)) = char_at(text, i) {
        // Skip to the start of a word ('$' directly before a word is dropped).
        if !c.is_alphanumeric() {
            i += width;
            continue;
        }
        // One allocation for most words; the word is lower-cased in place below.
        let mut norm = String::with_capacity(24);
        let (mut ascii, mut has_letter, mut has_lower) = (true, false, false);
        while let Some((c, width)) = char_at(text, i) {
            let next_alnum = char_at(text, i + width).is_some_and(|(n, _)| n.is_alphanumeric());
            if c.is_alphanumeric() {
                norm.push(c);
                ascii &= c.is_ascii();
                has_letter |= c.is_alphabetic();
                has_lower |= c.is_lowercase();
            } else if c == '$' && next_alnum {
                // `A$1` -> `A1`
            } else if is_joiner(c) && next_alnum {
                if c == '.' {
                    norm.push('.');
                }
            } else {
                break;
            }
            i += width;
        }
        let call = text[i..].trim_start().starts_with('(');
        let upper = has_letter && !has_lower;
        // `str::to_lowercase` knows context (a final sigma); ASCII needs none.
        let norm = if ascii {
            norm.make_ascii_lowercase();
            norm
        } else {
            norm.to_lowercase()
        };
        let key = singular(&norm);
        tokens.push(Token {
            norm,
            key,
            upper,
            call,
        });
    }
    tokens
}

fn function_set() -> &'static FxHashSet<String> {
    static SET: OnceLock<FxHashSet<String>> = OnceLock::new();
    SET.get_or_init(|| EXCEL_FUNCTIONS.iter().map(|f| f.to_lowercase()).collect())
}

fn stopword_set() -> &'static FxHashSet<&'static str> {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| STOPWORDS.iter().copied().collect())
}

fn ambiguous_set() -> &'static FxHashSet<&'static str> {
    static SET: OnceLock<FxHashSet<&'static str>> = OnceLock::new();
    SET.get_or_init(|| AMBIGUOUS_FUNCTIONS.iter().copied().collect())
}

/// Concept phrases as key sequences, indexed by their first key, longest first.
fn concept_index() -> &'static FxHashMap<String, Vec<Vec<String>>> {
    static INDEX: OnceLock<FxHashMap<String, Vec<Vec<String>>>> = OnceLock::new();
    INDEX.get_or_init(|| {
        let mut index: FxHashMap<String, Vec<Vec<String>>> = FxHashMap::default();
        for phrase in CONCEPTS {
            let keys: Vec<String> = tokenize(phrase)
                .iter()
                .map(|t| t.key().to_string())
                .collect();
            if let Some(first) = keys.first() {
                index.entry(first.clone()).or_default().push(keys);
            }
        }
        for phrases in index.values_mut() {
            phrases.sort_by_key(|p| std::cmp::Reverse(p.len()));
            phrases.dedup();
        }
        index
    })
}

/// Removes a simple English plural ending; leaves function names, words with
/// digits and short words alone.
pub fn key_of(norm: &str) -> String {
    singular(norm).unwrap_or_else(|| norm.to_string())
}

/// [`key_of`] when it differs from `norm`.
fn singular(norm: &str) -> Option<String> {
    let (keep, y) = singular_len(norm)?;
    // Only a word that would change needs the (slower) function-name check.
    if function_set().contains(norm) {
        return None;
    }
    let mut key = String::with_capacity(keep + 1);
    key.push_str(&norm[..keep]);
    if y {
        key.push('y');
    }
    Some(key)
}

/// How a plural ending changes `norm`: the byte length of the prefix kept
/// and whether a `y` follows it; None when it stays as it is.
fn singular_len(norm: &str) -> Option<(usize, bool)> {
    if !norm.chars().all(char::is_alphabetic) {
        return None;
    }
    let n = norm.chars().count();
    let len = norm.len();
    if n > 4 && norm.ends_with("ies") {
        return Some((len - 3, true));
    }
    if n > 4
        && (norm.ends_with("sses")
            || norm.ends_with("xes")
            || norm.ends_with("ches")
            || norm.ends_with("shes")
            || norm.ends_with("zes"))
    {
        return Some((len - 2, false));
    }
    if n > 3
        && norm.ends_with('s')
        && !norm.ends_with("ss")
        && !norm.ends_with("us")
        && !norm.ends_with("is")
    {
        return Some((len - 1, false));
    }
    None
}

/// A cell address such as `a1` or `xfd1048576` (after `$` removal).
fn is_cell_address(norm: &str) -> bool {
    let letters = norm.chars().take_while(|c| c.is_ascii_lowercase()).count();
    let digits = norm.len() - letters;
    (1..=3).contains(&letters)
        && (1..=7).contains(&digits)
        && norm[letters..].chars().all(|c| c.is_ascii_digit())
        && !norm[letters..].starts_with('0')
}

/// Counts Excel vocabulary: concept phrases (longest match, no overlaps),
/// function names (see [`AMBIGUOUS_FUNCTIONS`]) and cell addresses.
pub fn excel_vocab(tokens: &[Token]) -> usize {
    let index = concept_index();
    let functions = function_set();
    let ambiguous = ambiguous_set();
    let mut count = 0;
    let mut i = 0;
    while i < tokens.len() {
        let phrase_len = index.get(tokens[i].key()).and_then(|phrases| {
            phrases
                .iter()
                .find(|p| starts_with_keys(&tokens[i..], p))
                .map(Vec::len)
        });
        if let Some(len) = phrase_len {
            count += 1;
            i += len;
            continue;
        }
        let t = &tokens[i];
        if functions.contains(&t.norm) {
            let explicit = t.call || (t.upper && t.norm.chars().count() >= 2);
            if explicit || !ambiguous.contains(t.norm.as_str()) {
                count += 1;
            }
        } else if is_cell_address(&t.norm) {
            count += 1;
        }
        i += 1;
    }
    count
}

fn starts_with_keys(tokens: &[Token], keys: &[String]) -> bool {
    tokens.len() >= keys.len() && tokens.iter().zip(keys).all(|(t, k)| t.key() == k)
}

fn contains_keys(tokens: &[Token], keys: &[String]) -> bool {
    !keys.is_empty() && (0..tokens.len()).any(|i| starts_with_keys(&tokens[i..], keys))
}

/// A prepared criterion: its weight and, per term, (the term as given, its keys).
type PreparedCriterion = (f64, Vec<(String, Vec<String>)>);

/// References and criteria tokenised once, to score many answers.
pub struct Prepared {
    /// Per reference: (token count, unique content-word keys).
    references: Vec<(usize, Vec<String>)>,
    /// Per criterion: the weight and, per term, (the term as given, its keys).
    criteria: Vec<PreparedCriterion>,
}

impl Prepared {
    pub fn new(references: &[String], criteria: &[Criterion]) -> Self {
        let stop = stopword_set();
        let references = references
            .iter()
            .map(|r| {
                let tokens = tokenize(r);
                let mut seen = FxHashSet::default();
                let content: Vec<String> = tokens
                    .iter()
                    .filter(|t| !stop.contains(t.norm.as_str()))
                    .filter(|t| seen.insert(t.key()))
                    .map(|t| t.key().to_string())
                    .collect();
                (tokens.len(), content)
            })
            .collect();
        let criteria = criteria
            .iter()
            .map(|c| {
                let weight = if c.weight.is_finite() {
                    c.weight.max(0.0)
                } else {
                    0.0
                };
                let terms = c
                    .terms
                    .iter()
                    .map(|term| {
                        let keys = tokenize(term).iter().map(|t| t.key().to_string()).collect();
                        (term.clone(), keys)
                    })
                    .collect();
                (weight, terms)
            })
            .collect();
        Prepared {
            references,
            criteria,
        }
    }

    /// Scores one answer.
    pub fn score(&self, answer: &str) -> TextFeatures {
        let tokens = tokenize(answer);
        let token_count = tokens.len();

        let mut criteria_hits = Vec::with_capacity(self.criteria.len());
        let mut matched_terms = Vec::with_capacity(self.criteria.len());
        for (_, terms) in &self.criteria {
            let mut matched: Vec<String> = Vec::new();
            for (term, keys) in terms {
                if contains_keys(&tokens, keys) && !matched.contains(term) {
                    matched.push(term.clone());
                }
            }
            criteria_hits.push(!matched.is_empty());
            matched_terms.push(matched);
        }
        let total: f64 = self.criteria.iter().map(|(w, _)| w).sum();
        let concept_coverage = if self.criteria.is_empty() {
            0.0
        } else if total > 0.0 {
            let hit: f64 = self
                .criteria
                .iter()
                .zip(&criteria_hits)
                .filter(|(_, h)| **h)
                .map(|((w, _), _)| w)
                .sum();
            hit / total
        } else {
            criteria_hits.iter().filter(|h| **h).count() as f64 / criteria_hits.len() as f64
        };

        // Best reference by recall; its length sets the length ratio.
        let mut answer_keys = FxHashSet::with_capacity_and_hasher(tokens.len(), Default::default());
        answer_keys.extend(tokens.iter().map(Token::key));
        let mut best: Option<(f64, usize)> = None;
        for (len, content) in &self.references {
            if content.is_empty() {
                continue;
            }
            let found = content
                .iter()
                .filter(|k| answer_keys.contains(k.as_str()))
                .count();
            let recall = found as f64 / content.len() as f64;
            if best.is_none_or(|(r, _)| recall > r) {
                best = Some((recall, *len));
            }
        }
        let (reference_recall, reference_len) = best.unwrap_or((0.0, 0));
        let length_ratio = if reference_len == 0 {
            0.0
        } else {
            (token_count as f64 / reference_len as f64).min(MAX_LENGTH_RATIO)
        };

        let mut out = TextFeatures {
            token_count,
            criteria_hits,
            matched_terms,
            concept_coverage,
            reference_recall,
            length_ratio,
            excel_vocab: excel_vocab(&tokens),
            features: Vec::new(),
        };
        out.features = features::text_features(&out);
        out
    }
}

/// How many prepared reference/criteria sets [`prepared`] keeps.
const PREPARED_CACHE: usize = 32;

/// What [`Prepared::new`] is a function of, kept to tell cache entries apart
/// exactly (the hash only finds candidates). Criterion names are left out:
/// they change nothing.
#[derive(PartialEq)]
struct PreparedKey {
    references: Vec<String>,
    /// Per criterion: its terms and the bits of its weight.
    criteria: Vec<(Vec<String>, u64)>,
}

impl PreparedKey {
    fn matches(&self, references: &[String], criteria: &[Criterion]) -> bool {
        self.references == references
            && self.criteria.len() == criteria.len()
            && self
                .criteria
                .iter()
                .zip(criteria)
                .all(|((terms, weight), c)| *weight == c.weight.to_bits() && *terms == c.terms)
    }
}

type CacheEntry = (u64, PreparedKey, Arc<Prepared>);

fn key_hash(references: &[String], criteria: &[Criterion]) -> u64 {
    let mut h = FxHasher::default();
    references.hash(&mut h);
    for c in criteria {
        c.terms.hash(&mut h);
        c.weight.to_bits().hash(&mut h);
    }
    h.finish()
}

/// The prepared form of `references` and `criteria`, from a small
/// most-recently-used cache: the scorer sends the same question's rubric with
/// every answer, and preparing it costs more than scoring an answer.
pub fn prepared(references: &[String], criteria: &[Criterion]) -> Arc<Prepared> {
    static CACHE: Mutex<Vec<CacheEntry>> = Mutex::new(Vec::new());
    let hash = key_hash(references, criteria);
    {
        let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(i) = cache
            .iter()
            .position(|(h, k, _)| *h == hash && k.matches(references, criteria))
        {
            let entry = cache.remove(i);
            let found = Arc::clone(&entry.2);
            cache.push(entry);
            return found;
        }
    }
    // Prepared outside the lock: two threads may both prepare the same
    // rubric, which costs time but changes no result.
    let fresh = Arc::new(Prepared::new(references, criteria));
    let key = PreparedKey {
        references: references.to_vec(),
        criteria: criteria
            .iter()
            .map(|c| (c.terms.clone(), c.weight.to_bits()))
            .collect(),
    };
    let mut cache = CACHE.lock().unwrap_or_else(PoisonError::into_inner);
    if cache.len() >= PREPARED_CACHE {
        cache.remove(0);
    }
    cache.push((hash, key, Arc::clone(&fresh)));
    fresh
}

/// Features of one answer.
pub fn text_features(answer: &str, references: &[String], criteria: &[Criterion]) -> TextFeatures {
    prepared(references, criteria).score(answer)
}

/// Features of many answers against the same references and criteria.
pub fn text_features_batch(
    answers: &[String],
    references: &[String],
    criteria: &[Criterion],
) -> Vec<TextFeatures> {
    let prepared = prepared(references, criteria);
    answers.iter().map(|a| prepared.score(a)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crit(name: &str, terms: &[&str], weight: f64) -> Criterion {
        Criterion {
            name: name.to_string(),
            terms: terms.iter().map(|s| s.to_string()).collect(),
            weight,
        }
    }

    fn norms(text: &str) -> Vec<String> {
        tokenize(text).into_iter().map(|t| t.norm).collect()
    }

    #[test]
    fn every_listed_function_is_known_to_ironcalc() {
        let language = ironcalc_base::language::get_default_language();
        for name in EXCEL_FUNCTIONS {
            assert!(language.functions.lookup(name).is_some(), "{name}");
        }
        assert!(language.functions.lookup("NOTAFUNCTION").is_none());
    }

    #[test]
    fn tokenizer() {
        assert_eq!(
            norms("Use $A$1, don't use NORM.DIST(x). Écrire ÉTÉ!"),
            vec![
                "use",
                "a1",
                "dont",
                "use",
                "norm.dist",
                "x",
                "écrire",
                "été"
            ]
        );
        let t = tokenize("VLOOKUP (A2, B:C)");
        assert!(t[0].upper && t[0].call);
        assert!(!t[1].call);
        assert!(norms("").is_empty());
        assert!(norms("  ...  $ ").is_empty());
    }

    #[test]
    fn plural_keys() {
        assert_eq!(key_of("references"), "reference");
        assert_eq!(key_of("matches"), "match");
        assert_eq!(key_of("queries"), "query");
        assert_eq!(key_of("classes"), "class");
        assert_eq!(key_of("status"), "status");
        assert_eq!(key_of("sumifs"), "sumifs");
        assert_eq!(key_of("countifs"), "countifs");
        assert_eq!(key_of("a1s"), "a1s");
    }

    #[test]
    fn criteria_and_coverage() {
        let criteria = vec![
            crit("absolute", &["absolute reference", "$"], 2.0),
            crit("f4", &["F4"], 1.0),
            crit("lookup", &["xlookup", "index match"], 1.0),
        ];
        let f = text_features(
            "Press F4 to toggle Absolute References like $A$1.",
            &["An absolute reference stays fixed when the formula is copied.".to_string()],
            &criteria,
        );
        assert_eq!(f.criteria_hits, vec![true, true, false]);
        assert_eq!(f.matched_terms[0], vec!["absolute reference".to_string()]);
        assert_eq!(f.matched_terms[2], Vec::<String>::new());
        assert!((f.concept_coverage - 0.75).abs() < 1e-12);
        assert_eq!(f.token_count, 8);
        assert_eq!(f.features.len(), features::FEATURE_NAMES.len());
        assert_eq!(f.features[1], 1.0);
    }

    #[test]
    fn zero_weights_fall_back_to_fraction() {
        let criteria = vec![crit("a", &["pivot"], 0.0), crit("b", &["slicer"], 0.0)];
        let f = text_features("a pivot table", &[], &criteria);
        assert_eq!(f.concept_coverage, 0.5);
        assert_eq!(f.reference_recall, 0.0);
        assert_eq!(f.length_ratio, 0.0);
    }

    #[test]
    fn recall_and_length() {
        let refs = vec![
            "Pivot tables summarise data quickly.".to_string(),
            "Use SUMIFS with criteria ranges".to_string(),
        ];
        let f = text_features(
            "I would use a pivot table to summarise the data",
            &refs,
            &[],
        );
        // content of ref 1: pivot, table, summarise, data, quickly -> 4/5
        assert!((f.reference_recall - 0.8).abs() < 1e-12);
        assert!((f.length_ratio - 2.0).abs() < 1e-12); // 10/5 capped at 2
        let g = text_features("", &refs, &[]);
        assert_eq!(g.reference_recall, 0.0);
        assert_eq!(g.token_count, 0);
    }

    #[test]
    fn vocabulary() {
        let count = |s: &str| excel_vocab(&tokenize(s));
        assert_eq!(count("if you want and or not"), 0);
        assert_eq!(count("=IF(A1>0, SUM(B1:B5), 0)"), 5); // IF a1 SUM b1 b5
        assert_eq!(count("use a pivot table with conditional formatting"), 2);
        assert_eq!(count("vlookups and xlookup"), 2);
    }

    /// The tokenizer and plural keys as first written (a char vector and
    /// per-token strings), kept as the oracle of the faster ones.
    pub(crate) mod oracle {
        use super::super::{function_set, is_joiner};

        pub fn key_of(norm: &str) -> String {
            if function_set().contains(norm) || !norm.chars().all(char::is_alphabetic) {
                return norm.to_string();
            }
            let n = norm.chars().count();
            if n > 4 && norm.ends_with("ies") {
                return format!("{}y", &norm[..norm.len() - 3]);
            }
            let es = ["sses", "xes", "ches", "shes", "zes"];
            if n > 4 && es.iter().any(|e| norm.ends_with(e)) {
                return norm[..norm.len() - 2].to_string();
            }
            let kept = ["ss", "us", "is"];
            if n > 3 && norm.ends_with('s') && !kept.iter().any(|e| norm.ends_with(e)) {
                return norm[..norm.len() - 1].to_string();
            }
            norm.to_string()
        }

        /// (norm, key, upper, call) per token.
        pub fn tokenize(text: &str) -> Vec<(String, String, bool, bool)> {
            let chars: Vec<char> = text.chars().collect();
            let mut tokens = Vec::new();
            let mut i = 0;
            while i < chars.len() {
                if !chars[i].is_alphanumeric() {
                    i += 1;
                    continue;
                }
                let mut raw = String::new();
                while i < chars.len() {
                    let c = chars[i];
                    let next_alnum = chars.get(i + 1).is_some_and(|n| n.is_alphanumeric());
                    if c.is_alphanumeric() {
                        raw.push(c);
                    } else if c == '$' && next_alnum {
                    } else if is_joiner(c) && next_alnum {
                        if c == '.' {
                            raw.push('.');
                        }
                    } else {
                        break;
                    }
                    i += 1;
                }
                let mut j = i;
                while j < chars.len() && chars[j].is_whitespace() {
                    j += 1;
                }
                let call = chars.get(j) == Some(&'(');
                let has_letter = raw.chars().any(char::is_alphabetic);
                let upper = has_letter && !raw.chars().any(char::is_lowercase);
                let norm = raw.to_lowercase();
                let key = key_of(&norm);
                tokens.push((norm, key, upper, call));
            }
            tokens
        }
    }

    fn as_tuples(tokens: Vec<Token>) -> Vec<(String, String, bool, bool)> {
        tokens
            .into_iter()
            .map(|t| (t.key().to_string(), t.norm, t.upper, t.call))
            .map(|(k, n, u, c)| (n, k, u, c))
            .collect()
    }

    #[test]
    fn tokenizer_equals_oracle_on_examples() {
        let texts = [
            "Use $A$1, don't use NORM.DIST(x). Écrire ÉTÉ!",
            "ΟΔΟΣ ΣΟΦΟΣ Σ σ ς — İstanbul ǅemal ﬁle ß STRASSE",
            "queries matches classes status sumifs countifs SUMIFS( references  (",
            "A$1$ $$B$2 ..a.b. it's ’tis x'y O’Neil 3.14 1e5 $5 a.( b (",
            "",
            "     ",
            "VLOOKUP (A2, B:C) if( IF (x) iF  \n\t(",
        ];
        for text in texts {
            assert_eq!(
                as_tuples(tokenize(text)),
                oracle::tokenize(text),
                "{text:?}"
            );
        }
        for word in [
            "references",
            "matches",
            "queries",
            "classes",
            "status",
            "sumifs",
            "a1s",
            "ties",
            "box",
            "boxes",
            "days",
            "ıes",
            "çiçekes",
        ] {
            assert_eq!(key_of(word), oracle::key_of(word), "{word}");
        }
    }

    proptest::proptest! {
        #[test]
        fn tokenizer_equals_oracle(text in "(?s).{0,80}", pieces in proptest::collection::vec(
            proptest::sample::select(&[
                "$", ".", "'", "\u{2019}", "(", " ", "\t", "A", "a", "1", "s", "ies", "es", "É", "é",
                "Σ", "ς", "İ", "ß", "ǅ", "SUMIFS", "Match", "-", "_", "\u{0}",
            ][..]),
            0..30,
        )) {
            let soup = pieces.concat();
            proptest::prop_assert_eq!(as_tuples(tokenize(&text)), oracle::tokenize(&text));
            proptest::prop_assert_eq!(as_tuples(tokenize(&soup)), oracle::tokenize(&soup));
        }
    }

    #[test]
    fn cached_preparation_equals_fresh() {
        let answers = [
            "Press F4 for an absolute reference like $A$1; a pivot table summarises.",
            "absolute references",
            "",
        ];
        // More rubrics than the cache holds, each asked twice, so entries are
        // hit, evicted and prepared again; weights and terms differ slightly
        // between rubrics, so a wrong hit would show.
        let rubrics: Vec<(Vec<String>, Vec<Criterion>)> = (0..PREPARED_CACHE + 5)
            .map(|i| {
                let refs = vec![format!("An absolute reference stays fixed {}", i % 3)];
                let criteria = vec![
                    crit("abs", &["absolute reference", "$"], (i % 4) as f64),
                    crit("f4", &[["F4", "pivot table"][i % 2]], 1.0),
                ];
                (refs, criteria)
            })
            .collect();
        for _ in 0..2 {
            for (refs, criteria) in &rubrics {
                let fresh = Prepared::new(refs, criteria);
                for a in answers {
                    assert_eq!(text_features(a, refs, criteria), fresh.score(a));
                }
                let batch = text_features_batch(&answers.map(String::from), refs, criteria);
                assert_eq!(batch, answers.map(|a| fresh.score(a)).to_vec());
            }
        }
    }

    #[test]
    fn batch_equals_single() {
        let refs = vec!["Absolute references keep $A$1 fixed".to_string()];
        let criteria = vec![crit("abs", &["absolute reference"], 1.0)];
        let answers = vec!["absolute reference".to_string(), "no idea".to_string()];
        let batch = text_features_batch(&answers, &refs, &criteria);
        for (a, b) in answers.iter().zip(&batch) {
            assert_eq!(&text_features(a, &refs, &criteria), b);
        }
    }
}

/// Micro-benchmark for profiling (`cargo test --release -- --ignored --nocapture perf_`);
/// prints timings, asserts nothing about them.
#[cfg(test)]
mod perf {
    use super::*;
    use std::time::Instant;

    pub(crate) const ANSWER: &str = "A relative reference such as A1 changes when the formula is copied to another cell, because Excel \
        stores it as an offset from the formula. An absolute reference like $A$1 keeps pointing at the same \
        cell wherever it is copied. Mixed references fix only the row or only the column, which is useful \
        for multiplication tables and lookups across rows and columns of a price list in a sheet.";

    #[test]
    #[ignore]
    fn perf_text() {
        let answer: String = ANSWER
            .split_whitespace()
            .take(60)
            .collect::<Vec<_>>()
            .join(" ");
        let refs = vec![answer.clone()];
        let crit = |n: &str, t: &[&str]| Criterion {
            name: n.into(),
            terms: t.iter().map(|s| s.to_string()).collect(),
            weight: 1.0,
        };
        let criteria = vec![
            crit("relative", &["relative", "changes"]),
            crit("absolute", &["absolute", "dollar", "$"]),
            crit("mixed", &["mixed"]),
        ];
        let rounds = 20000;
        let time = |label: &str, f: &dyn Fn() -> usize| {
            for _ in 0..rounds / 10 {
                std::hint::black_box(f());
            }
            let start = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(f());
            }
            println!(
                "{label}: {:.2} µs",
                start.elapsed().as_secs_f64() * 1e6 / rounds as f64
            );
        };
        time("tokenize (first version)", &|| {
            super::tests::oracle::tokenize(&answer).len()
        });
        time("tokenize", &|| tokenize(&answer).len());
        time("prepare", &|| {
            Prepared::new(&refs, &criteria).references.len()
        });
        let p = Prepared::new(&refs, &criteria);
        time("score", &|| p.score(&answer).token_count);
        time("text_features", &|| {
            text_features(&answer, &refs, &criteria).token_count
        });
    }
}
