//! The `decompressor` config: the file's shape ([`Spec`], Envoy's key names, the library's options
//! written beside its `name` instead of in a `typed_config`) and its validation into the
//! immutable [`Config`] every worker's filters read. Every problem is collected with its path;
//! nothing here runs per request.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    registry::{ConfigProblem, PathSeg},
    stats::StatSet,
};

/// Envoy's default output chunk size (bytes a decoder writes between two bomb checks).
pub(crate) const DEFAULT_CHUNK_SIZE: u32 = 4096;
/// Envoy's default `max_inflate_ratio`.
pub(crate) const DEFAULT_MAX_INFLATE_RATIO: u32 = 100;
/// Envoy's default gzip `window_bits` (a 32 KiB window: any gzip stream decodes).
pub(crate) const DEFAULT_WINDOW_BITS: u32 = 15;

/// The counters of one direction, in this order, under `decompressor.<library>.<direction>.`:
/// Envoy's four, then `decompression_error` (corrupt, truncated, or over `max_inflate_ratio`;
/// Envoy counts those per library as `decompressor_library.zlib_data_error`, `brotli_error`...).
pub(crate) const STAT_NAMES: &[&str] = &[
    "decompressed",
    "not_decompressed",
    "total_compressed_bytes",
    "total_uncompressed_bytes",
    "decompression_error",
];
pub(crate) const DECOMPRESSED: usize = 0;
pub(crate) const NOT_DECOMPRESSED: usize = 1;
pub(crate) const TOTAL_COMPRESSED_BYTES: usize = 2;
pub(crate) const TOTAL_UNCOMPRESSED_BYTES: usize = 3;
pub(crate) const DECOMPRESSION_ERROR: usize = 4;

/// The filter's map in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// The library (`{name: gzip, window_bits: 15}`). Required.
    #[serde(default)]
    pub decompressor_library: Option<Value>,
    /// Request bodies, and the `accept-encoding` advertisement.
    #[serde(default)]
    pub request_direction_config: Option<RequestDirectionSpec>,
    /// Response bodies.
    #[serde(default)]
    pub response_direction_config: Option<ResponseDirectionSpec>,
}

/// Envoy's `RequestDirectionConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RequestDirectionSpec {
    /// Whether request bodies are decompressed.
    #[serde(default)]
    pub common_config: Option<CommonSpec>,
    /// When responses are decompressed, add this library's coding to the request's
    /// `accept-encoding` (the upstream learns this hop decodes it). Default true.
    #[serde(default)]
    pub advertise_accept_encoding: Option<bool>,
}

/// Envoy's `ResponseDirectionConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseDirectionSpec {
    /// Whether response bodies are decompressed.
    #[serde(default)]
    pub common_config: Option<CommonSpec>,
}

/// Envoy's `CommonDirectionConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonSpec {
    /// `true`/`false`, or Envoy's `RuntimeFeatureFlag` `{default_value: bool, runtime_key: ..}`
    /// (ringway has no runtime layer: `runtime_key` is accepted and ignored). Default true.
    #[serde(default)]
    pub enabled: Option<Value>,
    /// Decompress even when `cache-control` says `no-transform`. Default false.
    #[serde(default)]
    pub ignore_no_transform_header: bool,
}

/// Envoy's `RuntimeFeatureFlag`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FeatureFlagSpec {
    /// The flag's value. Required (as in Envoy).
    default_value: Option<bool>,
    /// Envoy's runtime override key: accepted (Envoy requires it) and ignored.
    #[serde(default)]
    #[allow(dead_code)]
    runtime_key: Option<String>,
}

