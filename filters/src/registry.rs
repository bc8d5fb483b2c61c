//! The built-in filters by name: the one place a new filter is registered. The engine's config
//! loader calls [`parse`] with a filter's map from the file (without its `name` key); the
//! result is the validated, immutable [`FilterConfig`] that every worker builds its factory
//! from, or every problem found, each with its path inside that map.

use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::{filter::FilterConfig, http};

/// One step of a path inside a filter's config map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathSeg {
    Key(String),
    Index(usize),
}

/// A problem in a filter's config, at `path` inside the filter's map (empty: the map itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    pub path: Vec<PathSeg>,
    pub message: String,
}

impl ConfigProblem {
    /// A problem at `path`, written as keys separated by dots (`token_bucket.max_tokens`;
    /// numbers are list indexes).
    pub fn at(path: &str, message: impl Into<String>) -> ConfigProblem {
        let path = path
            .split('.')
            .filter(|s| !s.is_empty())
            .map(|s| match s.parse::<usize>() {
                Ok(i) => PathSeg::Index(i),
                Err(_) => PathSeg::Key(s.to_string()),
            })
            .collect();
        ConfigProblem {
            path,
            message: message.into(),
        }
    }
}

impl ConfigProblem {
    /// The path written as [`ConfigProblem::at`] takes it: keys and list indexes joined by dots.
    pub fn dotted_path(&self) -> String {
        self.path
            .iter()
            .map(|s| match s {
                PathSeg::Key(k) => k.clone(),
                PathSeg::Index(i) => i.to_string(),
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// What a filter's parser returns.
pub type ParseResult = Result<Arc<dyn FilterConfig>, Vec<ConfigProblem>>;

/// A registered filter.
#[derive(Debug)]
pub struct Kind {
    /// The name configs use (`cors`).
    pub name: &'static str,
    /// Envoy's name, accepted too (`envoy.filters.http.cors`).
    pub envoy_name: &'static str,
    /// Validate a config map (the filter's keys; `name` already removed).
    pub parse: fn(&Value) -> ParseResult,
}

/// Every built-in filter. A new filter is one folder under `src/http/` and one line here.
pub const BUILTIN: &[Kind] = &[
    Kind {
        name: "header_mutation",
        envoy_name: "envoy.filters.http.header_mutation",
        parse: http::header_mutation::parse,
    },
    Kind {
        name: "cors",
        envoy_name: "envoy.filters.http.cors",
        parse: http::cors::parse,
    },
    Kind {
        name: "local_ratelimit",
        envoy_name: "envoy.filters.http.local_ratelimit",
        parse: http::local_ratelimit::parse,
    },
    Kind {
        name: "fault",
        envoy_name: "envoy.filters.http.fault",
        parse: http::fault::parse,
    },
    Kind {
        name: "buffer",
        envoy_name: "envoy.filters.http.buffer",
        parse: http::buffer::parse,
    },
    Kind {
        name: "compressor",
        envoy_name: "envoy.filters.http.compressor",
        parse: http::compressor::parse,
    },
    Kind {
        name: "decompressor",
        envoy_name: "envoy.filters.http.decompressor",
        parse: http::decompressor::parse,
    },
    Kind {
        name: "cache",
        envoy_name: "envoy.filters.http.cache",
        parse: http::cache::parse,
    },
    Kind {
        name: "grpc_stats",
        envoy_name: "envoy.filters.http.grpc_stats",
        parse: http::grpc_stats::parse,
    },
    Kind {
        name: "grpc_web",
        envoy_name: "envoy.filters.http.grpc_web",
        parse: http::grpc_web::parse,
    },
];

/// The filter registered as `name` (ringway's or Envoy's spelling).
pub fn find(name: &str) -> Option<&'static Kind> {
    BUILTIN
        .iter()
        .find(|k| k.name == name || k.envoy_name == name)
}

/// Every registered name, for error messages.
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|k| k.name).collect()
}

/// Parse the config map of filter `name`. `Err` with one problem at the root when the name is
/// unknown.
pub fn parse(name: &str, value: &Value) -> ParseResult {
    match find(name) {
        Some(k) => (k.parse)(value),
        None => Err(vec![ConfigProblem {
            path: Vec::new(),
            message: format!(
                "unknown HTTP filter {name:?} (known: {})",
                names().join(", ")
            ),
        }]),
    }
}

/// Read `value` as `T` (serde, `deny_unknown_fields` in `T`), reporting the first problem with
/// its path. Filters' parsers start with this.
pub fn decode<T: DeserializeOwned>(value: &Value) -> Result<T, Vec<ConfigProblem>> {
    serde_path_to_error::deserialize::<_, T>(value).map_err(|e| {
        let mut path: Vec<PathSeg> = e
            .path()
            .iter()
            .filter_map(|s| match s {
                serde_path_to_error::Segment::Map { key } => Some(PathSeg::Key(key.clone())),
                serde_path_to_error::Segment::Seq { index } => Some(PathSeg::Index(*index)),
                _ => None,
            })
            .collect();
        let msg = e.inner().to_string();
        // `unknown field `x`, expected ...`: point at the key itself.
        if let Some(rest) = msg.strip_prefix("unknown field `") {
            if let Some(end) = rest.find('`') {
                let key = PathSeg::Key(rest[..end].to_string());
                if path.last() != Some(&key) {
                    path.push(key);
                }
                let tail = rest[end + 1..].trim_start_matches(", ");
                return vec![ConfigProblem {
                    path,
                    message: format!("unknown key, {tail}"),
                }];
            }
        }
        vec![ConfigProblem { path, message: msg }]
    })
}

/// A duration written as Envoy writes them: `"1.5s"`, `"250ms"`, `"2m"`, `"1h"`, `"10us"`, or a
/// number of seconds.
pub fn parse_duration(v: &Value) -> Result<std::time::Duration, String> {
    use std::time::Duration;
    let s = match v {
        Value::Number(n) => {
            return n
                .as_f64()
                .filter(|f| f.is_finite() && *f >= 0.0 && *f < 1e9)
                .map(Duration::from_secs_f64)
                .ok_or_else(|| format!("invalid duration {n}"))
        }
        Value::String(s) => s.trim(),
        other => return Err(format!("expected a duration like \"1s\", found {other}")),
    };
    let (num, unit) = s
        .find(|c: char| c.is_ascii_alphabetic())
        .map(|i| s.split_at(i))
        .unwrap_or((s, "s"));
    let n: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid duration {s:?} (write e.g. \"1s\", \"250ms\")"))?;
    let scale = match unit {
        "h" => 3600.0,
        "m" => 60.0,
        "s" => 1.0,
        "ms" => 1e-3,
        "us" => 1e-6,
        "ns" => 1e-9,
        _ => {
            return Err(format!(
                "invalid duration unit in {s:?} (h, m, s, ms, us, ns)"
            ))
        }
    };
    let secs = n * scale;
    if !secs.is_finite() || !(0.0..1e9).contains(&secs) {
        return Err(format!("duration {s:?} out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// serde helper: `#[serde(deserialize_with = "crate::registry::duration")]`.
pub fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
    let v = Value::deserialize(d)?;
    parse_duration(&v).map_err(serde::de::Error::custom)
}

/// serde helper for an optional duration.
pub fn opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<std::time::Duration>, D::Error> {
    let v = Value::deserialize(d)?;
    if v.is_null() {
        return Ok(None);
    }
    parse_duration(&v)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

use serde::Deserialize;

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct T {
        a: u32,
        b: Option<Inner>,
    }
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        c: u32,
    }

    #[test]
    fn decode_reports_paths() {
        let e = decode::<T>(&serde_json::json!({"a": 1, "b": {"c": "x"}})).unwrap_err();
        assert_eq!(
            e[0].path,
            vec![PathSeg::Key("b".into()), PathSeg::Key("c".into())]
        );
        let e = decode::<T>(&serde_json::json!({"a": 1, "zz": 2})).unwrap_err();
        assert_eq!(e[0].path, vec![PathSeg::Key("zz".into())]);
        assert!(e[0].message.starts_with("unknown key"), "{}", e[0].message);
    }

    #[test]
    fn durations() {
        use std::time::Duration;
        assert_eq!(
            parse_duration(&"250ms".into()).unwrap(),
            Duration::from_millis(250)
        );
        assert_eq!(
            parse_duration(&"1.5s".into()).unwrap(),
            Duration::from_millis(1500)
        );
        assert_eq!(
            parse_duration(&serde_json::json!(2)).unwrap(),
            Duration::from_secs(2)
        );
        assert!(parse_duration(&"5 parsecs".into()).is_err());
        assert!(parse_duration(&"-1s".into()).is_err());
    }

    #[test]
    fn dotted_path_is_the_inverse_of_at() {
        let p = ConfigProblem::at("descriptors.1.token_bucket", "x");
        assert_eq!(p.path[1], PathSeg::Index(1));
        assert_eq!(p.dotted_path(), "descriptors.1.token_bucket");
    }

    #[test]
    fn unknown_filter_is_named() {
        let e = parse("nope", &serde_json::json!({})).unwrap_err();
        assert!(e[0].message.contains("unknown HTTP filter \"nope\""));
        assert!(find("envoy.filters.http.cors").is_some());
    }
}
