//! The `local_ratelimit` config: the file's shape ([`Spec`], Envoy's key names) and its
//! validation into the immutable [`Config`] every worker builds its buckets from. Every problem
//! is collected with its path; nothing here runs per request.

use std::{net::IpAddr, time::Duration};

use serde::Deserialize;
use serde_json::Value;

use super::{
    bucket::BucketSpec,
    percent::{Percent, RuntimeFractionalPercentSpec},
};
use crate::{registry::ConfigProblem, stats::StatSet, stream::HeaderMap, template::Template};

/// Envoy's smallest `fill_interval` for this filter.
pub(crate) const MIN_FILL_INTERVAL: Duration = Duration::from_millis(50);
/// `max_buckets` when absent.
pub(crate) const DEFAULT_MAX_BUCKETS: u32 = 10_000;
/// `max_buckets` at most (per descriptor per worker).
const MAX_MAX_BUCKETS: u32 = 10_000_000;

/// The filter's map in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// Prefix of the filter's stats (`<stat_prefix>.http_local_rate_limit.*`). Required, as in
    /// Envoy.
    #[serde(default)]
    pub stat_prefix: Option<String>,
    /// The bucket every request takes a token from. Absent: no route-level limit (only
    /// `descriptors` limit).
    #[serde(default)]
    pub token_bucket: Option<TokenBucketSpec>,
    /// Share of requests checked at all. Absent: 100% (Envoy's default is 0%, which leaves a
    /// filter without this key doing nothing).
    #[serde(default)]
    pub filter_enabled: Option<RuntimeFractionalPercentSpec>,
    /// Share of limited requests actually refused (the others pass and are counted). Absent:
    /// 100% (Envoy: 0%).
    #[serde(default)]
    pub filter_enforced: Option<RuntimeFractionalPercentSpec>,
    /// Status of the refusal: `429`, or Envoy's `{code: TooManyRequests}` / `{code: 429}`.
    /// Default 429.
    #[serde(default)]
    pub status: Option<Value>,
    /// `DRAFT_VERSION_03`: responses that passed get `x-ratelimit-limit`,
    /// `x-ratelimit-remaining` and `x-ratelimit-reset`. `OFF` (default): only refusals carry
    /// them.
    #[serde(default)]
    pub enable_x_ratelimit_headers: Option<XRateLimitHeaders>,
    /// Headers added to the refusal (Envoy's `HeaderValueOption`s; values may use `%VAR%`).
    #[serde(default)]
    pub response_headers_to_add: Vec<HeaderValueOptionSpec>,
    /// Buckets per distinct value (the first descriptor whose entries all have a value applies).
    #[serde(default)]
    pub descriptors: Vec<DescriptorSpec>,
}

/// Envoy's `TokenBucket`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TokenBucketSpec {
    /// Tokens the bucket holds at most, and holds at start (the burst). Required, > 0.
    #[serde(default)]
    pub max_tokens: Option<u32>,
    /// Tokens added each `fill_interval`. Default 1, > 0.
    #[serde(default)]
    pub tokens_per_fill: Option<u32>,
    /// How often tokens are added. Required, >= 50ms (as Envoy).
    #[serde(default, deserialize_with = "crate::registry::opt_duration")]
    pub fill_interval: Option<Duration>,
}

/// Envoy's `XRateLimitHeadersRFCVersion`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum XRateLimitHeaders {
    /// No headers on responses that passed.
    Off,
    /// `x-ratelimit-limit`, `x-ratelimit-remaining`, `x-ratelimit-reset`.
    #[serde(rename = "DRAFT_VERSION_03")]
    DraftVersion03,
}

/// Envoy's `HeaderValueOption`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderValueOptionSpec {
    /// The header.
    pub header: HeaderValueSpec,
    /// Envoy's older switch: `false` replaces a header of the same name
    /// (`OVERWRITE_IF_EXISTS_OR_ADD`). Not with `append_action`.
    #[serde(default)]
    pub append: Option<bool>,
    /// What to do when the header is already there. Default `APPEND_IF_EXISTS_OR_ADD`.
    #[serde(default)]
    pub append_action: Option<AppendAction>,
    /// Add the header even when its value renders empty (default false: skipped).
    #[serde(default)]
    pub keep_empty_value: bool,
}

/// Envoy's `HeaderValue`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HeaderValueSpec {
    /// Header name.
    pub key: String,
    /// Value: text with optional `%VAR%` commands.
    #[serde(default)]
    pub value: String,
}

/// Envoy's `HeaderValueOption.HeaderAppendAction`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub(crate) enum AppendAction {
    /// Add another value.
    AppendIfExistsOrAdd,
    /// Add only when absent.
    AddIfAbsent,
    /// Replace, or add.
    OverwriteIfExistsOrAdd,
    /// Replace only when present.
    OverwriteIfExists,
}

