//! Validation of a connection manager's `access_log` list: a path (`stdout` or a file), at most
//! one of `format` and `json_format`, and formats whose every `%COMMAND%` is known (errors point
//! at the format, or at the `json_format` key whose value is wrong).

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use super::Problems;
use crate::{
    config::{
        decode::Item,
        model::{AccessLog, AccessLogPath, Listener, NetworkFilter},
        path::DocPath,
        schema::AccessLogSpec,
    },
    logfmt::Format,
};

pub(super) fn access_logs(
    list: &[Item<AccessLogSpec>],
    path: &DocPath,
    problems: &mut Problems,
) -> Vec<AccessLog> {
    let mut out = Vec::new();
    for (at, item) in super::enumerate(list, path, problems) {
        let Some(spec) = &item.value else { continue };
        let dest = match spec.path.as_str() {
            "" => {
                problems.value(
                    &at.key("path"),
                    "access log path must not be empty (a file, or `stdout`)",
                );
                continue;
            }
            "stdout" | "/dev/stdout" => AccessLogPath::Stdout,
            p => AccessLogPath::File(PathBuf::from(p)),
        };
        let format = match (&spec.format, &spec.json_format) {
            (Some(_), Some(_)) => {
                problems.value(
                    &at.key("json_format"),
                    "give either `format` or `json_format`, not both",
                );
                continue;
            }
            (Some(f), None) => match Format::text(f) {
                Ok(f) => f,
                Err(e) => {
                    problems.value(&at.key("format"), e);
                    continue;
                }
            },
            (None, Some(j)) => {
                if j.is_empty() {
                    problems.value(&at.key("json_format"), "json_format needs at least one key");
                    continue;
                }
                match Format::json(j.iter().map(|(k, v)| (k.as_str(), v.as_str()))) {
                    Ok(f) => f,
                    Err(errors) => {
                        for (key, e) in errors {
                            problems.value(&at.key("json_format").key(&key), e);
                        }
                        continue;
                    }
                }
            }
            (None, None) => Format::envoy_default(),
        };
        out.push(AccessLog {
            path: dest,
            file: 0,
            format: Arc::new(format),
        });
    }
    out
}

fn logs(n: &mut NetworkFilter) -> &mut [AccessLog] {
    match n {
        NetworkFilter::Http(h) => &mut h.access_log,
        NetworkFilter::TcpProxy(t) => &mut t.access_log,
    }
}

/// Number the distinct destinations across all listeners (`AccessLog::file`).
pub(super) fn number_destinations(listeners: &mut [Listener]) {
    let mut seen: HashMap<AccessLogPath, usize> = HashMap::new();
    let mut number = |logs: &mut [AccessLog]| {
        for a in logs {
            let n = seen.len();
            a.file = *seen.entry(a.path.clone()).or_insert(n);
        }
    };
    for l in listeners {
        // `network` is a copy of the first chain's (or the default's): numbered the same.
        number(logs(&mut l.network));
        if let Some(sel) = &mut l.select {
            for c in &mut sel.chains {
                number(logs(&mut c.network));
            }
            if let Some(d) = &mut sel.default {
                number(logs(d));
            }
            number(&mut sel.access_log);
        }
    }
}
