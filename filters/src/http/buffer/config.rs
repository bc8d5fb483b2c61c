//! The `buffer` config: Envoy's one key, checked.

use serde::Deserialize;

use crate::{registry::ConfigProblem, stats::StatSet};

/// Index of `buffer.rq_buffered` in the counters.
pub(crate) const RQ_BUFFERED: usize = 0;

/// The filter's map in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// The largest request body read whole (bytes, above 0); a longer one is refused with 413.
    /// Required, as in Envoy.
    #[serde(default)]
    pub max_request_bytes: Option<u64>,
}

/// The validated config.
#[derive(Debug)]
pub(crate) struct Config {
    pub max_request_bytes: usize,
    /// `buffer.rq_buffered`.
    pub stats: StatSet,
}

/// Envoy's limit: a `UInt32Value`.
const MAX: u64 = u32::MAX as u64;

/// Check a decoded spec's meaning.
pub(crate) fn validate(spec: Spec) -> Result<Config, Vec<ConfigProblem>> {
    let max_request_bytes = match spec.max_request_bytes {
        None => Err("required: the largest request body to read whole, in bytes".to_string()),
        Some(0) => Err("must be above 0".to_string()),
        Some(n) if n > MAX => Err(format!("{n} is above {MAX} (4 GiB)")),
        Some(n) => usize::try_from(n).map_err(|_| format!("{n} does not fit this machine")),
    }
    .map_err(|m| vec![ConfigProblem::at("max_request_bytes", m)])?;
    Ok(Config {
        max_request_bytes,
        stats: StatSet::new("buffer.", &["rq_buffered"]),
    })
}
