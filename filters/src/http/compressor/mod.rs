//! The `compressor` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `compressor` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the compressor filter is not built yet",
    )])
}
