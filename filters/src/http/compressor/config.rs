//! The `compressor` config: the file's shape ([`Spec`], Envoy's key names with each library's
//! options written beside its `name` instead of in a `typed_config`) and its validation into
//! the immutable [`Config`] every worker's filters read. Every problem is collected with its
//! path; nothing here runs per request.

use serde::Deserialize;
use serde_json::Value;

use crate::{
    registry::{ConfigProblem, PathSeg},
    stats::StatSet,
};

/// Envoy's default `min_content_length`.
pub(crate) const DEFAULT_MIN_CONTENT_LENGTH: u64 = 30;

/// Envoy's default `content_type` list (the filter compresses these when the config names none).
pub(crate) const DEFAULT_CONTENT_TYPES: &[&str] = &[
    "text/html",
    "text/plain",
    "text/css",
    "application/javascript",
    "application/x-javascript",
    "text/javascript",
    "text/x-javascript",
    "text/ecmascript",
    "text/js",
    "text/jscript",
    "text/x-js",
    "application/ecmascript",
    "application/x-json",
    "application/xml",
    "application/json",
    "image/svg+xml",
    "text/xml",
    "application/xhtml+xml",
    "application/grpc-web",
    "application/grpc-web+proto",
];

/// The per-library counters (Envoy's names), in this order, under `compressor.<library>.`.
pub(crate) const STAT_NAMES: &[&str] = &[
    "compressed",
    "not_compressed",
    "total_uncompressed_bytes",
    "total_compressed_bytes",
    "content_length_too_small",
    "not_compressed_etag",
];
pub(crate) const COMPRESSED: usize = 0;
pub(crate) const NOT_COMPRESSED: usize = 1;
pub(crate) const TOTAL_UNCOMPRESSED_BYTES: usize = 2;
pub(crate) const TOTAL_COMPRESSED_BYTES: usize = 3;
pub(crate) const CONTENT_LENGTH_TOO_SMALL: usize = 4;
pub(crate) const NOT_COMPRESSED_ETAG: usize = 5;

/// The filter's map in the config file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Spec {
    /// The library (`{name: gzip, compression_level: 6}`), or a list of them that the filter
    /// negotiates between by the request's `accept-encoding` (config order breaks ties).
    /// Required.
    #[serde(default)]
    pub compressor_library: Option<Value>,
    /// When and how responses are compressed.
    #[serde(default)]
    pub response_direction_config: Option<ResponseDirectionSpec>,
    /// Envoy's request compression: not supported (rejected with a clear message).
    #[serde(default)]
    pub request_direction_config: Option<Value>,
}

/// Envoy's `ResponseDirectionConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ResponseDirectionSpec {
    /// Size and content-type conditions.
    #[serde(default)]
    pub common_config: Option<CommonSpec>,
    /// Leave responses that carry an `etag` uncompressed. Default false (a strong etag of a
    /// compressed response is made weak instead).
    #[serde(default)]
    pub disable_on_etag_header: bool,
    /// Remove `accept-encoding` from the request before it goes upstream (so the upstream
    /// always answers uncompressed and this filter does the compressing). Default false.
    #[serde(default)]
    pub remove_accept_encoding_header: bool,
}

/// Envoy's `CommonDirectionConfig`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct CommonSpec {
    /// Responses whose known length is below this are sent as they are. Default 30 (Envoy's).
    #[serde(default)]
    pub min_content_length: Option<u64>,
    /// Media types (without parameters; compared case-insensitively) that are compressed.
    /// Absent or empty: Envoy's default list ([`DEFAULT_CONTENT_TYPES`]).
    #[serde(default)]
    pub content_type: Vec<String>,
}

