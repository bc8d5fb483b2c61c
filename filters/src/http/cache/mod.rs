//! The `cache` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `cache` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the cache filter is not built yet",
    )])
}
