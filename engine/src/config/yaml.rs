//! YAML text -> a `serde_json::Value` tree plus the [`Lines`] of every node, in one pass over
//! the events of `saphyr-parser` (a YAML 1.2 parser that reports a position with each event).
//!
//! Plain scalars are typed by the YAML 1.2 core schema (`null`/`~`, `true`/`false`, decimal,
//! `0o` and `0x` integers, floats); quoted and block scalars are strings; `!!str` forces a string.
//! So `yes`, `on` and `0755`-style surprises of YAML 1.1 do not happen. Anchors and aliases work
//! (an alias is a copy, with a budget so a "billion laughs" file is an error, not an outage);
//! duplicate keys, complex keys, custom tags and more than one document are errors. Nothing here
//! recurses on the input, and nesting is capped at [`MAX_DEPTH`], so no input can overflow the
//! stack later either.

use std::{
    borrow::Cow,
    collections::HashMap,
    panic::{catch_unwind, AssertUnwindSafe},
};

use saphyr_parser::{Event, Parser, ScalarStyle, Span, Tag};
use serde_json::{Map, Number, Value};

use super::{
    error::{Problem, Spot},
    path::{DocPath, Lines},
};

/// Deepest nesting of lists and maps accepted (a real config needs about 12).
pub(crate) const MAX_DEPTH: usize = 64;

/// Most nodes that aliases may copy in, in total.
const ALIAS_BUDGET: usize = 100_000;

/// Reads one YAML document. Errors carry the path being read and the line of the fault.
pub(crate) fn parse(text: &str) -> Result<(Value, Lines), Problem> {
    // saphyr-parser is fuzzed upstream and should never panic; if it ever does on some input,
    // that is still a config error, not a crashed proxy.
    match catch_unwind(AssertUnwindSafe(|| parse_inner(text))) {
        Ok(result) => result,
        Err(_) => Err(Problem::new(
            DocPath::root(),
            "the YAML parser failed on this file (internal error); please report it",
            Spot::Line(1),
        )),
    }
}

fn parse_inner(text: &str) -> Result<(Value, Lines), Problem> {
    let mut b = Builder::default();
    let mut parser = Parser::new_from_str(text);
    while let Some(next) = parser.next_event() {
        match next {
            Ok((event, span)) => b.event(event, span)?,
            Err(e) => {
                return Err(Problem::new(
                    b.current_path(),
                    format!("YAML syntax error: {}", e.info()),
                    Spot::Line(e.marker().line().max(1)),
                ))
            }
        }
    }
    match b.root {
        Some(Value::Null) | None => Err(Problem::new(
            DocPath::root(),
            "the configuration is empty",
            Spot::Line(1),
        )),
        Some(root) => Ok((root, b.lines)),
    }
}

/// A list or map being read.
enum Frame {
    Seq {
        path: DocPath,
        items: Vec<Value>,
        anchor: usize,
    },
    Map {
        path: DocPath,
        map: Map<String, Value>,
        /// The key just read, waiting for its value.
        key: Option<String>,
        anchor: usize,
    },
}

#[derive(Default)]
struct Builder {
    stack: Vec<Frame>,
    anchors: HashMap<usize, Value>,
    lines: Lines,
    alias_nodes: usize,
    documents: usize,
    root: Option<Value>,
}

impl Builder {
    /// Path of the node the next event starts (or of the key being read, for a map).
    fn current_path(&self) -> DocPath {
        match self.stack.last() {
            None => DocPath::root(),
            Some(Frame::Seq { path, items, .. }) => path.index(items.len()),
            Some(Frame::Map { path, key, .. }) => match key {
                Some(k) => path.key(k),
                None => path.clone(),
            },
        }
    }

