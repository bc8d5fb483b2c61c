//! JSON text -> a `serde_json::Value` tree plus the [`Lines`] of every node.
//!
//! `serde_json` owns the meaning of the text (and its syntax errors, with their exact line); a
//! small structural scanner then walks the same text once to note the line of each key and
//! value, find duplicate keys (which `serde_json` would silently resolve to the last one), and
//! say which path a syntax error sits in. The scanner only tracks brackets, strings and
//! separators: it never decides what a value is.

use serde_json::Value;

use super::{
    error::{Problem, Spot},
    path::{DocPath, Lines, Seg},
    yaml::MAX_DEPTH,
};

/// Reads one JSON document. Errors carry the path being read and the line of the fault.
pub(crate) fn parse(text: &str) -> Result<(Value, Lines), Problem> {
    match serde_json::from_str::<Value>(text) {
        Ok(value) => {
            let mut scan = Scanner::new(text, usize::MAX);
            let mut path = DocPath::root();
            match scan.value(&mut path, 0) {
                Ok(()) => {}
                Err(Stop::Problem(p)) => return Err(p),
                // The text is valid JSON, so the scanner cannot get lost; if it ever does, the
                // tree is still right and only some lines will be missing.
                Err(Stop::At(_)) => {}
            }
            if value.is_null() {
                return Err(Problem::new(
                    DocPath::root(),
                    "the configuration is empty",
                    Spot::Line(1),
                ));
            }
            Ok((value, scan.lines))
        }
        Err(e) => {
            let line = e.line().max(1);
            let offset = offset_of(text, line, e.column());
            let mut scan = Scanner::new(text, offset);
            let mut path = DocPath::root();
            let at = match scan.value(&mut path, 0) {
                Err(Stop::At(p)) => p,
                _ => path,
            };
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full);
            Err(Problem::new(
                at,
                format!("JSON syntax error: {message}"),
                Spot::Line(line),
            ))
        }
    }
}

/// Byte offset of a 1-based (line, column) position, clamped to the text.
fn offset_of(text: &str, line: usize, column: usize) -> usize {
    let mut offset = 0;
    for (i, l) in text.split_inclusive('\n').enumerate() {
        if i + 1 == line {
            return (offset + column.saturating_sub(1)).min(text.len());
        }
        offset += l.len();
    }
    text.len()
}

/// Why the scan ended early.
enum Stop {
    /// Reached the stop offset, or something unexpected, while inside this path.
    At(DocPath),
    /// A duplicate key or too deep: a real error in otherwise valid JSON.
    Problem(Problem),
}

struct Scanner<'a> {
    b: &'a [u8],
    i: usize,
    line: usize,
    stop: usize,
    lines: Lines,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str, stop: usize) -> Self {
        Scanner {
            b: text.as_bytes(),
            i: 0,
            line: 1,
            stop,
            lines: Lines::default(),
        }
    }

    fn skip_ws(&mut self) {
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'\n' => self.line += 1,
                b' ' | b'\t' | b'\r' => {}
                _ => break,
            }
            self.i += 1;
        }
    }

    /// Ends the scan if the stop offset is reached.
    fn check(&self, path: &DocPath) -> Result<(), Stop> {
        if self.i >= self.stop || self.i >= self.b.len() {
            Err(Stop::At(path.clone()))
        } else {
            Ok(())
        }
    }

    fn value(&mut self, path: &mut DocPath, depth: usize) -> Result<(), Stop> {
        self.skip_ws();
        self.check(path)?;
        self.lines.set_value(path, self.line);
        match self.b[self.i] {
            b'{' => self.object(path, depth + 1),
            b'[' => self.array(path, depth + 1),
            b'"' => self.string(path).map(|_| ()),
            _ => {
                // number, true, false, null: runs to the next separator
                let start = self.i;
                while let Some(&c) = self.b.get(self.i) {
                    if matches!(c, b',' | b']' | b'}' | b' ' | b'\t' | b'\r' | b'\n') {
                        break;
                    }
                    self.i += 1;
                }
                if self.i == start {
                    // a stray `]` or `}`: only in invalid JSON
                    return Err(Stop::At(path.clone()));
                }
                Ok(())
            }
        }
    }

    fn too_deep(&self, path: &DocPath, depth: usize) -> Result<(), Stop> {
        if depth > MAX_DEPTH {
            return Err(Stop::Problem(Problem::new(
                path.clone(),
                format!("nested more than {MAX_DEPTH} levels deep"),
                Spot::Line(self.line),
            )));
        }
        Ok(())
    }

    fn object(&mut self, path: &mut DocPath, depth: usize) -> Result<(), Stop> {
        self.too_deep(path, depth)?;
        self.i += 1; // '{'
        let mut seen = std::collections::HashSet::new();
        loop {
            self.skip_ws();
            self.check(path)?;
            match self.b[self.i] {
                b'}' => {
                    self.i += 1;
                    return Ok(());
                }
                b',' => {
                    self.i += 1;
                    continue;
                }
                b'"' => {}
                _ => return Err(Stop::At(path.clone())),
            }
            let key_line = self.line;
            let raw = self.string(path)?;
            let key: String = serde_json::from_str(raw).map_err(|_| Stop::At(path.clone()))?;
            path.push(Seg::Key(key.clone()));
            if !seen.insert(key) {
                return Err(Stop::Problem(Problem::new(
                    path.clone(),
                    "duplicate key",
                    Spot::Line(key_line),
                )));
            }
            self.lines.set_key(path, key_line);
            self.skip_ws();
            self.check(path)?;
            if self.b[self.i] != b':' {
                return Err(Stop::At(path.clone()));
            }
            self.i += 1;
            self.value(path, depth)?;
            path.pop();
        }
    }

    fn array(&mut self, path: &mut DocPath, depth: usize) -> Result<(), Stop> {
        self.too_deep(path, depth)?;
        self.i += 1; // '['
        let mut index = 0;
        loop {
            self.skip_ws();
            self.check(path)?;
            match self.b[self.i] {
                b']' => {
                    self.i += 1;
                    return Ok(());
                }
                b',' => {
                    self.i += 1;
                    continue;
                }
                _ => {}
            }
            path.push(Seg::Index(index));
            self.value(path, depth)?;
            path.pop();
            index += 1;
        }
    }

    /// Skips a string starting at the opening quote; returns it with its quotes.
    fn string(&mut self, path: &DocPath) -> Result<&'a str, Stop> {
        let start = self.i;
        self.i += 1;
        while let Some(&c) = self.b.get(self.i) {
            match c {
                b'\\' => self.i += 2,
                b'"' => {
                    self.i += 1;
                    let raw = self.b.get(start..self.i).unwrap_or_default();
                    return std::str::from_utf8(raw).map_err(|_| Stop::At(path.clone()));
                }
                b'\n' => {
                    self.line += 1;
                    self.i += 1;
                }
                _ => self.i += 1,
            }
        }
        Err(Stop::At(path.clone()))
    }
}
