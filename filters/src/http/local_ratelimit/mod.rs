//! The `local_ratelimit` filter: not built yet.

use crate::registry::{ConfigProblem, ParseResult};

/// Validate a `local_ratelimit` config.
pub fn parse(_v: &serde_json::Value) -> ParseResult {
    Err(vec![ConfigProblem::at(
        "",
        "the local_ratelimit filter is not built yet",
    )])
}
