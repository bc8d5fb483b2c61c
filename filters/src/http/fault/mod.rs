//! The `fault` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `fault` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the fault filter is not built yet",
    )])
}
