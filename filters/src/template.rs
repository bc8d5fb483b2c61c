//! `%VAR%` templates for header values (Envoy's "custom request/response headers"): literal text
//! with commands such as `%DOWNSTREAM_REMOTE_ADDRESS%` or `%REQ(x-tenant)%`, and `%%` for a
//! literal `%`. Parsed once at config load (an unknown command is a config error); rendered per
//! request against the engine's [`Vars`], with no allocation beyond the output.

use crate::{
    filter::Vars,
    stream::{RequestHead, ResponseHead},
};

/// `REQ(name)` of a request head: pseudo-headers `:path`, `:method`, `:authority`, `:scheme`
/// included.
pub fn request_value<'a>(r: &'a RequestHead, name: &str) -> Option<&'a [u8]> {
    match name {
        ":path" => Some(r.path()),
        ":method" => Some(r.method_str().as_bytes()),
        ":authority" | "host" => Some(r.authority()),
        ":scheme" => Some(r.scheme.as_bytes()),
        _ => r.headers.get_bytes(name),
    }
}

/// Commands a template may use (each one's meaning is in docs/configuration.md). Those marked
/// with an argument take one: `REQ(name)`.
pub const COMMANDS: &[(&str, bool)] = &[
    ("DOWNSTREAM_REMOTE_ADDRESS", false),
    ("DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", false),
    ("DOWNSTREAM_LOCAL_ADDRESS", false),
    ("START_TIME", false),
    ("PROTOCOL", false),
    ("HOSTNAME", false),
    ("REQ", true),
    ("RESP", true),
    ("RESPONSE_CODE", false),
    ("UPSTREAM_HOST", false),
    ("UPSTREAM_CLUSTER", false),
    ("ROUTE_NAME", false),
    ("VIRTUAL_HOST_NAME", false),
    ("FILTER_STATE", true),
];

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Cmd {
        name: &'static str,
        arg: Option<String>,
    },
}

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pieces: Vec<Piece>,
}

impl Template {
    /// Parse `s`. Errors name the problem (unknown command, unclosed `%`).
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut pieces = Vec::new();
        let mut text = String::new();
        let mut rest = s;
        while let Some(i) = rest.find('%') {
            text.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('%') {
                text.push('%');
                rest = r;
                continue;
            }
            let Some(end) = rest.find('%') else {
                return Err(format!(
                    "unclosed `%` in {s:?} (write `%%` for a literal `%`)"
                ));
            };
            let body = &rest[..end];
            rest = &rest[end + 1..];
            let (name, arg) = match body.find('(') {
                Some(p) if body.ends_with(')') => (&body[..p], Some(&body[p + 1..body.len() - 1])),
                Some(_) => return Err(format!("`%{body}%`: missing `)`")),
                None => (body, None),
            };
            let Some(&(known, takes_arg)) = COMMANDS.iter().find(|(n, _)| *n == name) else {
                return Err(format!(
                    "unknown command `%{name}%` (known: {})",
                    COMMANDS
                        .iter()
                        .map(|(n, _)| *n)
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            };
            // START_TIME may carry a format in Envoy; ringway prints RFC 3339 and accepts none.
            if takes_arg && arg.is_none_or(str::is_empty) {
                return Err(format!("`%{name}(...)%` needs an argument"));
            }
            if !takes_arg && arg.is_some() {
                return Err(format!("`%{name}%` takes no argument"));
            }
            if !text.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut text)));
            }
            pieces.push(Piece::Cmd {
                name: known,
                arg: arg.map(str::to_ascii_lowercase),
            });
        }
        text.push_str(rest);
        if !text.is_empty() {
            pieces.push(Piece::Text(text));
        }
        Ok(Template { pieces })
    }

    /// No command: the text is the value.
    pub fn literal(&self) -> Option<&str> {
        match self.pieces.as_slice() {
            [] => Some(""),
            [Piece::Text(t)] => Some(t),
            _ => None,
        }
    }

    /// Whether the template reads the response (`RESP`, `RESPONSE_CODE`, upstream values).
    pub fn reads_response(&self) -> bool {
        self.pieces.iter().any(|p| {
            matches!(p, Piece::Cmd { name, .. }
                if matches!(*name, "RESP" | "RESPONSE_CODE" | "UPSTREAM_HOST"))
        })
    }

    /// Append the value to `out`. A command with no value writes nothing; bytes a header value
    /// may not hold (CR, LF, NUL) are dropped.
    pub fn render(&self, vars: &dyn Vars, out: &mut Vec<u8>) {
        self.render_on(vars, None, None, out)
    }

    /// [`Template::render`], answering `REQ(name)` from `req` and `RESP(name)` from `resp` when
    /// given (a filter renders against the head it is changing: the engine's [`Vars`] cannot
    /// lend a head a hook holds mutably), and every other command from `vars`.
    pub fn render_on(
        &self,
        vars: &dyn Vars,
        req: Option<&RequestHead>,
        resp: Option<&ResponseHead>,
        out: &mut Vec<u8>,
    ) {
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.extend_from_slice(t.as_bytes()),
                Piece::Cmd { name, arg } => {
                    let start = out.len();
                    let from_head = match (*name, arg.as_deref(), req, resp) {
                        ("REQ", Some(h), Some(r), _) => Some(request_value(r, h)),
                        ("RESP", Some(h), _, Some(r)) => Some(r.headers.get_bytes(h)),
                        _ => None,
                    };
                    match from_head {
                        Some(v) => out.extend_from_slice(v.unwrap_or(b"")),
                        None => {
                            vars.write(name, arg.as_deref(), out);
                        }
                    }
                    let mut i = start;
                    while i < out.len() {
                        if matches!(out[i], b'\r' | b'\n' | 0) {
                            out.remove(i);
                        } else {
                            i += 1;
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V;
    impl Vars for V {
        fn write(&self, name: &str, arg: Option<&str>, out: &mut Vec<u8>) -> bool {
            match (name, arg) {
                ("DOWNSTREAM_REMOTE_ADDRESS", None) => out.extend_from_slice(b"1.2.3.4:5"),
                ("REQ", Some("x-a")) => out.extend_from_slice(b"v\r\nx"),
                _ => return false,
            }
            true
        }
    }

    fn render(s: &str) -> String {
        let mut out = Vec::new();
        Template::parse(s).unwrap().render(&V, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn renders_commands_and_text() {
        assert_eq!(
            render("ip=%DOWNSTREAM_REMOTE_ADDRESS% 100%%"),
            "ip=1.2.3.4:5 100%"
        );
        assert_eq!(
            render("%REQ(X-A)%"),
            "vx",
            "CR LF dropped, name lower-cased"
        );
        assert_eq!(render("%RESPONSE_CODE%"), "", "no value: nothing");
        assert_eq!(Template::parse("plain").unwrap().literal(), Some("plain"));
    }

    #[test]
    fn rejects_bad_templates() {
        assert!(Template::parse("%NOPE%")
            .unwrap_err()
            .contains("unknown command"));
        assert!(Template::parse("50%").unwrap_err().contains("unclosed"));
        assert!(Template::parse("%REQ%").unwrap_err().contains("argument"));
        assert!(Template::parse("%HOSTNAME(x)%")
            .unwrap_err()
            .contains("no argument"));
    }
}
