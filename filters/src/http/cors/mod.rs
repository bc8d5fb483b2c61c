//! The `cors` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `cors` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the cors filter is not built yet",
    )])
}
