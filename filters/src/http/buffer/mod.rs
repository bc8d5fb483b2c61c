//! The `buffer` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `buffer` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the buffer filter is not built yet",
    )])
}