/// One library as written: `name` picks it, the other keys are that library's options (Envoy's
/// key names from the library's `typed_config`).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LibrarySpec {
    /// `gzip`, `brotli` or `zstd`.
    pub name: String,
    /// gzip: 1..9 or Envoy's names (`DEFAULT_COMPRESSION` = 6, the default; `BEST_SPEED`,
    /// `BEST_COMPRESSION`, `COMPRESSION_LEVEL_1`..`_9`). zstd: 1..19 (default 3).
    #[serde(default)]
    pub compression_level: Option<Value>,
    /// gzip: 9..15 (default 12, Envoy's: a 4 KiB window). brotli: 10..24 (default 18).
    #[serde(default)]
    pub window_bits: Option<u32>,
    /// brotli: 0..11 (default 3, Envoy's).
    #[serde(default)]
    pub quality: Option<u32>,
    /// brotli: 16..24 (default: the encoder's choice for the quality).
    #[serde(default)]
    pub input_block_bits: Option<u32>,
    /// brotli: `DEFAULT` (= `GENERIC`), `GENERIC`, `TEXT` or `FONT`.
    #[serde(default)]
    pub encoder_mode: Option<String>,
    /// brotli: trade compression for decoding speed. Default false.
    #[serde(default)]
    pub disable_literal_context_modeling: Option<bool>,
    /// zstd: write a checksum at the end of the frame. Default false.
    #[serde(default)]
    pub enable_checksum: Option<bool>,
}

/// Brotli's encoder modes (values are brotli's `BROTLI_PARAM_MODE` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BrotliMode {
    Generic = 0,
    Text = 1,
    Font = 2,
}

/// A validated library.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Library {
    Gzip {
        level: u32,
        window_bits: u8,
    },
    Brotli {
        quality: u32,
        window_bits: u32,
        input_block_bits: Option<u32>,
        mode: BrotliMode,
        disable_literal_context_modeling: bool,
    },
    Zstd {
        level: i32,
        checksum: bool,
    },
}

impl Library {
    /// The config's name for it (and the stats' middle part).
    pub fn name(&self) -> &'static str {
        match self {
            Library::Gzip { .. } => "gzip",
            Library::Brotli { .. } => "brotli",
            Library::Zstd { .. } => "zstd",
        }
    }

    /// Its `content-encoding` token.
    pub fn coding(&self) -> &'static str {
        match self {
            Library::Gzip { .. } => "gzip",
            Library::Brotli { .. } => "br",
            Library::Zstd { .. } => "zstd",
        }
    }

    /// Whether `token` (from `accept-encoding`) names this library's coding.
    pub fn accepts(&self, token: &[u8]) -> bool {
        token.eq_ignore_ascii_case(self.coding().as_bytes())
            || (matches!(self, Library::Gzip { .. }) && token.eq_ignore_ascii_case(b"x-gzip"))
    }
}

/// At most this many libraries (one of each).
pub(crate) const MAX_LIBRARIES: usize = 3;

/// The validated config.
#[derive(Debug)]
pub(crate) struct Config {
    /// In config order (ties in `accept-encoding` go to the first).
    pub libraries: Vec<Library>,
    pub min_content_length: u64,
    /// Lower-case media types.
    pub content_types: Vec<Box<str>>,
    pub disable_on_etag_header: bool,
    pub remove_accept_encoding_header: bool,
    /// `compressor.<library>.<stat>` for each library, [`STAT_NAMES`] per library.
    pub stats: StatSet,
}

impl Config {
    /// Whether a media type (parameters already cut off) is in the list.
    pub fn content_type_allowed(&self, media_type: &[u8]) -> bool {
        self.content_types
            .iter()
            .any(|t| t.as_bytes().eq_ignore_ascii_case(media_type))
    }
}

