//! Header edits as Envoy writes them (`HeaderValueOption`, `headers_to_remove`): the one type
//! both the `header_mutation` filter and the engine's route-level keys
//! (`request_headers_to_add`, `response_headers_to_remove`, ...) use.
//!
//! ```text
//! config:  HeaderValueOptionSpec / removed names ─▶ Mutations::{from_specs, push_*} (validated once)
//! request: Mutations::apply_request(head, vars) ─▶ each edit in order, values rendered from
//!          %VAR%s (REQ/RESP from the head being edited, the rest from the engine's Vars)
//! ```
//!
//! A [`Mutations`] is an ordered list of edits. [`Mutations::from_specs`] puts the removals
//! first and then the additions in order, as Envoy's route-level header parser does; the filter
//! keeps the order of its config, as Envoy's `header_mutation` does. Names are checked and
//! lower-cased at load: pseudo-headers, `host`, and the framing and hop-by-hop headers the codec
//! owns are refused (Envoy refuses the first two; ringway's codec owns the rest).
//!
//! Cost per request: a literal value is copied into the map; a templated one is rendered into a
//! per-thread scratch buffer first (no allocation once it has grown).

use std::cell::RefCell;

use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    filter::Vars,
    registry::ConfigProblem,
    stream::{HeaderMap, RequestHead, ResponseHead},
    template::Template,
};

/// Names a mutation may not touch, with why.
const REFUSED: &[(&str, &str)] = &[
    (
        "host",
        "the authority is not a header here (Envoy refuses it too)",
    ),
    ("content-length", "the codec owns the framing"),
    ("transfer-encoding", "the codec owns the framing"),
    ("connection", "hop-by-hop headers belong to the codec"),
    ("keep-alive", "hop-by-hop headers belong to the codec"),
    ("te", "hop-by-hop headers belong to the codec"),
    ("upgrade", "hop-by-hop headers belong to the codec"),
    ("proxy-connection", "hop-by-hop headers belong to the codec"),
];

/// What to do when the header is already there (Envoy's `HeaderAppendAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, JsonSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppendAction {
    /// Add another field of that name (or the first one).
    #[default]
    AppendIfExistsOrAdd,
    /// Add the field only when none of that name is there.
    AddIfAbsent,
    /// Replace every field of that name with this one, or add it.
    OverwriteIfExistsOrAdd,
    /// Replace every field of that name with this one; add nothing when there is none.
    OverwriteIfExists,
}

/// A header and its value, as Envoy's `HeaderValue`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueSpec {
    /// The header's name (checked and lower-cased at load).
    pub key: String,
    /// The value: text with `%VAR%` commands (`%%` for a literal `%`).
    #[serde(default)]
    pub value: String,
}

/// One header to add, as Envoy's `HeaderValueOption`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderValueOptionSpec {
    /// The header to add.
    pub header: HeaderValueSpec,
    /// What to do when the header is already there (default `APPEND_IF_EXISTS_OR_ADD`).
    #[serde(default)]
    pub append_action: Option<AppendAction>,
    /// Envoy's deprecated form of `append_action`: `true` is `APPEND_IF_EXISTS_OR_ADD`, `false`
    /// is `OVERWRITE_IF_EXISTS_OR_ADD`. Not both.
    #[serde(default)]
    pub append: Option<bool>,
    /// Add the header even when its value renders empty (default `false`: an empty value adds
    /// nothing).
    #[serde(default)]
    pub keep_empty_value: Option<bool>,
}

/// A header value: fixed text, or a template rendered per request.
#[derive(Debug, Clone)]
enum Value {
    Literal(Box<[u8]>),
    Template(Template),
}

/// One validated addition.
#[derive(Debug, Clone)]
struct Add {
    name: Box<str>,
    value: Value,
    action: AppendAction,
    keep_empty: bool,
}

/// One validated edit.
#[derive(Debug, Clone)]
enum Op {
    Remove(Box<str>),
    Add(Add),
}

/// Validated header edits, applied in order by [`Mutations::apply`]. Immutable once built;
/// shared by every worker.
#[derive(Debug, Clone, Default)]
pub struct Mutations {
    ops: Vec<Op>,
}