/// A descriptor: which request values pick a bucket, and that bucket's size.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DescriptorSpec {
    /// The values that make the key (one bucket per distinct combination). At least one.
    #[serde(default)]
    pub entries: Vec<EntrySpec>,
    /// Each value's bucket (split between workers like the route's). Required.
    #[serde(default)]
    pub token_bucket: Option<TokenBucketSpec>,
    /// Distinct values remembered per worker; past it the least recently used is forgotten.
    /// Default 10000.
    #[serde(default)]
    pub max_buckets: Option<u32>,
}

/// One entry of a descriptor.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct EntrySpec {
    /// `remote_address` (the client's IP) or `header` (alias `request_headers`, Envoy's action
    /// name) with `header_name`.
    pub key: String,
    /// The header whose (first) value is the entry's value; with `key: header` only.
    #[serde(default)]
    pub header_name: Option<String>,
    /// Apply the descriptor only when the entry's value is exactly this (for `remote_address`,
    /// an IP address).
    #[serde(default)]
    pub value: Option<String>,
}

/// Where an entry's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    /// The client's IP address.
    RemoteAddress,
    /// The first value of this (lower-case) header; absent header: no value.
    Header(String),
}

/// A validated entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Entry {
    pub source: Source,
    /// The only value the descriptor applies to (`None`: any).
    pub only: Option<EntryValue>,
}

/// A fixed value an entry must have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum EntryValue {
    Ip(IpAddr),
    Bytes(Vec<u8>),
}

/// A validated descriptor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub entries: Vec<Entry>,
    pub bucket: BucketSpec,
    pub max_buckets: usize,
}

/// A header to add to the refusal.
#[derive(Debug, Clone)]
pub(crate) struct AddHeader {
    pub name: String,
    pub value: Template,
    pub action: AppendAction,
    pub keep_empty: bool,
}

/// The validated config, shared by every worker.
#[derive(Debug)]
pub(crate) struct Config {
    pub bucket: Option<BucketSpec>,
    pub enabled: Percent,
    pub enforced: Percent,
    pub status: u16,
    pub x_headers: bool,
    pub add_headers: Vec<AddHeader>,
    pub descriptors: Vec<Descriptor>,
    pub stats: StatSet,
}

/// Counter indexes in [`Config::stats`] (Envoy's names).
pub(crate) const ENABLED: usize = 0;
pub(crate) const ENFORCED: usize = 1;
pub(crate) const RATE_LIMITED: usize = 2;
pub(crate) const OK: usize = 3;
const STAT_NAMES: &[&str] = &["enabled", "enforced", "rate_limited", "ok"];

/// Headers a filter may not add (the codec owns framing and hop-by-hop headers).
const FORBIDDEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "te",
    "upgrade",
    "proxy-connection",
];

/// Validate a decoded spec.
pub(crate) fn validate(spec: Spec) -> Result<Config, Vec<ConfigProblem>> {
    let mut errs = Vec::new();
    let stat_prefix = match spec.stat_prefix {
        Some(p) if !p.is_empty() => p,
        Some(_) => {
            errs.push(ConfigProblem::at("stat_prefix", "must not be empty"));
            String::new()
        }
        None => {
            errs.push(ConfigProblem::at(
                "stat_prefix",
                "required (the stats are <stat_prefix>.http_local_rate_limit.*)",
            ));
            String::new()
        }
    };
    let bucket = spec
        .token_bucket
        .as_ref()
        .and_then(|b| token_bucket(b, "token_bucket", &mut errs));
    let percent = |p: &Option<RuntimeFractionalPercentSpec>| {
        p.as_ref()
            .map_or(Percent::ALWAYS, |p| Percent::from_spec(p.default_value))
    };
    let status = spec
        .status
        .as_ref()
        .map_or(429, |v| status(v, &mut errs).unwrap_or(429));
    let add_headers = spec
        .response_headers_to_add
        .iter()
        .enumerate()
        .filter_map(|(i, h)| add_header(h, &format!("response_headers_to_add.{i}"), &mut errs))
        .collect();
    let descriptors = spec
        .descriptors
        .iter()
        .enumerate()
        .filter_map(|(i, d)| descriptor(d, &format!("descriptors.{i}"), &mut errs))
        .collect();
    if !errs.is_empty() {
        return Err(errs);
    }
    Ok(Config {
        bucket,
        enabled: percent(&spec.filter_enabled),
        enforced: percent(&spec.filter_enforced),
        status,
        x_headers: spec.enable_x_ratelimit_headers == Some(XRateLimitHeaders::DraftVersion03),
        add_headers,
        descriptors,
        stats: StatSet::new(&format!("{stat_prefix}.http_local_rate_limit."), STAT_NAMES),
    })
}