    /// True when the next node is a map key.
    fn expecting_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Map { key: None, .. }))
    }

    fn event(&mut self, event: Event<'_>, span: Span) -> Result<(), Problem> {
        let line = span.start.line().max(1);
        match event {
            Event::Nothing | Event::StreamStart | Event::StreamEnd | Event::DocumentEnd => Ok(()),
            Event::DocumentStart(_) => {
                self.documents += 1;
                if self.documents > 1 {
                    return Err(Problem::new(
                        DocPath::root(),
                        "a config file holds exactly one YAML document (found a second `---`)",
                        Spot::Line(line),
                    ));
                }
                Ok(())
            }
            Event::Scalar(text, style, anchor, tag) => {
                if self.expecting_key() {
                    return self.key(text, line);
                }
                let value = scalar(&text, style, tag.as_deref())
                    .map_err(|m| Problem::new(self.current_path(), m, Spot::Line(line)))?;
                self.lines.set_value(&self.current_path(), line);
                self.finish(value, anchor)
            }
            Event::SequenceStart(anchor, tag) => {
                self.open(line, tag.as_deref(), "seq")?;
                let path = self.current_path();
                self.stack.push(Frame::Seq {
                    path,
                    items: Vec::new(),
                    anchor,
                });
                Ok(())
            }
            Event::MappingStart(anchor, tag) => {
                self.open(line, tag.as_deref(), "map")?;
                let path = self.current_path();
                self.stack.push(Frame::Map {
                    path,
                    map: Map::new(),
                    key: None,
                    anchor,
                });
                Ok(())
            }
            Event::SequenceEnd => match self.stack.pop() {
                Some(Frame::Seq { items, anchor, .. }) => self.finish(Value::Array(items), anchor),
                _ => Err(unbalanced(line)),
            },
            Event::MappingEnd => match self.stack.pop() {
                Some(Frame::Map { map, anchor, .. }) => self.finish(Value::Object(map), anchor),
                _ => Err(unbalanced(line)),
            },
            Event::Alias(id) => {
                let path = self.current_path();
                if self.expecting_key() {
                    return Err(Problem::new(
                        path,
                        "an alias cannot be used as a key",
                        Spot::Line(line),
                    ));
                }
                let Some(value) = self.anchors.get(&id) else {
                    return Err(Problem::new(path, "unknown alias", Spot::Line(line)));
                };
                self.alias_nodes = self.alias_nodes.saturating_add(node_count(value));
                if self.alias_nodes > ALIAS_BUDGET {
                    return Err(Problem::new(
                        path,
                        format!("aliases expand to more than {ALIAS_BUDGET} nodes"),
                        Spot::Line(line),
                    ));
                }
                let value = value.clone();
                self.lines.set_value(&path, line);
                self.finish(value, 0)
            }
        }
    }

    /// Checks a list or map may start here, and records its line.
    fn open(&mut self, line: usize, tag: Option<&Tag>, core: &str) -> Result<(), Problem> {
        let path = self.current_path();
        if self.expecting_key() {
            return Err(Problem::new(
                path,
                "a list or map cannot be used as a key",
                Spot::Line(line),
            ));
        }
        if let Some(tag) = tag {
            if !(tag.is_yaml_core_schema() && tag.suffix == core) {
                return Err(Problem::new(
                    path,
                    format!("unsupported YAML tag `{tag}`"),
                    Spot::Line(line),
                ));
            }
        }
        if self.stack.len() >= MAX_DEPTH {
            return Err(Problem::new(
                path,
                format!("nested more than {MAX_DEPTH} levels deep"),
                Spot::Line(line),
            ));
        }
        self.lines.set_value(&path, line);
        Ok(())
    }

    /// A map key was read.
    fn key(&mut self, text: Cow<'_, str>, line: usize) -> Result<(), Problem> {
        let Some(Frame::Map { path, map, key, .. }) = self.stack.last_mut() else {
            return Err(unbalanced(line));
        };
        let child = path.key(&text);
        if map.contains_key(text.as_ref()) {
            return Err(Problem::new(child, "duplicate key", Spot::Line(line)));
        }
        self.lines.set_key(&child, line);
        *key = Some(text.into_owned());
        Ok(())
    }

    /// A node is complete: remember its anchor and hang it on its parent.
    fn finish(&mut self, value: Value, anchor: usize) -> Result<(), Problem> {
        if anchor != 0 {
            self.anchors.insert(anchor, value.clone());
        }
        match self.stack.last_mut() {
            None => self.root = Some(value),
            Some(Frame::Seq { items, .. }) => items.push(value),
            Some(Frame::Map { map, key, .. }) => match key.take() {
                Some(k) => {
                    map.insert(k, value);
                }
                // Keys are read by `key`; a value with no key pending cannot happen.
                None => return Err(unbalanced(0)),
            },
        }
        Ok(())
    }
}