thread_local! {
    /// Where templated values are rendered before they are copied into the map.
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A scratch buffer that grew past this is dropped after use.
const SCRATCH_KEEP: usize = 16 * 1024;

impl Mutations {
    /// Envoy's route-level pair `*_headers_to_add` / `*_headers_to_remove`: removals first,
    /// then additions in order. `path_add` / `path_remove` are the dotted paths of the two
    /// lists in the file (e.g. `virtual_hosts.0.request_headers_to_add`); every problem found
    /// is returned with its path below them.
    pub fn from_specs(
        to_add: &[HeaderValueOptionSpec],
        to_remove: &[String],
        path_add: &str,
        path_remove: &str,
    ) -> Result<Mutations, Vec<ConfigProblem>> {
        let mut m = Mutations::default();
        let mut problems = Vec::new();
        for (i, name) in to_remove.iter().enumerate() {
            if let Err(p) = m.push_remove(name, &format!("{path_remove}.{i}")) {
                problems.push(p);
            }
        }
        for (i, spec) in to_add.iter().enumerate() {
            if let Err(mut p) = m.push_add(spec, &format!("{path_add}.{i}")) {
                problems.append(&mut p);
            }
        }
        if problems.is_empty() {
            Ok(m)
        } else {
            Err(problems)
        }
    }

    /// Append a removal of `name` (found at `path`).
    pub fn push_remove(&mut self, name: &str, path: &str) -> Result<(), ConfigProblem> {
        let name = check_name(name).map_err(|msg| ConfigProblem::at(path, msg))?;
        self.ops.push(Op::Remove(name));
        Ok(())
    }

    /// Append an addition (the spec found at `path`); every problem in it is returned.
    pub fn push_add(
        &mut self,
        spec: &HeaderValueOptionSpec,
        path: &str,
    ) -> Result<(), Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let name = check_name(&spec.header.key)
            .map_err(|msg| problems.push(ConfigProblem::at(&format!("{path}.header.key"), msg)))
            .ok();
        let value = parse_value(&spec.header.value)
            .map_err(|msg| problems.push(ConfigProblem::at(&format!("{path}.header.value"), msg)))
            .ok();
        let action = match (spec.append_action, spec.append) {
            (Some(_), Some(_)) => {
                problems.push(ConfigProblem::at(
                    &format!("{path}.append"),
                    "both `append` and `append_action` are set: keep `append_action` \
                     (`append` is Envoy's deprecated form)",
                ));
                AppendAction::default()
            }
            (Some(a), None) => a,
            (None, Some(true)) | (None, None) => AppendAction::AppendIfExistsOrAdd,
            (None, Some(false)) => AppendAction::OverwriteIfExistsOrAdd,
        };
        match (name, value) {
            (Some(name), Some(value)) if problems.is_empty() => {
                self.ops.push(Op::Add(Add {
                    name,
                    value,
                    action,
                    keep_empty: spec.keep_empty_value.unwrap_or(false),
                }));
                Ok(())
            }
            _ => Err(problems),
        }
    }

    /// No edit at all (the engine then skips the hook).
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// Whether some value reads the response (`%RESP(..)%`, `%RESPONSE_CODE%`...): such values
    /// render empty on the request path.
    pub fn reads_response(&self) -> bool {
        self.ops.iter().any(|op| match op {
            Op::Add(Add {
                value: Value::Template(t),
                ..
            }) => t.reads_response(),
            _ => false,
        })
    }

    /// Apply every edit, in order, to `headers` (trailers, or a map without its head);
    /// templated values render from `vars`.
    pub fn apply(&self, headers: &mut HeaderMap, vars: &dyn Vars) {
        self.run(&mut Plain(headers), vars);
    }

    /// Apply every edit to a request head: `%REQ(..)%` reads `head` as it is at that edit
    /// (the engine's `Vars` cannot lend the head a hook holds), the rest comes from `vars`.
    pub fn apply_request(&self, head: &mut RequestHead, vars: &dyn Vars) {
        self.run(&mut OnRequest(head), vars);
    }

    /// Apply every edit to a response head: `%RESP(..)%` reads `head` as it is at that edit,
    /// `%REQ(..)%` reads `request` (when given), the rest comes from `vars`.
    pub fn apply_response(
        &self,
        head: &mut ResponseHead,
        request: Option<&RequestHead>,
        vars: &dyn Vars,
    ) {
        self.run(&mut OnResponse { head, request }, vars);
    }

    fn run(&self, target: &mut dyn Target, vars: &dyn Vars) {
        for op in &self.ops {
            match op {
                Op::Remove(name) => {
                    target.headers().remove(name.as_bytes());
                }
                Op::Add(add) => add.apply(target, vars),
            }
        }
    }
}