fn token_bucket(
    b: &TokenBucketSpec,
    at: &str,
    errs: &mut Vec<ConfigProblem>,
) -> Option<BucketSpec> {
    let n = errs.len();
    let max_tokens = match b.max_tokens {
        Some(0) => {
            errs.push(ConfigProblem::at(
                &format!("{at}.max_tokens"),
                "must be > 0",
            ));
            0
        }
        Some(m) => m,
        None => {
            errs.push(ConfigProblem::at(&format!("{at}.max_tokens"), "required"));
            0
        }
    };
    let tokens_per_fill = b.tokens_per_fill.unwrap_or(1);
    if tokens_per_fill == 0 {
        errs.push(ConfigProblem::at(
            &format!("{at}.tokens_per_fill"),
            "must be > 0",
        ));
    }
    let fill_interval = match b.fill_interval {
        Some(d) if d < MIN_FILL_INTERVAL => {
            errs.push(ConfigProblem::at(
                &format!("{at}.fill_interval"),
                format!("{d:?} is below the minimum of 50ms (as Envoy)"),
            ));
            d
        }
        Some(d) => d,
        None => {
            errs.push(ConfigProblem::at(
                &format!("{at}.fill_interval"),
                "required (e.g. \"1s\")",
            ));
            Duration::ZERO
        }
    };
    (errs.len() == n).then_some(BucketSpec {
        max_tokens: u64::from(max_tokens),
        tokens_per_fill: u64::from(tokens_per_fill),
        fill_interval,
    })
}

/// `429`, `{code: 429}` or `{code: TooManyRequests}`; 400..=599.
fn status(v: &Value, errs: &mut Vec<ConfigProblem>) -> Option<u16> {
    let (code, at) = match v {
        Value::Object(m) => {
            if let Some(k) = m.keys().find(|k| *k != "code") {
                errs.push(ConfigProblem::at(
                    &format!("status.{k}"),
                    "unknown key, expected `code`",
                ));
                return None;
            }
            match m.get("code") {
                Some(c) => (c, "status.code"),
                None => {
                    errs.push(ConfigProblem::at("status.code", "required"));
                    return None;
                }
            }
        }
        other => (other, "status"),
    };
    let n = match code {
        Value::Number(n) => n.as_u64(),
        Value::String(s) => match ENVOY_STATUS_NAMES.iter().find(|(name, _)| name == s) {
            Some(&(_, c)) => Some(u64::from(c)),
            None => {
                errs.push(ConfigProblem::at(
                    at,
                    format!("unknown status name {s:?} (Envoy's StatusCode names, e.g. TooManyRequests, ServiceUnavailable; or a number)"),
                ));
                return None;
            }
        },
        _ => None,
    };
    match n {
        Some(n @ 400..=599) => Some(n as u16),
        _ => {
            errs.push(ConfigProblem::at(
                at,
                format!("expected an error status 400..599, found {code}"),
            ));
            None
        }
    }
}

/// Envoy's `type.v3.StatusCode` names of the error statuses.
const ENVOY_STATUS_NAMES: &[(&str, u16)] = &[
    ("BadRequest", 400),
    ("Unauthorized", 401),
    ("PaymentRequired", 402),
    ("Forbidden", 403),
    ("NotFound", 404),
    ("MethodNotAllowed", 405),
    ("NotAcceptable", 406),
    ("ProxyAuthenticationRequired", 407),
    ("RequestTimeout", 408),
    ("Conflict", 409),
    ("Gone", 410),
    ("LengthRequired", 411),
    ("PreconditionFailed", 412),
    ("PayloadTooLarge", 413),
    ("URITooLong", 414),
    ("UnsupportedMediaType", 415),
    ("RangeNotSatisfiable", 416),
    ("ExpectationFailed", 417),
    ("MisdirectedRequest", 421),
    ("UnprocessableEntity", 422),
    ("Locked", 423),
    ("FailedDependency", 424),
    ("UpgradeRequired", 426),
    ("PreconditionRequired", 428),
    ("TooManyRequests", 429),
    ("RequestHeaderFieldsTooLarge", 431),
    ("InternalServerError", 500),
    ("NotImplemented", 501),
    ("BadGateway", 502),
    ("ServiceUnavailable", 503),
    ("GatewayTimeout", 504),
    ("HTTPVersionNotSupported", 505),
    ("VariantAlsoNegotiates", 506),
    ("InsufficientStorage", 507),
    ("LoopDetected", 508),
    ("NotExtended", 510),
    ("NetworkAuthenticationRequired", 511),
];

