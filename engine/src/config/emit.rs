//! A config document written out as YAML (`ringway convert`): block maps and lists, scalars
//! plain where YAML reads them back as the same string, JSON-quoted (valid YAML) otherwise.
//! Keys keep the document's order.

use serde_json::Value;

/// `v` as a YAML document.
pub fn to_yaml(v: &Value) -> String {
    let mut out = String::new();
    match v {
        Value::Object(m) if !m.is_empty() => block(v, 0, &mut out),
        Value::Array(a) if !a.is_empty() => block(v, 0, &mut out),
        _ => {
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
    out
}

fn indent(n: usize, out: &mut String) {
    out.extend(std::iter::repeat_n(' ', n));
}

/// A non-empty map or list, each entry on its own line at `depth` spaces.
fn block(v: &Value, depth: usize, out: &mut String) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                indent(depth, out);
                out.push_str(&key(k));
                out.push(':');
                value_after(x, depth + 2, out);
            }
        }
        Value::Array(a) => {
            for x in a {
                indent(depth, out);
                out.push('-');
                match x {
                    // A map's first key on the dash's line, the rest under it.
                    Value::Object(m) if !m.is_empty() => {
                        let mut first = true;
                        for (k, y) in m {
                            if first {
                                out.push(' ');
                                first = false;
                            } else {
                                indent(depth + 2, out);
                            }
                            out.push_str(&key(k));
                            out.push(':');
                            value_after(y, depth + 4, out);
                        }
                    }
                    _ => value_after(x, depth + 2, out),
                }
            }
        }
        _ => {}
    }
}

/// What follows `key:` or `-`: a scalar on the same line, or a block on the next.
fn value_after(v: &Value, depth: usize, out: &mut String) {
    match v {
        Value::Object(m) if !m.is_empty() => {
            out.push('\n');
            block(v, depth, out);
        }
        Value::Array(a) if !a.is_empty() => {
            out.push('\n');
            block(v, depth, out);
        }
        _ => {
            out.push(' ');
            out.push_str(&scalar(v));
            out.push('\n');
        }
    }
}

fn key(k: &str) -> String {
    if plain(k) {
        k.to_owned()
    } else {
        Value::String(k.to_owned()).to_string()
    }
}

fn scalar(v: &Value) -> String {
    match v {
        Value::Object(_) => "{}".to_owned(),
        Value::Array(_) => "[]".to_owned(),
        Value::String(s) if plain(s) => s.clone(),
        _ => v.to_string(),
    }
}

/// Whether `s` can be written unquoted and read back as the same string (not a number, a
/// boolean or null, no YAML indicator characters).
fn plain(s: &str) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let reserved = [
        "true", "false", "null", "yes", "no", "on", "off", "~", "True", "False", "Null", "TRUE",
        "FALSE", "NULL", "Yes", "No", "YES", "NO", "On", "Off", "ON", "OFF", "y", "n", "Y", "N",
    ];
    if reserved.contains(&s)
        || s.parse::<f64>().is_ok()
        || s.starts_with("0x")
        || s.starts_with("0o")
    {
        return false;
    }
    if "-?:,[]{}#&*!|>'\"%@` ".contains(first) || s.ends_with(' ') || s.ends_with(':') {
        return false;
    }
    !s.contains(": ") && !s.contains(" #") && s.chars().all(|c| !c.is_control() && c != '\t')
}

#[cfg(test)]
mod tests {
    use super::to_yaml;
    use serde_json::json;

    #[test]
    fn yaml_out_reads_back_as_the_same_document() {
        let doc = json!({
            "listeners": [{"name": "a", "address": "127.0.0.1:80", "filter_chains": [{"filters": [
                {"tcp_proxy": {"cluster": "c", "idle_timeout": "1s"}}]}]}],
            "clusters": [{"name": "c", "endpoints": ["127.0.0.1:81", {"address": "[::1]:80", "weight": 2}]}],
            "odd": ["true", "1.5", "", " x", "a: b", "#c", "%REQ(:PATH)%", "-", [], {}, null, 3, false,
                    "line\nbreak", "x #y", "ok/path", "*.example.com"],
        });
        let text = to_yaml(&doc);
        let (back, _) = crate::config::yaml::parse(&text).expect(&text);
        assert_eq!(back, doc, "{text}");
    }
}
