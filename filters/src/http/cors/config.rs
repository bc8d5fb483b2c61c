//! The `cors` filter's config: Envoy's `CorsPolicy` as the filter's own map (a route that
//! overrides the filter replaces the whole policy), validated into a [`Policy`].
//!
//! ```yaml
//! - name: cors
//!   allow_origin_string_match: [{exact: "https://a.example"}, {suffix: ".example.com"}]
//!   allow_methods: "GET, POST, PUT"
//!   allow_headers: "content-type, x-token"
//!   expose_headers: "x-request-id"
//!   max_age: "86400"
//!   allow_credentials: true
//!   filter_enabled: {default_value: {numerator: 100, denominator: HUNDRED}}
//! ```

use serde::Deserialize;

use super::matcher::{StringMatcher, StringMatcherSpec};
use crate::{registry::ConfigProblem, stream::HeaderMap};

/// The filter's map (Envoy's `config.route.v3.CorsPolicy`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsSpec {
    /// Origins allowed, any matcher matching (a matcher that matches `*` allows every origin,
    /// as in Envoy). None: no origin is allowed.
    #[serde(default)]
    pub allow_origin_string_match: Vec<StringMatcherSpec>,
    /// `access-control-allow-methods` on preflights (a comma list; `*` echoes the requested
    /// method).
    #[serde(default)]
    pub allow_methods: Option<String>,
    /// `access-control-allow-headers` on preflights (a comma list; `*` echoes the requested
    /// headers).
    #[serde(default)]
    pub allow_headers: Option<String>,
    /// `access-control-expose-headers` on actual responses (a comma list).
    #[serde(default)]
    pub expose_headers: Option<String>,
    /// `access-control-max-age` on preflights: seconds, as a string of digits (Envoy's type);
    /// a bare number is accepted too.
    #[serde(default)]
    pub max_age: Option<serde_json::Value>,
    /// Send `access-control-allow-credentials: true` (default false).
    #[serde(default)]
    pub allow_credentials: Option<bool>,
    /// Share of requests the filter handles (default: all).
    #[serde(default)]
    pub filter_enabled: Option<RuntimeFractionSpec>,
    /// Share of requests whose origin is checked and counted without any CORS header being
    /// added or any preflight answered (when `filter_enabled` does not pick them).
    #[serde(default)]
    pub shadow_enabled: Option<RuntimeFractionSpec>,
    /// Answer `access-control-request-private-network: true` on preflights with
    /// `access-control-allow-private-network: true` (default false).
    #[serde(default)]
    pub allow_private_network_access: Option<bool>,
    /// Preflights from an origin that is not allowed go to the upstream (default true); false:
    /// they are answered here with 200 and no `access-control-allow-origin`.
    #[serde(default)]
    pub forward_not_matching_preflights: Option<bool>,
}

/// Envoy's `RuntimeFractionalPercent`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuntimeFractionSpec {
    /// The share.
    pub default_value: FractionSpec,
    /// Envoy's runtime override key: ringway has no runtime layer, so it is refused.
    #[serde(default)]
    pub runtime_key: Option<String>,
}

/// Envoy's `FractionalPercent`: `numerator / denominator`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FractionSpec {
    /// Above the denominator counts as the denominator (as in Envoy).
    #[serde(default)]
    pub numerator: u32,
    /// `HUNDRED` (default), `TEN_THOUSAND` or `MILLION`.
    #[serde(default)]
    pub denominator: Denominator,
}

/// Envoy's `FractionalPercent.DenominatorType`.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Denominator {
    #[default]
    Hundred,
    TenThousand,
    Million,
}

/// A share of requests: picked when a draw below `denominator` is below `numerator`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fraction {
    pub numerator: u32,
    pub denominator: u32,
}

impl Fraction {
    pub const ALL: Fraction = Fraction {
        numerator: 1,
        denominator: 1,
    };
    pub const NONE: Fraction = Fraction {
        numerator: 0,
        denominator: 1,
    };

    pub fn is_all(self) -> bool {
        self.numerator >= self.denominator
    }