fn add_header(
    h: &HeaderValueOptionSpec,
    at: &str,
    errs: &mut Vec<ConfigProblem>,
) -> Option<AddHeader> {
    let n = errs.len();
    let name = h.header.key.to_ascii_lowercase();
    if !HeaderMap::is_valid_name(name.as_bytes()) {
        errs.push(ConfigProblem::at(
            &format!("{at}.header.key"),
            format!("{:?} is not a valid header name", h.header.key),
        ));
    } else if FORBIDDEN.contains(&name.as_str()) {
        errs.push(ConfigProblem::at(
            &format!("{at}.header.key"),
            format!("{name} is set by the codec, not by filters"),
        ));
    }
    let value = if !HeaderMap::is_valid_value(h.header.value.as_bytes()) {
        errs.push(ConfigProblem::at(
            &format!("{at}.header.value"),
            "a header value may not hold CR, LF or NUL",
        ));
        None
    } else {
        Template::parse(&h.header.value)
            .map_err(|e| errs.push(ConfigProblem::at(&format!("{at}.header.value"), e)))
            .ok()
    };
    let action = match (h.append, h.append_action) {
        (Some(_), Some(_)) => {
            errs.push(ConfigProblem::at(
                &format!("{at}.append"),
                "use either `append` or `append_action`, not both",
            ));
            AppendAction::AppendIfExistsOrAdd
        }
        (Some(false), None) => AppendAction::OverwriteIfExistsOrAdd,
        (_, Some(a)) => a,
        _ => AppendAction::AppendIfExistsOrAdd,
    };
    let value = value?;
    (errs.len() == n).then_some(AddHeader {
        name,
        value,
        action,
        keep_empty: h.keep_empty_value,
    })
}

fn descriptor(d: &DescriptorSpec, at: &str, errs: &mut Vec<ConfigProblem>) -> Option<Descriptor> {
    let n = errs.len();
    if d.entries.is_empty() {
        errs.push(ConfigProblem::at(
            &format!("{at}.entries"),
            "at least one entry (e.g. {key: remote_address})",
        ));
    }
    let entries: Vec<Entry> = d
        .entries
        .iter()
        .enumerate()
        .filter_map(|(i, e)| entry(e, &format!("{at}.entries.{i}"), errs))
        .collect();
    let bucket = match &d.token_bucket {
        Some(b) => token_bucket(b, &format!("{at}.token_bucket"), errs),
        None => {
            errs.push(ConfigProblem::at(
                &format!("{at}.token_bucket"),
                "required (each distinct value's bucket)",
            ));
            None
        }
    };
    let max_buckets = d.max_buckets.unwrap_or(DEFAULT_MAX_BUCKETS);
    if !(1..=MAX_MAX_BUCKETS).contains(&max_buckets) {
        errs.push(ConfigProblem::at(
            &format!("{at}.max_buckets"),
            format!("must be 1..={MAX_MAX_BUCKETS}"),
        ));
    }
    let bucket = bucket?;
    (errs.len() == n).then_some(Descriptor {
        entries,
        bucket,
        max_buckets: max_buckets as usize,
    })
}

fn entry(e: &EntrySpec, at: &str, errs: &mut Vec<ConfigProblem>) -> Option<Entry> {
    match (e.key.as_str(), &e.header_name) {
        ("remote_address", None) => {
            let only = match &e.value {
                None => None,
                Some(v) => match v.parse::<IpAddr>() {
                    Ok(ip) => Some(EntryValue::Ip(ip)),
                    Err(_) => {
                        errs.push(ConfigProblem::at(
                            &format!("{at}.value"),
                            format!("{v:?} is not an IP address"),
                        ));
                        return None;
                    }
                },
            };
            Some(Entry {
                source: Source::RemoteAddress,
                only,
            })
        }
        ("remote_address", Some(_)) => {
            errs.push(ConfigProblem::at(
                &format!("{at}.header_name"),
                "only with `key: header`",
            ));
            None
        }
        ("header" | "request_headers", Some(h)) => {
            let h = h.to_ascii_lowercase();
            if !HeaderMap::is_valid_name(h.as_bytes()) {
                errs.push(ConfigProblem::at(
                    &format!("{at}.header_name"),
                    format!("{h:?} is not a valid header name"),
                ));
                return None;
            }
            Some(Entry {
                source: Source::Header(h),
                only: e
                    .value
                    .as_ref()
                    .map(|v| EntryValue::Bytes(v.as_bytes().to_vec())),
            })
        }
        ("header" | "request_headers", None) => {
            errs.push(ConfigProblem::at(
                &format!("{at}.header_name"),
                "required with `key: header`",
            ));
            None
        }
        (k, _) => {
            errs.push(ConfigProblem::at(
                &format!("{at}.key"),
                format!("unknown descriptor key {k:?} (known: remote_address, header)"),
            ));
            None
        }
    }
}