/// The library as written: `name` picks it, the other keys are its options (Envoy's key names
/// from the library's `typed_config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LibrarySpec {
    /// `gzip`, `brotli` or `zstd` (or Envoy's `envoy.compression.<name>.decompressor`).
    pub name: String,
    /// gzip: 9..15 (default 15), Envoy's window size (zlib-rs keeps 32 KiB whatever it says).
    #[serde(default)]
    pub window_bits: Option<u32>,
    /// 4096..65536 (default 4096): bytes a decoder writes between two `max_inflate_ratio`
    /// checks (the output of a piece grows by this much at a time).
    #[serde(default)]
    pub chunk_size: Option<u32>,
    /// At least 1 (default 100): a body whose decoded bytes exceed this many times its encoded
    /// bytes so far is refused (a decompression bomb). Envoy: gzip's option; brotli and zstd
    /// use 100 there, configurable here.
    #[serde(default)]
    pub max_inflate_ratio: Option<u32>,
    /// brotli: Envoy's memory knob; accepted and ignored (the ring buffer grows as needed).
    #[serde(default)]
    pub disable_ring_buffer_reallocation: Option<bool>,
    /// zstd: Envoy's dictionaries; not supported (refused).
    #[serde(default)]
    pub dictionaries: Option<Value>,
}

/// The content-codings ringway decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Gzip,
    Brotli,
    Zstd,
}

/// A validated library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Library {
    pub kind: Kind,
    /// gzip only (9..15).
    pub window_bits: u8,
    pub chunk_size: usize,
    pub max_inflate_ratio: u64,
}

impl Library {
    /// The config's name for it (and the stats' middle part).
    pub fn name(&self) -> &'static str {
        match self.kind {
            Kind::Gzip => "gzip",
            Kind::Brotli => "brotli",
            Kind::Zstd => "zstd",
        }
    }

    /// Its `content-encoding` token (what `accept-encoding` advertises).
    pub fn coding(&self) -> &'static str {
        match self.kind {
            Kind::Gzip => "gzip",
            Kind::Brotli => "br",
            Kind::Zstd => "zstd",
        }
    }

    /// Whether a `content-encoding` token names this library's coding (`x-gzip` is gzip).
    pub fn decodes(&self, token: &[u8]) -> bool {
        token.eq_ignore_ascii_case(self.coding().as_bytes())
            || (self.kind == Kind::Gzip && token.eq_ignore_ascii_case(b"x-gzip"))
    }
}

/// One direction's switches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Direction {
    pub enabled: bool,
    pub ignore_no_transform_header: bool,
}

/// The validated config.
#[derive(Debug)]
pub(crate) struct Config {
    pub library: Library,
    pub request: Direction,
    pub response: Direction,
    /// Add the coding to requests' `accept-encoding` (only when responses are decompressed).
    pub advertise_accept_encoding: bool,
    /// `decompressor.<library>.{request,response}.<stat>`: [`STAT_NAMES`] for the request, then
    /// for the response.
    pub stats: StatSet,
}

