//! Config errors as data. Every stage (reading the text, the serde pass, `validate()`) records a
//! [`Problem`]: a [`DocPath`], a message and which line of that node to quote ([`Spot`]). The
//! loader resolves the lines once at the end ([`Problems::into_errors`]) and hands the caller
//! [`ConfigErrors`]: every problem found, sorted by line, each printed as
//! `clusters[1].endpoints[0]: invalid address "127.0.0.1:99999" (line 14)`.

use std::fmt;

use super::{
    dump::Shown,
    path::{DocPath, Lines},
};

/// One thing wrong with a config file.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConfigError {
    /// Where in the document, e.g. `listeners[0].address`; empty for the document as a whole.
    pub path: String,
    /// What is wrong, e.g. `invalid address "127.0.0.1:99999"`.
    pub message: String,
    /// 1-based line of the offending value (or key) in the file, when known.
    pub line: Option<usize>,
}

/// `path: message (line N)`; without a path, `message (line N)`; without a line, no suffix.
impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)?;
        if let Some(line) = self.line {
            write!(f, " (line {line})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

/// Everything wrong with one config file (never empty when returned by the loader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    /// The file (or the `source` name given to `load_str`).
    pub source: String,
    /// Sorted by line; errors without a line come last.
    pub errors: Vec<ConfigError>,
}

impl ConfigErrors {
    /// A single error about the file as a whole (unreadable, unknown extension...).
    pub(crate) fn whole_file(source: &str, message: String) -> ConfigErrors {
        ConfigErrors {
            source: source.to_owned(),
            errors: vec![ConfigError {
                path: String::new(),
                message,
                line: None,
            }],
        }
    }
}

/// One error per line, no header: callers add `invalid config {source}:` themselves.
impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.errors.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

/// Which line of a node an error quotes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Spot {
    /// The line of the node's value (a bad value).
    Value,
    /// The line of the key naming the node (an unknown or duplicate key).
    Key,
    /// The line of the enclosing node (a missing key).
    Parent,
    /// A line known already (syntax errors).
    Line(usize),
}

/// An error before its line is looked up.
#[derive(Debug, Clone)]
pub(crate) struct Problem {
    pub(crate) path: DocPath,
    pub(crate) message: String,
    pub(crate) spot: Spot,
}

impl Problem {
    pub(crate) fn new(path: DocPath, message: impl Into<String>, spot: Spot) -> Problem {
        Problem {
            path,
            message: message.into(),
            spot,
        }
    }

    /// The same problem seen from a node `prefix` levels up (its path made absolute).
    pub(crate) fn under(&self, prefix: &DocPath) -> Problem {
        Problem {
            path: prefix.join(&self.path),
            message: self.message.clone(),
            spot: self.spot,
        }
    }
}

/// The collector every stage writes into: the problems found and, on the way, every default
/// `validate()` applied (the path of the key left out and the value it got), for `/config_dump`.
#[derive(Debug, Default)]
pub(crate) struct Problems {
    found: Vec<Problem>,
    filled: Vec<(DocPath, serde_json::Value)>,
}

impl Problems {
    /// A bad value at `path`.
    pub(crate) fn value(&mut self, path: &DocPath, message: impl Into<String>) {
        self.found
            .push(Problem::new(path.clone(), message, Spot::Value));
    }

    /// A problem with the key naming `path` (duplicate, not allowed here).
    pub(crate) fn key(&mut self, path: &DocPath, message: impl Into<String>) {
        self.found
            .push(Problem::new(path.clone(), message, Spot::Key));
    }

    pub(crate) fn push(&mut self, problem: Problem) {
        self.found.push(problem);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.found.is_empty()
    }

    /// `value` when the file has it; otherwise `default`, recorded as filled in at `at`.
    pub(crate) fn or<T: Shown>(&mut self, value: Option<T>, at: &DocPath, default: T) -> T {
        match value {
            Some(v) => v,
            None => {
                self.filled(at, &default);
                default
            }
        }
    }

    /// Records that the key at `at` was left out and runs with `value`.
    pub(crate) fn filled(&mut self, at: &DocPath, value: &impl Shown) {
        self.filled.push((at.clone(), value.shown()));
    }

    /// How many defaults are recorded (for [`Problems::unfill`]).
    pub(crate) fn filled_len(&self) -> usize {
        self.filled.len()
    }

    /// Forgets the defaults recorded after the first `len` (a section that does not apply).
    pub(crate) fn unfill(&mut self, len: usize) {
        self.filled.truncate(len);
    }

    /// The defaults recorded so far (see [`Problems::or`]).
    pub(crate) fn take_filled(&mut self) -> Vec<(DocPath, serde_json::Value)> {
        std::mem::take(&mut self.filled)
    }

    /// Resolves lines, sorts by line (stable: same-line errors keep the order they were found)
    /// and drops exact duplicates.
    pub(crate) fn into_errors(self, source: &str, lines: &Lines) -> ConfigErrors {
        let mut errors: Vec<ConfigError> = self
            .found
            .into_iter()
            .map(|p| {
                let line = match p.spot {
                    Spot::Value => lines.value_line(&p.path),
                    Spot::Key => lines.key_line(&p.path),
                    Spot::Parent => lines.value_line(&p.path.parent()),
                    Spot::Line(n) => Some(n),
                };
                ConfigError {
                    path: p.path.to_string(),
                    message: p.message,
                    line,
                }
            })
            .collect();
        errors.sort_by_key(|e| e.line.unwrap_or(usize::MAX));
        let mut seen = std::collections::HashSet::new();
        errors.retain(|e| seen.insert(e.clone()));
        ConfigErrors {
            source: source.to_owned(),
            errors,
        }
    }
}
