//! The config in force as `/config_dump` shows it: the document as written, with every default
//! `validate()` applied written in where its key was left out.
//!
//! `validate()` records each default where it applies it ([`Problems::or`](super::error::Problems::or)
//! with the key's [`DocPath`]), so what is filled in here is the value the workers run with, not
//! a second copy of the defaults that could drift from the first. [`fill`] then writes those
//! values into a copy of the document, creating the maps a default lives in when the file left
//! out the whole section (`http2_protocol_options: {...}`). The filters' own configs (under
//! `http_filters`) are shown as written.

use std::time::Duration;

use serde_json::{Map, Value};

use super::path::{DocPath, Seg};

/// A default's value as the config file would write it.
pub(crate) trait Shown {
    fn shown(&self) -> Value;
}

impl Shown for Duration {
    /// `5s`, `250ms`, `1h`, `1.5s`: the largest unit that writes it exactly.
    fn shown(&self) -> Value {
        Value::String(duration(*self))
    }
}

macro_rules! shown_as_json {
    ($($t:ty),*) => {$(
        impl Shown for $t {
            fn shown(&self) -> Value {
                Value::from(*self)
            }
        }
    )*};
}
shown_as_json!(bool, u16, u32, u64, usize, f64);

impl Shown for Value {
    fn shown(&self) -> Value {
        self.clone()
    }
}

impl Shown for &str {
    fn shown(&self) -> Value {
        Value::String((*self).to_owned())
    }
}

impl Shown for String {
    fn shown(&self) -> Value {
        Value::String(self.clone())
    }
}

/// A duration the way the config file writes one (`config::duration` parses it back).
pub(crate) fn duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    const MS: u128 = 1_000_000;
    const S: u128 = 1_000 * MS;
    if nanos == 0 {
        return "0s".to_owned();
    }
    for (unit, name) in [(3_600 * S, "h"), (60 * S, "m"), (S, "s"), (MS, "ms")] {
        if nanos.is_multiple_of(unit) {
            return format!("{}{name}", nanos / unit);
        }
    }
    let frac = format!("{:09}", nanos % S);
    format!("{}.{}s", nanos / S, frac.trim_end_matches('0'))
}

/// `document` with each `(path, value)` written in where the path is missing (or `null`).
/// Maps on the way are created when absent; a path through a list element that is not there,
/// or through a value that is not a map (`workers: auto`), is skipped.
pub(crate) fn fill(document: &Value, filled: &[(DocPath, Value)]) -> Value {
    let mut doc = document.clone();
    for (path, value) in filled {
        put(&mut doc, path.segs(), value);
    }
    doc
}

fn put(node: &mut Value, segs: &[Seg], value: &Value) {
    let Some((first, rest)) = segs.split_first() else {
        return;
    };
    match first {
        Seg::Index(i) => {
            if let Some(child) = node.as_array_mut().and_then(|a| a.get_mut(*i)) {
                put(child, rest, value);
            }
        }
        Seg::Key(k) => {
            let Some(map) = node.as_object_mut() else {
                return;
            };
            if rest.is_empty() {
                let slot = map.entry(k.clone()).or_insert(Value::Null);
                if slot.is_null() {
                    *slot = value.clone();
                }
                return;
            }
            let absent = map.get(k).is_none_or(Value::is_null);
            if absent {
                if matches!(rest.first(), Some(Seg::Index(_))) {
                    return;
                }
                map.insert(k.clone(), Value::Object(Map::new()));
            }
            if let Some(child) = map.get_mut(k) {
                put(child, rest, value);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_are_written_as_the_file_would() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(5), "5s"),
            (Duration::from_secs(60), "1m"),
            (Duration::from_secs(3600), "1h"),
            (Duration::from_secs(90), "90s"),
            (Duration::from_millis(250), "250ms"),
            (Duration::from_millis(1500), "1500ms"),
            (Duration::from_micros(1500), "0.0015s"),
        ];
        for (d, text) in cases {
            assert_eq!(duration(d), text);
            assert_eq!(super::super::duration::parse_duration(text), Ok(d));
        }
    }

    #[test]
    fn defaults_fill_missing_keys_only_and_create_their_maps() {
        let doc = serde_json::json!({
            "workers": "auto",
            "listeners": [{"name": "a", "backlog": 10}],
            "x": null,
        });
        let root = DocPath::root();
        let l0 = root.key("listeners").index(0);
        let filled = vec![
            (l0.key("backlog"), Value::from(1024)),
            (l0.key("h2").key("streams"), Value::from(100)),
            (
                root.key("listeners").index(3).key("backlog"),
                Value::from(1),
            ),
            (root.key("workers").key("n"), Value::from(1)),
            (root.key("x"), Value::from(true)),
            (root.key("clusters").index(0).key("a"), Value::from(1)),
        ];
        let out = fill(&doc, &filled);
        assert_eq!(
            out,
            serde_json::json!({
                "workers": "auto",
                "listeners": [{"name": "a", "backlog": 10, "h2": {"streams": 100}}],
                "x": true,
            })
        );
    }
}