/// Check a decoded spec's meaning.
pub(crate) fn validate(spec: Spec) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    let library = match spec.decompressor_library {
        None | Some(Value::Null) => {
            problems.push(ConfigProblem::at(
                "decompressor_library",
                "required: a library such as {name: gzip}",
            ));
            None
        }
        Some(v) => library(&v, &mut problems),
    };
    let rq = spec.request_direction_config.unwrap_or_default();
    let request = direction(
        "request_direction_config.common_config",
        rq.common_config,
        &mut problems,
    );
    let rs = spec.response_direction_config.unwrap_or_default();
    let response = direction(
        "response_direction_config.common_config",
        rs.common_config,
        &mut problems,
    );
    let Some(library) = library.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    let lib_name = library.name();
    let names: Vec<String> = ["request", "response"]
        .iter()
        .flat_map(|dir| {
            STAT_NAMES
                .iter()
                .map(move |s| format!("decompressor.{lib_name}.{dir}.{s}"))
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(Config {
        library,
        request,
        response,
        advertise_accept_encoding: rq.advertise_accept_encoding.unwrap_or(true),
        stats: StatSet::new("", &names),
    })
}

/// A direction's `common_config` (absent: enabled, `no-transform` honoured).
fn direction(path: &str, spec: Option<CommonSpec>, problems: &mut Vec<ConfigProblem>) -> Direction {
    let spec = spec.unwrap_or_default();
    let enabled = match spec.enabled {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => b,
        Some(v @ Value::Object(_)) => {
            let path = format!("{path}.enabled");
            match crate::registry::decode::<FeatureFlagSpec>(&v) {
                Ok(FeatureFlagSpec {
                    default_value: Some(b),
                    ..
                }) => b,
                Ok(_) => {
                    problems.push(ConfigProblem::at(
                        &format!("{path}.default_value"),
                        "required: true or false",
                    ));
                    true
                }
                Err(errs) => {
                    problems.extend(errs.into_iter().map(|e| prefixed(&path, e)));
                    true
                }
            }
        }
        Some(other) => {
            problems.push(ConfigProblem::at(
                &format!("{path}.enabled"),
                format!("{other} is not true, false or {{default_value: true|false}}"),
            ));
            true
        }
    };
    Direction {
        enabled,
        ignore_no_transform_header: spec.ignore_no_transform_header,
    }
}

/// `e` with its path put under `path`.
fn prefixed(path: &str, e: ConfigProblem) -> ConfigProblem {
    let mut p: Vec<PathSeg> = ConfigProblem::at(path, "").path;
    p.extend(e.path);
    ConfigProblem {
        path: p,
        message: e.message,
    }
}

/// `decompressor_library`, checked against what its `name` supports.
fn library(v: &Value, problems: &mut Vec<ConfigProblem>) -> Option<Library> {
    const PATH: &str = "decompressor_library";
    let s = match crate::registry::decode::<LibrarySpec>(v) {
        Ok(s) => s,
        Err(errs) => {
            problems.extend(errs.into_iter().map(|e| prefixed(PATH, e)));
            return None;
        }
    };
    let before = problems.len();
    let kind = match s.name.as_str() {
        "gzip" | "envoy.compression.gzip.decompressor" => Kind::Gzip,
        "brotli" | "envoy.compression.brotli.decompressor" => Kind::Brotli,
        "zstd" | "envoy.compression.zstd.decompressor" => Kind::Zstd,
        other => {
            problems.push(ConfigProblem::at(
                &format!("{PATH}.name"),
                format!(
                    "unknown library {other:?} (known: gzip, brotli, zstd, or Envoy's \
                     envoy.compression.<name>.decompressor)"
                ),
            ));
            return None;
        }
    };
    let mut not_for = |key: &str, set: bool, name: &str| {
        if set {
            problems.push(ConfigProblem::at(
                &format!("{PATH}.{key}"),
                format!("not an option of {name}"),
            ));
        }
    };
    not_for(
        "window_bits",
        kind != Kind::Gzip && s.window_bits.is_some(),
        "brotli or zstd (their streams say their window)",
    );
    not_for(
        "disable_ring_buffer_reallocation",
        kind != Kind::Brotli && s.disable_ring_buffer_reallocation.is_some(),
        "gzip or zstd",
    );
    if s.dictionaries.is_some() {
        problems.push(ConfigProblem::at(
            &format!("{PATH}.dictionaries"),
            if kind == Kind::Zstd {
                "zstd dictionaries are not supported"
            } else {
                "not an option of gzip or brotli"
            },
        ));
    }
    let window_bits = s.window_bits.unwrap_or(DEFAULT_WINDOW_BITS);
    if !(9..=15).contains(&window_bits) {
        problems.push(ConfigProblem::at(
            &format!("{PATH}.window_bits"),
            format!("{window_bits} is outside 9..15"),
        ));
    }
    let chunk_size = s.chunk_size.unwrap_or(DEFAULT_CHUNK_SIZE);
    if !(4096..=65536).contains(&chunk_size) {
        problems.push(ConfigProblem::at(
            &format!("{PATH}.chunk_size"),
            format!("{chunk_size} is outside 4096..65536"),
        ));
    }
    let ratio = s.max_inflate_ratio.unwrap_or(DEFAULT_MAX_INFLATE_RATIO);
    if ratio == 0 {
        problems.push(ConfigProblem::at(
            &format!("{PATH}.max_inflate_ratio"),
            "must be at least 1",
        ));
    }
    (problems.len() == before).then_some(Library {
        kind,
        window_bits: window_bits as u8,
        chunk_size: chunk_size as usize,
        max_inflate_ratio: u64::from(ratio),
    })
}
