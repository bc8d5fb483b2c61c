//! The `header_mutation` filter's config, in Envoy's words
//! (`envoy.extensions.filters.http.header_mutation.v3.HeaderMutation` without `typed_config`),
//! and its validation into four [`Mutations`] lists.
//!
//! ```yaml
//! - name: header_mutation
//!   mutations:
//!     request_mutations:
//!       - append: {header: {key: x-client, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}}
//!       - remove: x-internal
//!     response_mutations:
//!       - append: {header: {key: x-served-by, value: ringway}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
//! ```

use serde::Deserialize;

use super::mutations::{HeaderValueOptionSpec, Mutations};
use crate::registry::ConfigProblem;

/// The filter's map.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMutationSpec {
    /// The edits, by direction.
    #[serde(default)]
    pub mutations: MutationsSpec,
    /// Envoy's switch for the order of per-route mutation levels. ringway replaces a filter's
    /// whole config per route (nothing is merged), so it has no meaning: refused when set.
    #[serde(default)]
    pub most_specific_header_mutations_wins: Option<bool>,
}

/// Envoy's `Mutations`: edits applied in the order written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutationsSpec {
    /// Edits to the request head before it goes on to the next filter (and the upstream).
    #[serde(default)]
    pub request_mutations: Vec<HeaderMutationEntry>,
    /// Edits to the response head before it goes to the client.
    #[serde(default)]
    pub response_mutations: Vec<HeaderMutationEntry>,
    /// Edits to the request's trailers, when it has some.
    #[serde(default)]
    pub request_trailers_mutations: Vec<HeaderMutationEntry>,
    /// Edits to the response's trailers, when it has some.
    #[serde(default)]
    pub response_trailers_mutations: Vec<HeaderMutationEntry>,
    /// Envoy's query-parameter edits: not supported yet (refused when non-empty).
    #[serde(default)]
    pub query_parameter_mutations: Vec<serde_json::Value>,
    /// The older Envoy name of `query_parameter_mutations`: refused the same way.
    #[serde(default)]
    pub parameter_mutations: Vec<serde_json::Value>,
}

/// Envoy's `mutation_rules.v3.HeaderMutation`: exactly one of the keys.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderMutationEntry {
    /// Add a header (Envoy's `HeaderValueOption`).
    #[serde(default)]
    pub append: Option<HeaderValueOptionSpec>,
    /// Remove every field of this name.
    #[serde(default)]
    pub remove: Option<String>,
    /// Envoy's removal by name matcher: not supported yet (refused).
    #[serde(default)]
    pub remove_on_match: Option<serde_json::Value>,
}

/// The validated config: one list per direction and part.
#[derive(Debug, Default)]
pub struct Validated {
    pub request: Mutations,
    pub response: Mutations,
    pub request_trailers: Mutations,
    pub response_trailers: Mutations,
}

impl HeaderMutationSpec {
    /// Check every entry; every problem comes back with its path.
    pub fn validate(&self) -> Result<Validated, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        if self.most_specific_header_mutations_wins.is_some() {
            problems.push(ConfigProblem::at(
                "most_specific_header_mutations_wins",
                "ringway replaces this filter's whole config for a route that overrides it \
                 (mutations from several levels are not merged), so this key has no meaning: \
                 remove it",
            ));
        }
        let m = &self.mutations;
        for (key, list) in [
            ("query_parameter_mutations", &m.query_parameter_mutations),
            ("parameter_mutations", &m.parameter_mutations),
        ] {
            if !list.is_empty() {
                problems.push(ConfigProblem::at(
                    &format!("mutations.{key}"),
                    "query parameter mutations are not supported yet",
                ));
            }
        }
        let mut list = |key: &str, entries: &[HeaderMutationEntry]| {
            build(entries, &format!("mutations.{key}"), &mut problems)
        };
        let v = Validated {
            request: list("request_mutations", &m.request_mutations),
            response: list("response_mutations", &m.response_mutations),
            request_trailers: list("request_trailers_mutations", &m.request_trailers_mutations),
            response_trailers: list(
                "response_trailers_mutations",
                &m.response_trailers_mutations,
            ),
        };
        if problems.is_empty() {
            Ok(v)
        } else {
            Err(problems)
        }
    }
}

/// One list of entries, in order, into `Mutations`; problems go to `problems`.
fn build(
    entries: &[HeaderMutationEntry],
    path: &str,
    problems: &mut Vec<ConfigProblem>,
) -> Mutations {
    let mut m = Mutations::default();
    for (i, e) in entries.iter().enumerate() {
        let at = format!("{path}.{i}");
        match (&e.append, &e.remove, &e.remove_on_match) {
            (Some(add), None, None) => {
                if let Err(mut p) = m.push_add(add, &format!("{at}.append")) {
                    problems.append(&mut p);
                }
            }
            (None, Some(name), None) => {
                if let Err(p) = m.push_remove(name, &format!("{at}.remove")) {
                    problems.push(p);
                }
            }
            (None, None, Some(_)) => problems.push(ConfigProblem::at(
                &format!("{at}.remove_on_match"),
                "remove_on_match is not supported yet (list the names with `remove`)",
            )),
            _ => problems.push(ConfigProblem::at(
                &at,
                "a mutation has exactly one of `append`, `remove`, `remove_on_match`",
            )),
        }
    }
    m
}
