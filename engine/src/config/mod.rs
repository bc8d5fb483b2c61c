//! Configuration: from a YAML or JSON file to the validated, immutable [`Config`] that the
//! control thread snapshots and every worker builds its local views from.
//!
//! Loading is "config in two steps", and reports every problem at once, each with its path in
//! the document and its line in the file:
//!
//! ```text
//! text ─▶ yaml / json ─▶ (serde_json::Value tree, Lines: path -> line)
//!      ─▶ decode   ─▶ schema::ConfigSpec   (serde, deny_unknown_fields; keeps going after errors)
//!      ─▶ validate ─▶ model::Config        (meaning, references, defaults from `defaults`)
//! ```
//!
//! * [`yaml`] and [`json`] read the text once into a tree plus the line of every node; the
//!   rest of the pipeline never sees text again and names places by [`DocPath`](path::DocPath).
//! * [`schema`] is the file format (a `///` on every key); [`defaults`] holds every default.
//!   [`json_schema`] derives the file's JSON Schema from it (`ringway schema`).
//! * [`model`] is the runtime contract the rest of the engine is written against.
//! * Errors are [`ConfigErrors`]: one [`ConfigError`] per problem, printed one per line as
//!   `clusters[1].endpoints[0]: invalid address "127.0.0.1:99999" (line 14)`.
//!
//! No input can panic the loader: nothing here `unwrap`s on the file's content, nesting is
//! capped, alias expansion is budgeted and durations use checked integer arithmetic.
//! Not on the hot path: this runs once per load or reload, on the control thread.

pub mod compose;
pub mod cpus;
pub mod defaults;
pub mod envoy;
pub mod json_schema;
pub mod model;
pub mod schema;

mod decode;
mod dump;
mod duration;
pub mod emit;
mod error;
mod json;
mod path;
mod suggest;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

use std::path::Path;

pub use duration::parse_duration;
pub use error::{ConfigError, ConfigErrors};
pub use model::*;

use error::Problems;
pub use path::Lines;

/// Largest config file read, bytes (a typo guard: real files are a few KiB).
const MAX_FILE_BYTES: u64 = 16 * 1024 * 1024;

/// The syntax of a config text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML 1.2 (`.yaml`, `.yml`).
    Yaml,
    /// JSON (`.json`).
    Json,
}

impl Format {
    /// The format a file name's extension says, if any.
    pub fn from_path(path: &Path) -> Option<Format> {
        match path.extension()?.to_str()? {
            "yaml" | "yml" => Some(Format::Yaml),
            "json" => Some(Format::Json),
            _ => None,
        }
    }
}

/// Which language a config document is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dialect {
    /// An Envoy v3 bootstrap when it has Envoy's top-level keys (`static_resources`,
    /// `dynamic_resources`, `node`), ringway's own format otherwise.
    #[default]
    Auto,
    /// ringway's own format.
    Ringway,
    /// An Envoy v3 bootstrap, translated ([`envoy`]).
    Envoy,
}

impl std::str::FromStr for Dialect {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(Dialect::Auto),
            "ringway" => Ok(Dialect::Ringway),
            "envoy" => Ok(Dialect::Envoy),
            _ => Err(format!(
                "unknown format {s:?}: expected auto, ringway or envoy"
            )),
        }
    }
}

/// How a file is read.
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadOptions {
    pub dialect: Dialect,
    /// Envoy fields ringway does not support are left out with a warning instead of refused.
    pub allow_unsupported: bool,
}

/// Reads, parses and validates a config file; the format comes from the extension (`.yaml`,
/// `.yml` or `.json`). Every problem found is returned, not just the first.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with(path, &LoadOptions::default())
}

/// [`load`] with the dialect and the treatment of unsupported Envoy fields chosen.
pub fn load_with(path: &Path, opts: &LoadOptions) -> Result<Config, ConfigErrors> {
    let (text, format, source) = read(path)?;
    load_str_with(&text, format, &source, opts)
}