fn unbalanced(line: usize) -> Problem {
    Problem::new(
        DocPath::root(),
        "YAML syntax error: unbalanced document",
        Spot::Line(line.max(1)),
    )
}

/// Number of nodes in a value (iterative).
fn node_count(value: &Value) -> usize {
    let mut count = 0usize;
    let mut todo = vec![value];
    while let Some(v) = todo.pop() {
        count += 1;
        match v {
            Value::Array(items) => todo.extend(items.iter()),
            Value::Object(map) => todo.extend(map.values()),
            _ => {}
        }
    }
    count
}

/// Types one scalar by the YAML 1.2 core schema.
fn scalar(text: &str, style: ScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    if let Some(tag) = tag {
        if !tag.is_yaml_core_schema() {
            return Err(format!("unsupported YAML tag `{tag}`"));
        }
        match tag.suffix.as_str() {
            "str" => return Ok(Value::String(text.to_owned())),
            "null" | "bool" | "int" | "float" => {}
            _ => return Err(format!("unsupported YAML tag `{tag}`")),
        }
    } else if style != ScalarStyle::Plain {
        return Ok(Value::String(text.to_owned()));
    }
    Ok(plain(text))
}

/// A plain (unquoted) scalar: null, bool, int, float or string.
fn plain(text: &str) -> Value {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if let Some(n) = integer(text) {
        return Value::Number(n);
    }
    if is_float(text) {
        if let Some(n) = text.parse::<f64>().ok().and_then(Number::from_f64) {
            return Value::Number(n);
        }
    }
    Value::String(text.to_owned())
}

fn integer(text: &str) -> Option<Number> {
    let (neg, digits) = match text.as_bytes().first()? {
        b'-' => (true, &text[1..]),
        b'+' => (false, &text[1..]),
        _ => (false, text),
    };
    let (radix, digits) = if let Some(d) = digits.strip_prefix("0x").filter(|_| !neg) {
        (16, d)
    } else if let Some(d) = digits.strip_prefix("0o").filter(|_| !neg) {
        (8, d)
    } else {
        (10, digits)
    };
    if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
        return None;
    }
    let magnitude = u64::from_str_radix(digits, radix).ok()?;
    if neg {
        // -0 is 0; anything below i64::MIN is left a string (and then a type error).
        let v = 0i64.checked_sub_unsigned(magnitude)?;
        Some(Number::from(v))
    } else {
        Some(Number::from(magnitude))
    }
}

/// `[-+]? ( \. [0-9]+ | [0-9]+ ( \. [0-9]* )? ) ( [eE] [-+]? [0-9]+ )?`
fn is_float(text: &str) -> bool {
    let b = text.as_bytes();
    let mut i = 0;
    if matches!(b.first(), Some(b'-' | b'+')) {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let int_digits = i - int_start;
    let mut frac_digits = 0;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        frac_digits = i - start;
    }
    if int_digits == 0 && frac_digits == 0 {
        return false;
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'-' || b[i] == b'+') {
            i += 1;
        }
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == start {
            return false;
        }
    }
    i == b.len()
}