/// Check a decoded spec's meaning.
pub(crate) fn validate(spec: Spec) -> Result<Config, Vec<ConfigProblem>> {
    let mut problems = Vec::new();
    if spec.request_direction_config.is_some() {
        problems.push(ConfigProblem::at(
            "request_direction_config",
            "request compression is not supported (only responses are compressed)",
        ));
    }
    let libraries = match spec.compressor_library {
        None | Some(Value::Null) => {
            problems.push(ConfigProblem::at(
                "compressor_library",
                "required: a library such as {name: gzip}, or a list of them",
            ));
            Vec::new()
        }
        Some(v) => libraries(&v, &mut problems),
    };

    let rd = spec.response_direction_config.unwrap_or_default();
    let common = rd.common_config.unwrap_or_default();
    let mut content_types = Vec::new();
    for (i, t) in common.content_type.iter().enumerate() {
        let t = t.trim();
        let path = format!("response_direction_config.common_config.content_type.{i}");
        if t.is_empty() || t.contains(';') || !t.contains('/') || t.contains(char::is_whitespace) {
            problems.push(ConfigProblem::at(
                &path,
                format!("{t:?} is not a media type without parameters (e.g. text/html)"),
            ));
            continue;
        }
        content_types.push(t.to_ascii_lowercase().into_boxed_str());
    }
    if content_types.is_empty() && common.content_type.is_empty() {
        content_types = DEFAULT_CONTENT_TYPES.iter().map(|t| (*t).into()).collect();
    }

    if !problems.is_empty() {
        return Err(problems);
    }
    let names: Vec<String> = libraries
        .iter()
        .flat_map(|l| {
            STAT_NAMES
                .iter()
                .map(move |s| format!("compressor.{}.{s}", l.name()))
        })
        .collect();
    let names: Vec<&str> = names.iter().map(String::as_str).collect();
    Ok(Config {
        libraries,
        min_content_length: common
            .min_content_length
            .unwrap_or(DEFAULT_MIN_CONTENT_LENGTH),
        content_types,
        disable_on_etag_header: rd.disable_on_etag_header,
        remove_accept_encoding_header: rd.remove_accept_encoding_header,
        stats: StatSet::new("", &names),
    })
}