    pub fn is_none(self) -> bool {
        self.numerator == 0
    }
}

/// The validated policy.
#[derive(Debug)]
pub struct Policy {
    pub origins: Vec<StringMatcher>,
    /// Some matcher matches `*`: every origin is allowed.
    pub any_origin: bool,
    pub allow_methods: Option<Box<str>>,
    pub allow_headers: Option<Box<str>>,
    pub expose_headers: Option<Box<str>>,
    pub max_age: Option<Box<str>>,
    pub allow_credentials: bool,
    pub enabled: Fraction,
    /// `None`: no shadow mode.
    pub shadow: Option<Fraction>,
    pub allow_private_network_access: bool,
    pub forward_not_matching_preflights: bool,
}

impl CorsSpec {
    /// Check every field; every problem comes back with its path.
    pub fn validate(&self) -> Result<Policy, Vec<ConfigProblem>> {
        let mut problems = Vec::new();
        let mut origins = Vec::new();
        for (i, m) in self.allow_origin_string_match.iter().enumerate() {
            match StringMatcher::new(m, &format!("allow_origin_string_match.{i}")) {
                Ok(m) => origins.push(m),
                Err(p) => problems.push(p),
            }
        }
        let mut list = |key: &str, v: &Option<String>| {
            let v = v.as_deref().map(str::trim).filter(|s| !s.is_empty())?;
            if HeaderMap::is_valid_value(v.as_bytes()) {
                Some(Box::from(v))
            } else {
                problems.push(ConfigProblem::at(
                    key,
                    "a header value may not hold CR, LF or NUL",
                ));
                None
            }
        };
        let allow_methods = list("allow_methods", &self.allow_methods);
        let allow_headers = list("allow_headers", &self.allow_headers);
        let expose_headers = list("expose_headers", &self.expose_headers);
        let max_age = match self.max_age.as_ref().map(max_age) {
            Some(Ok(v)) => v,
            Some(Err(msg)) => {
                problems.push(ConfigProblem::at("max_age", msg));
                None
            }
            None => None,
        };
        let mut fraction = |key: &str, f: &Option<RuntimeFractionSpec>| {
            let f = f.as_ref()?;
            if f.runtime_key.is_some() {
                problems.push(ConfigProblem::at(
                    &format!("{key}.runtime_key"),
                    "ringway has no runtime layer: the share is `default_value`; remove \
                     `runtime_key`",
                ));
            }
            let denominator = match f.default_value.denominator {
                Denominator::Hundred => 100,
                Denominator::TenThousand => 10_000,
                Denominator::Million => 1_000_000,
            };
            Some(Fraction {
                numerator: f.default_value.numerator.min(denominator),
                denominator,
            })
        };
        let enabled = fraction("filter_enabled", &self.filter_enabled).unwrap_or(Fraction::ALL);
        let shadow = fraction("shadow_enabled", &self.shadow_enabled);
        if !problems.is_empty() {
            return Err(problems);
        }
        let any_origin = origins.iter().any(|m| m.matches(b"*"));
        Ok(Policy {
            origins,
            any_origin,
            allow_methods,
            allow_headers,
            expose_headers,
            max_age,
            allow_credentials: self.allow_credentials.unwrap_or(false),
            enabled,
            shadow,
            allow_private_network_access: self.allow_private_network_access.unwrap_or(false),
            forward_not_matching_preflights: self.forward_not_matching_preflights.unwrap_or(true),
        })
    }
}

/// `max_age`: a string of digits or a whole number of seconds (`""`: unset, as in Envoy).
fn max_age(v: &serde_json::Value) -> Result<Option<Box<str>>, String> {
    let s = match v {
        serde_json::Value::String(s) => s.trim().to_string(),
        serde_json::Value::Number(n) if n.is_u64() => n.to_string(),
        serde_json::Value::Null => return Ok(None),
        other => return Err(format!("expected seconds like \"86400\", found {other}")),
    };
    if s.is_empty() {
        return Ok(None);
    }
    if s.len() > 10 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{s:?}: expected whole seconds like \"86400\""));
    }
    Ok(Some(s.into()))
}
