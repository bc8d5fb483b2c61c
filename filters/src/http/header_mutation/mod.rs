//! The `header_mutation` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `header_mutation` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the header_mutation filter is not built yet",
    )])
}