/// `compressor_library`: one map or a list of maps.
fn libraries(v: &Value, problems: &mut Vec<ConfigProblem>) -> Vec<Library> {
    let items: Vec<(String, &Value)> = match v {
        Value::Array(list) => {
            if list.is_empty() {
                problems.push(ConfigProblem::at(
                    "compressor_library",
                    "the list names no library",
                ));
            }
            list.iter()
                .enumerate()
                .map(|(i, v)| (format!("compressor_library.{i}"), v))
                .collect()
        }
        other => vec![("compressor_library".to_string(), other)],
    };
    let mut out: Vec<Library> = Vec::new();
    for (path, item) in items {
        let spec = match crate::registry::decode::<LibrarySpec>(item) {
            Ok(s) => s,
            Err(errs) => {
                problems.extend(errs.into_iter().map(|e| prefixed(&path, e)));
                continue;
            }
        };
        if let Some(lib) = library(&path, spec, problems) {
            if out.iter().any(|l| l.name() == lib.name()) {
                problems.push(ConfigProblem::at(
                    &format!("{path}.name"),
                    format!("{} is listed twice", lib.name()),
                ));
            } else {
                out.push(lib);
            }
        }
    }
    out
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

/// One library's options, checked against what its `name` supports.
fn library(path: &str, s: LibrarySpec, problems: &mut Vec<ConfigProblem>) -> Option<Library> {
    let before = problems.len();
    let mut not_for = |key: &str, set: bool, name: &str| {
        if set {
            problems.push(ConfigProblem::at(
                &format!("{path}.{key}"),
                format!("not an option of {name}"),
            ));
        }
    };
    let lib = match s.name.as_str() {
        "gzip" => {
            not_for("quality", s.quality.is_some(), "gzip");
            not_for("input_block_bits", s.input_block_bits.is_some(), "gzip");
            not_for("encoder_mode", s.encoder_mode.is_some(), "gzip");
            not_for(
                "disable_literal_context_modeling",
                s.disable_literal_context_modeling.is_some(),
                "gzip",
            );
            not_for("enable_checksum", s.enable_checksum.is_some(), "gzip");
            let level = match &s.compression_level {
                None => 6,
                Some(v) => gzip_level(v).unwrap_or_else(|m| {
                    problems.push(ConfigProblem::at(&format!("{path}.compression_level"), m));
                    6
                }),
            };
            let window_bits = s.window_bits.unwrap_or(12);
            if !(9..=15).contains(&window_bits) {
                problems.push(ConfigProblem::at(
                    &format!("{path}.window_bits"),
                    format!("{window_bits} is outside 9..15"),
                ));
            }
            Library::Gzip {
                level,
                window_bits: window_bits.clamp(9, 15) as u8,
            }
        }
        "brotli" => {
            not_for(
                "compression_level",
                s.compression_level.is_some(),
                "brotli (it has quality)",
            );
            not_for("enable_checksum", s.enable_checksum.is_some(), "brotli");
            let quality = s.quality.unwrap_or(3);
            if quality > 11 {
                problems.push(ConfigProblem::at(
                    &format!("{path}.quality"),
                    format!("{quality} is outside 0..11"),
                ));
            }
            let window_bits = s.window_bits.unwrap_or(18);
            if !(10..=24).contains(&window_bits) {
                problems.push(ConfigProblem::at(
                    &format!("{path}.window_bits"),
                    format!("{window_bits} is outside 10..24"),
                ));
            }
            if let Some(b) = s.input_block_bits.filter(|b| !(16..=24).contains(b)) {
                problems.push(ConfigProblem::at(
                    &format!("{path}.input_block_bits"),
                    format!("{b} is outside 16..24"),
                ));
            }
            let mode = match s.encoder_mode.as_deref().map(str::to_ascii_uppercase) {
                None => BrotliMode::Generic,
                Some(m) => match m.as_str() {
                    "DEFAULT" | "GENERIC" => BrotliMode::Generic,
                    "TEXT" => BrotliMode::Text,
                    "FONT" => BrotliMode::Font,
                    _ => {
                        problems.push(ConfigProblem::at(
                            &format!("{path}.encoder_mode"),
                            format!("{m:?} is not one of DEFAULT, GENERIC, TEXT, FONT"),
                        ));
                        BrotliMode::Generic
                    }
                },
            };
            Library::Brotli {
                quality,
                window_bits,
                input_block_bits: s.input_block_bits,
                mode,
                disable_literal_context_modeling: s
                    .disable_literal_context_modeling
                    .unwrap_or(false),
            }
        }
        "zstd" => {
            not_for("window_bits", s.window_bits.is_some(), "zstd");
            not_for("quality", s.quality.is_some(), "zstd");
            not_for("input_block_bits", s.input_block_bits.is_some(), "zstd");
            not_for("encoder_mode", s.encoder_mode.is_some(), "zstd");
            not_for(
                "disable_literal_context_modeling",
                s.disable_literal_context_modeling.is_some(),
                "zstd",
            );
            let level = match &s.compression_level {
                None => 3,
                Some(v) => match v.as_u64() {
                    Some(l @ 1..=19) => l as i32,
                    _ => {
                        problems.push(ConfigProblem::at(
                            &format!("{path}.compression_level"),
                            format!(
                                "{v} is not a level 1..19 (20..22 need windows over the 8 MiB \
                                 that HTTP clients accept for zstd)"
                            ),
                        ));
                        3
                    }
                },
            };
            Library::Zstd {
                level,
                checksum: s.enable_checksum.unwrap_or(false),
            }
        }
        other => {
            problems.push(ConfigProblem::at(
                &format!("{path}.name"),
                format!("unknown library {other:?} (known: gzip, brotli, zstd)"),
            ));
            return None;
        }
    };
    (problems.len() == before).then_some(lib)
}

/// A gzip level: 1..9 or Envoy's `CompressionLevel` names (any case).
fn gzip_level(v: &Value) -> Result<u32, String> {
    if let Some(n) = v.as_u64() {
        return match n {
            1..=9 => Ok(n as u32),
            _ => Err(format!("{n} is outside 1..9")),
        };
    }
    let bad = || {
        format!(
            "{v} is not a level: 1..9, DEFAULT_COMPRESSION, BEST_SPEED, BEST_COMPRESSION or \
             COMPRESSION_LEVEL_1..COMPRESSION_LEVEL_9"
        )
    };
    let s = v.as_str().ok_or_else(bad)?.to_ascii_uppercase();
    match s.as_str() {
        "DEFAULT_COMPRESSION" => Ok(6),
        "BEST_SPEED" => Ok(1),
        "BEST_COMPRESSION" => Ok(9),
        _ => match s.strip_prefix("COMPRESSION_LEVEL_").map(str::parse::<u32>) {
            Some(Ok(n @ 1..=9)) => Ok(n),
            _ => Err(bad()),
        },
    }
}
