//! Envoy's `StringMatcher` (`exact`, `prefix`, `suffix`, `contains`, `safe_regex`, with
//! `ignore_case`): decoded from the file, checked once at load into a [`StringMatcher`], then
//! matched against header bytes per request with no allocation.
//!
//! `ignore_case` folds ASCII only and has no effect on `safe_regex` (as in Envoy; write `(?i)`
//! in the pattern instead). A `safe_regex` must match the whole value (RE2's full match, as
//! Envoy does): the pattern is anchored at load.

use schemars::JsonSchema;
use serde::Deserialize;

use crate::registry::ConfigProblem;

/// Largest compiled regex accepted (bytes of the regex crate's program), so a pattern cannot
/// cost unbounded memory or match time.
const REGEX_SIZE_LIMIT: usize = 1 << 20;

/// One string matcher as written in the file: exactly one of the match keys.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StringMatcherSpec {
    /// The value equals this.
    #[serde(default)]
    pub exact: Option<String>,
    /// The value starts with this (not empty).
    #[serde(default)]
    pub prefix: Option<String>,
    /// The value ends with this (not empty).
    #[serde(default)]
    pub suffix: Option<String>,
    /// The value holds this somewhere (not empty).
    #[serde(default)]
    pub contains: Option<String>,
    /// The whole value matches this regular expression.
    #[serde(default)]
    pub safe_regex: Option<RegexMatcherSpec>,
    /// Compare ASCII letters without case (`exact`, `prefix`, `suffix`, `contains`).
    #[serde(default)]
    pub ignore_case: bool,
}

/// Envoy's `RegexMatcher`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RegexMatcherSpec {
    /// The pattern (the regex crate's syntax, close to RE2's).
    pub regex: String,
    /// Envoy's engine marker (`google_re2: {}`): accepted and ignored.
    #[serde(default)]
    pub google_re2: Option<serde_json::Value>,
}

#[derive(Debug, Clone)]
enum Kind {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    Contains(Box<[u8]>),
    Regex(regex::bytes::Regex),
}

/// A checked matcher.
#[derive(Debug, Clone)]
pub struct StringMatcher {
    kind: Kind,
    ignore_case: bool,
}

impl StringMatcher {
    /// Check `spec` (found at `path`): exactly one match key, non-empty patterns, a regex that
    /// compiles.
    pub fn new(spec: &StringMatcherSpec, path: &str) -> Result<StringMatcher, ConfigProblem> {
        let set = [
            spec.exact.is_some(),
            spec.prefix.is_some(),
            spec.suffix.is_some(),
            spec.contains.is_some(),
            spec.safe_regex.is_some(),
        ];
        if set.iter().filter(|s| **s).count() != 1 {
            return Err(ConfigProblem::at(
                path,
                "a string matcher has exactly one of `exact`, `prefix`, `suffix`, `contains`, \
                 `safe_regex`",
            ));
        }
        let text = |key: &str, s: &str| -> Result<Box<[u8]>, ConfigProblem> {
            if s.is_empty() {
                return Err(ConfigProblem::at(
                    &format!("{path}.{key}"),
                    format!("`{key}` may not be empty"),
                ));
            }
            Ok(s.as_bytes().into())
        };
        let kind = if let Some(s) = &spec.exact {
            Kind::Exact(s.as_bytes().into())
        } else if let Some(s) = &spec.prefix {
            Kind::Prefix(text("prefix", s)?)
        } else if let Some(s) = &spec.suffix {
            Kind::Suffix(text("suffix", s)?)
        } else if let Some(s) = &spec.contains {
            Kind::Contains(text("contains", s)?)
        } else if let Some(r) = &spec.safe_regex {
            Kind::Regex(
                compile(&r.regex)
                    .map_err(|msg| ConfigProblem::at(&format!("{path}.safe_regex.regex"), msg))?,
            )
        } else {
            // Unreachable: exactly one key was set above.
            return Err(ConfigProblem::at(path, "empty string matcher"));
        };
        Ok(StringMatcher {
            kind,
            ignore_case: spec.ignore_case,
        })
    }

    /// Whether `v` matches.
    pub fn matches(&self, v: &[u8]) -> bool {
        let eq = |a: &[u8], b: &[u8]| {
            if self.ignore_case {
                a.eq_ignore_ascii_case(b)
            } else {
                a == b
            }
        };
        match &self.kind {
            Kind::Exact(p) => eq(v, p),
            Kind::Prefix(p) => v.len() >= p.len() && eq(&v[..p.len()], p),
            Kind::Suffix(p) => v.len() >= p.len() && eq(&v[v.len() - p.len()..], p),
            Kind::Contains(p) => v.windows(p.len()).any(|w| eq(w, p)),
            Kind::Regex(r) => r.is_match(v),
        }
    }
}

/// `pattern` anchored to the whole value. It is first compiled alone, so that a pattern such
/// as `a)|(b` cannot escape the anchoring group.
fn compile(pattern: &str) -> Result<regex::bytes::Regex, String> {
    let build = |p: &str| {
        regex::bytes::RegexBuilder::new(p)
            .size_limit(REGEX_SIZE_LIMIT)
            .build()
            .map_err(|e| format!("invalid regex: {e}"))
    };
    build(pattern)?;
    build(&format!("^(?:{pattern})$"))
}
