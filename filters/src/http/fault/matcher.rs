//! Envoy's `HeaderMatcher`, the part the fault filter needs: `exact_match`, `prefix_match`,
//! `suffix_match`, `contains_match`, `string_match: {exact | prefix | suffix | contains,
//! ignore_case}`, `present_match`, with `invert_match` and `treat_missing_header_as_empty`.
//! Regex and range matchers are refused at load (not built yet).
//!
//! Semantics follow Envoy's `HeaderUtility::matchHeaders`: several values of one header are
//! matched as one value joined with `,`; a matcher without a specifier matches presence; a
//! missing header matches nothing except `present_match` (`present_match: false` matches a
//! missing header, `invert_match` flips it), so `invert_match` on a value matcher does not
//! match a missing header.

use serde::Deserialize;
use serde_json::Value;

use crate::{registry::ConfigProblem, stream::HeaderMap};

/// A header matcher as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderMatcherSpec {
    /// The header's name. Required.
    #[serde(default)]
    pub name: Option<String>,
    /// The value is exactly this (Envoy's older form of `string_match.exact`).
    #[serde(default)]
    pub exact_match: Option<String>,
    /// The value starts with this.
    #[serde(default)]
    pub prefix_match: Option<String>,
    /// The value ends with this.
    #[serde(default)]
    pub suffix_match: Option<String>,
    /// The value contains this.
    #[serde(default)]
    pub contains_match: Option<String>,
    /// `true`: the header is present; `false`: it is absent.
    #[serde(default)]
    pub present_match: Option<bool>,
    /// Envoy's `StringMatcher`.
    #[serde(default)]
    pub string_match: Option<StringMatcherSpec>,
    /// Not built yet (refused with a message).
    #[serde(default)]
    pub safe_regex_match: Option<Value>,
    /// Not built yet (refused with a message).
    #[serde(default)]
    pub range_match: Option<Value>,
    /// Match when the matcher would not (see the module doc for a missing header).
    #[serde(default)]
    pub invert_match: bool,
    /// A missing header is matched as an empty value.
    #[serde(default)]
    pub treat_missing_header_as_empty: bool,
}

/// Envoy's `StringMatcher`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StringMatcherSpec {
    /// Exactly this.
    #[serde(default)]
    pub exact: Option<String>,
    /// Starts with this (not empty).
    #[serde(default)]
    pub prefix: Option<String>,
    /// Ends with this (not empty).
    #[serde(default)]
    pub suffix: Option<String>,
    /// Contains this (not empty).
    #[serde(default)]
    pub contains: Option<String>,
    /// Not built yet (refused with a message).
    #[serde(default)]
    pub safe_regex: Option<Value>,
    /// Compare ASCII letters without case.
    #[serde(default)]
    pub ignore_case: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Exact,
    Prefix,
    Suffix,
    Contains,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Present(bool),
    Str {
        op: Op,
        pattern: Vec<u8>,
        ignore_case: bool,
    },
}

/// A validated header matcher.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HeaderMatcher {
    name: String,
    kind: Kind,
    invert: bool,
    missing_as_empty: bool,
}

