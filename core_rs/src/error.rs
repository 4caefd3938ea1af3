//! The error type shared by the pure-Rust modules; `lib.rs` maps each variant
//! to a Python exception class.

use std::fmt;

#[derive(Debug, Clone, PartialEq)]
pub enum CoreErr {
    /// The formula does not parse. `position` is a char offset into the input.
    Syntax {
        message: String,
        position: Option<usize>,
    },
    /// Bad sheet input (too big, bad values).
    Sheet(String),
    /// Formula too long, nested too deep, or recursive.
    Limit(String),
    /// Anything else (engine failure, caught panic).
    Internal(String),
}

impl CoreErr {
    pub fn message(&self) -> String {
        match self {
            CoreErr::Syntax { message, .. } => message.clone(),
            CoreErr::Sheet(m) | CoreErr::Limit(m) | CoreErr::Internal(m) => m.clone(),
        }
    }

    pub fn position(&self) -> Option<usize> {
        match self {
            CoreErr::Syntax { position, .. } => *position,
            _ => None,
        }
    }
}

impl fmt::Display for CoreErr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CoreErr::Syntax {
                message,
                position: Some(p),
            } => write!(f, "{message} (at position {p})"),
            _ => f.write_str(&self.message()),
        }
    }
}

impl std::error::Error for CoreErr {}