/// What the edits apply to: a map, and how templates read the head it belongs to.
trait Target {
    fn headers(&mut self) -> &mut HeaderMap;
    fn contains(&self, name: &str) -> bool;
    fn render(&self, t: &Template, vars: &dyn Vars, out: &mut Vec<u8>);
}

struct Plain<'a>(&'a mut HeaderMap);

impl Target for Plain<'_> {
    fn headers(&mut self) -> &mut HeaderMap {
        self.0
    }
    fn contains(&self, name: &str) -> bool {
        self.0.contains(name)
    }
    fn render(&self, t: &Template, vars: &dyn Vars, out: &mut Vec<u8>) {
        t.render(vars, out)
    }
}

struct OnRequest<'a>(&'a mut RequestHead);

impl Target for OnRequest<'_> {
    fn headers(&mut self) -> &mut HeaderMap {
        &mut self.0.headers
    }
    fn contains(&self, name: &str) -> bool {
        self.0.headers.contains(name)
    }
    fn render(&self, t: &Template, vars: &dyn Vars, out: &mut Vec<u8>) {
        t.render_on(vars, Some(self.0), None, out)
    }
}

struct OnResponse<'a> {
    head: &'a mut ResponseHead,
    request: Option<&'a RequestHead>,
}

impl Target for OnResponse<'_> {
    fn headers(&mut self) -> &mut HeaderMap {
        &mut self.head.headers
    }
    fn contains(&self, name: &str) -> bool {
        self.head.headers.contains(name)
    }
    fn render(&self, t: &Template, vars: &dyn Vars, out: &mut Vec<u8>) {
        t.render_on(vars, self.request, Some(self.head), out)
    }
}

impl Add {
    fn apply(&self, target: &mut dyn Target, vars: &dyn Vars) {
        match self.action {
            AppendAction::AddIfAbsent if target.contains(&self.name) => return,
            AppendAction::OverwriteIfExists if !target.contains(&self.name) => return,
            _ => {}
        }
        match &self.value {
            Value::Literal(v) => self.write(target.headers(), v),
            Value::Template(t) => SCRATCH.with(|cell| match cell.try_borrow_mut() {
                Ok(mut buf) => {
                    buf.clear();
                    target.render(t, vars, &mut buf);
                    self.write(target.headers(), &buf);
                    if buf.capacity() > SCRATCH_KEEP {
                        *buf = Vec::new();
                    }
                }
                // Only if a `Vars` applied mutations from inside `write`: render apart.
                Err(_) => {
                    let mut buf = Vec::new();
                    target.render(t, vars, &mut buf);
                    self.write(target.headers(), &buf);
                }
            }),
        }
    }

    fn write(&self, headers: &mut HeaderMap, value: &[u8]) {
        if value.is_empty() && !self.keep_empty {
            return;
        }
        match self.action {
            AppendAction::AppendIfExistsOrAdd | AppendAction::AddIfAbsent => {
                headers.append(self.name.as_bytes(), value)
            }
            AppendAction::OverwriteIfExistsOrAdd | AppendAction::OverwriteIfExists => {
                headers.set(self.name.as_bytes(), value)
            }
        }
    }
}

/// A name a mutation may touch, lower-cased; or why not.
fn check_name(name: &str) -> Result<Box<str>, String> {
    if name.starts_with(':') {
        return Err(format!(
            "{name:?}: pseudo-headers may not be modified (Envoy refuses them too)"
        ));
    }
    if !HeaderMap::is_valid_name(name.as_bytes()) {
        return Err(format!(
            "{name:?} is not a valid header name (letters, digits and !#$%&'*+-.^_`|~)"
        ));
    }
    let lower = name.to_ascii_lowercase();
    if let Some((_, why)) = REFUSED.iter().find(|(n, _)| *n == lower) {
        return Err(format!("{lower:?} may not be modified: {why}"));
    }
    Ok(lower.into())
}

/// A value: parsed as a template; fixed text kept as bytes.
fn parse_value(s: &str) -> Result<Value, String> {
    if !HeaderMap::is_valid_value(s.as_bytes()) {
        return Err("a header value may not hold CR, LF or NUL".into());
    }
    let t = Template::parse(s)?;
    Ok(match t.literal() {
        Some(text) => Value::Literal(text.as_bytes().into()),
        None => Value::Template(t),
    })
}