impl HeaderMatcher {
    /// Validate `s` (at `at`, e.g. `headers.0`).
    pub(crate) fn parse(
        s: &HeaderMatcherSpec,
        at: &str,
        errs: &mut Vec<ConfigProblem>,
    ) -> Option<HeaderMatcher> {
        let n = errs.len();
        let name = match &s.name {
            Some(name) if HeaderMap::is_valid_name(name.as_bytes()) => name.to_ascii_lowercase(),
            Some(name) => {
                errs.push(ConfigProblem::at(
                    &format!("{at}.name"),
                    format!("{name:?} is not a valid header name"),
                ));
                String::new()
            }
            None => {
                errs.push(ConfigProblem::at(&format!("{at}.name"), "required"));
                String::new()
            }
        };
        let mut kinds: Vec<(&'static str, Kind)> = Vec::new();
        let mut str_kind = |key: &'static str, op, v: &Option<String>, ignore_case| {
            if let Some(v) = v {
                if op != Op::Exact && v.is_empty() {
                    errs.push(ConfigProblem::at(
                        &format!("{at}.{key}"),
                        "must not be empty",
                    ));
                }
                kinds.push((
                    key,
                    Kind::Str {
                        op,
                        pattern: v.as_bytes().to_vec(),
                        ignore_case,
                    },
                ));
            }
        };
        str_kind("exact_match", Op::Exact, &s.exact_match, false);
        str_kind("prefix_match", Op::Prefix, &s.prefix_match, false);
        str_kind("suffix_match", Op::Suffix, &s.suffix_match, false);
        str_kind("contains_match", Op::Contains, &s.contains_match, false);
        if let Some(m) = &s.string_match {
            let at = format!("{at}.string_match");
            let ic = m.ignore_case;
            let before = kinds.len();
            let mut sub = |key: &str, op, v: &Option<String>| {
                if let Some(v) = v {
                    if op != Op::Exact && v.is_empty() {
                        errs.push(ConfigProblem::at(
                            &format!("{at}.{key}"),
                            "must not be empty",
                        ));
                    }
                    kinds.push((
                        "string_match",
                        Kind::Str {
                            op,
                            pattern: v.as_bytes().to_vec(),
                            ignore_case: ic,
                        },
                    ));
                }
            };
            sub("exact", Op::Exact, &m.exact);
            sub("prefix", Op::Prefix, &m.prefix);
            sub("suffix", Op::Suffix, &m.suffix);
            sub("contains", Op::Contains, &m.contains);
            if m.safe_regex.is_some() {
                errs.push(ConfigProblem::at(
                    &format!("{at}.safe_regex"),
                    "regex matching is not supported yet (use exact, prefix, suffix or contains)",
                ));
            } else if kinds.len() == before {
                errs.push(ConfigProblem::at(
                    &at,
                    "needs one of exact, prefix, suffix, contains",
                ));
            } else if kinds.len() > before + 1 {
                errs.push(ConfigProblem::at(
                    &at,
                    "only one of exact, prefix, suffix, contains",
                ));
            }
        }
        if let Some(p) = s.present_match {
            kinds.push(("present_match", Kind::Present(p)));
        }
        for (key, what) in [
            ("safe_regex_match", &s.safe_regex_match),
            ("range_match", &s.range_match),
        ] {
            if what.is_some() {
                errs.push(ConfigProblem::at(
                    &format!("{at}.{key}"),
                    format!("{key} is not supported yet"),
                ));
            }
        }
        let mut keys: Vec<&str> = kinds.iter().map(|(k, _)| *k).collect();
        keys.dedup();
        if keys.len() > 1 {
            errs.push(ConfigProblem::at(
                at,
                format!("one way to match per header, found {}", keys.join(", ")),
            ));
        }
        if errs.len() != n {
            return None;
        }
        Some(HeaderMatcher {
            name,
            kind: kinds.pop().map_or(Kind::Present(true), |(_, kind)| kind),
            invert: s.invert_match,
            missing_as_empty: s.treat_missing_header_as_empty,
        })
    }

    /// Whether `headers` match.
    pub(crate) fn matches(&self, headers: &HeaderMap) -> bool {
        let mut values = headers.get_all(&self.name);
        let joined;
        let value: &[u8] = match (values.next(), values.next()) {
            (None, _) if !self.missing_as_empty => {
                return match self.kind {
                    Kind::Present(present) => present == self.invert,
                    Kind::Str { .. } => false,
                };
            }
            (None, _) => b"",
            (Some(v), None) => v,
            (Some(a), Some(b)) => {
                let mut all = Vec::with_capacity(a.len() + b.len() + 16);
                all.extend_from_slice(a);
                for v in std::iter::once(b).chain(values) {
                    all.push(b',');
                    all.extend_from_slice(v);
                }
                joined = all;
                &joined
            }
        };
        let m = match &self.kind {
            Kind::Present(present) => *present,
            Kind::Str {
                op,
                pattern,
                ignore_case,
            } => str_match(*op, value, pattern, *ignore_case),
        };
        m != self.invert
    }
}

fn eq(a: &[u8], b: &[u8], ignore_case: bool) -> bool {
    if ignore_case {
        a.eq_ignore_ascii_case(b)
    } else {
        a == b
    }
}

fn str_match(op: Op, v: &[u8], p: &[u8], ic: bool) -> bool {
    match op {
        Op::Exact => eq(v, p, ic),
        Op::Prefix => v.len() >= p.len() && eq(&v[..p.len()], p, ic),
        Op::Suffix => v.len() >= p.len() && eq(&v[v.len() - p.len()..], p, ic),
        Op::Contains => p.is_empty() || v.windows(p.len()).any(|w| eq(w, p, ic)),
    }
}