fn read(path: &Path) -> Result<(String, Format, String), ConfigErrors> {
    let source = path.display().to_string();
    let format = Format::from_path(path).ok_or_else(|| {
        ConfigErrors::whole_file(
            &source,
            "unknown config file extension: expected .yaml, .yml or .json".to_owned(),
        )
    })?;
    let too_big = std::fs::metadata(path).is_ok_and(|m| m.len() > MAX_FILE_BYTES);
    if too_big {
        return Err(ConfigErrors::whole_file(
            &source,
            format!("config file is larger than {MAX_FILE_BYTES} bytes"),
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors::whole_file(&source, format!("cannot read config file {source}: {e}"))
    })?;
    Ok((text, format, source))
}

/// Parses and validates config text; `source` names it in messages (usually the file path).
pub fn load_str(text: &str, format: Format, source: &str) -> Result<Config, ConfigErrors> {
    load_str_with(text, format, source, &LoadOptions::default())
}

/// [`load_str`] with [`LoadOptions`].
pub fn load_str_with(
    text: &str,
    format: Format,
    source: &str,
    opts: &LoadOptions,
) -> Result<Config, ConfigErrors> {
    let translated = translate_str(text, format, source, opts)?;
    for w in &translated.warnings.errors {
        tracing::warn!("{source}: {w} (left out: --allow-unsupported)");
    }
    load_document(translated.document, source, &translated.lines).map_err(|mut e| {
        if translated.from_envoy {
            e.errors.push(ConfigError {
                path: String::new(),
                message: "(the paths above are in the config translated from Envoy's format: \
                          `ringway convert -c FILE` prints it)"
                    .to_owned(),
                line: None,
            });
        }
        e
    })
}

/// A config document in ringway's format, read from a file in either dialect.
#[derive(Debug)]
pub struct Translated {
    pub document: serde_json::Value,
    /// The file was an Envoy bootstrap.
    pub from_envoy: bool,
    /// Unsupported Envoy fields left out (`--allow-unsupported`).
    pub warnings: ConfigErrors,
    lines: Lines,
}

/// The file at `path` as a ringway document (an Envoy bootstrap translated): `ringway convert`.
pub fn translate(path: &Path, opts: &LoadOptions) -> Result<Translated, ConfigErrors> {
    let (text, format, source) = read(path)?;
    translate_str(&text, format, &source, opts)
}

/// Parses `text` and, when it is an Envoy bootstrap, translates it.
pub fn translate_str(
    text: &str,
    format: Format,
    source: &str,
    opts: &LoadOptions,
) -> Result<Translated, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let parsed = match format {
        Format::Yaml => yaml::parse(text),
        Format::Json => json::parse(text),
    };
    let (value, lines) = match parsed {
        Ok(parsed) => parsed,
        Err(problem) => {
            let mut problems = Problems::default();
            problems.push(problem);
            return Err(problems.into_errors(source, &Lines::default()));
        }
    };
    let envoy = match opts.dialect {
        Dialect::Auto => envoy::is_bootstrap(&value),
        Dialect::Ringway => false,
        Dialect::Envoy => true,
    };
    if !envoy {
        return Ok(Translated {
            document: value,
            from_envoy: false,
            warnings: Problems::default().into_errors(source, &lines),
            lines,
        });
    }
    let mut tr = envoy::Tr::default();
    let document = envoy::bootstrap(&value, &mut tr);
    let found = tr.problems.into_errors(source, &lines);
    let unsupported_only = found.errors.iter().all(|e| e.message == envoy::UNSUPPORTED);
    let tolerated = found.errors.is_empty() || opts.allow_unsupported && unsupported_only;
    if !tolerated {
        return Err(found);
    }
    Ok(Translated {
        document,
        from_envoy: true,
        warnings: found,
        lines: Lines::default(),
    })
}

/// Decodes and validates a document in ringway's format (a parsed file, a translated Envoy
/// bootstrap, or the file's document with the xDS resources composed in). `lines` places
/// errors in the file, where the document is the file's own.
pub fn load_document(
    value: serde_json::Value,
    source: &str,
    lines: &Lines,
) -> Result<Config, ConfigErrors> {
    load_composed(
        std::sync::Arc::new(value),
        &compose::Dynamic::default(),
        source,
        lines,
    )
}

/// The file's document with a control plane's resources composed in ([`compose`]), decoded and
/// validated; the config keeps the file's own document for the next composition.
pub fn load_composed(
    file: std::sync::Arc<serde_json::Value>,
    dynamic: &compose::Dynamic,
    source: &str,
    lines: &Lines,
) -> Result<Config, ConfigErrors> {
    let (value, warming, added) = compose::compose(&file, dynamic);
    let mut config = validated(value, source, lines)?;
    config.file_document = Some(file);
    config.warming = warming;
    config.added_via_api = added;
    Ok(config)
}

fn validated(
    value: serde_json::Value,
    source: &str,
    lines: &Lines,
) -> Result<Config, ConfigErrors> {
    let mut problems = Problems::default();
    let document = std::sync::Arc::new(value.clone());
    let spec = decode::decode::<schema::ConfigSpec>(value);
    for problem in &spec.problems {
        problems.push(problem.clone());
    }
    let config = spec
        .value
        .map(|spec| validate::validate(spec, source, &mut problems));
    match config {
        Some(mut config) if problems.is_empty() => {
            let filled = problems.take_filled();
            config.effective = Some(std::sync::Arc::new(dump::fill(&document, &filled)));
            config.document = Some(document);
            Ok(config)
        }
        _ => {
            if problems.is_empty() {
                problems.value(
                    &path::DocPath::root(),
                    "the configuration could not be read",
                );
            }
            Err(problems.into_errors(source, lines))
        }
    }
}

impl Config {
    /// One line for logs: `2 listeners, 3 clusters (5 endpoints), 7 routes, workers auto`.
    pub fn summary(&self) -> String {
        let endpoints: usize = self.clusters.iter().map(|c| c.endpoints.len()).sum();
        let routes: usize = self
            .listeners
            .iter()
            .filter_map(|l| l.http())
            .flat_map(|h| &h.virtual_hosts)
            .map(|vh| vh.routes.len())
            .sum();
        let workers = match self.workers {
            None => "auto".to_owned(),
            Some(n) => n.to_string(),
        };
        let names: Vec<String> = self
            .clusters
            .iter()
            .filter_map(|c| c.dns.as_ref().map(|d| (c, d)))
            .flat_map(|(c, d)| {
                let kind = if d.logical {
                    "logical_dns"
                } else {
                    "strict_dns"
                };
                d.hosts
                    .iter()
                    .map(move |h| format!("{}:{} ({}, {kind})", h.host, h.port, c.name))
            })
            .collect();
        let resolved = match names.len() {
            0 => String::new(),
            _ => format!("; resolved by DNS at run time: {}", names.join(", ")),
        };
        format!(
            "{}, {} ({}), {}, workers {workers}{resolved}",
            count(self.listeners.len(), "listener"),
            count(self.clusters.len(), "cluster"),
            count(endpoints, "endpoint"),
            count(routes, "route"),
        )
    }
}

fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        _ => format!("{n} {noun}s"),
    }
}
