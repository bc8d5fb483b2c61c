//! Unit tests of format parsing: the pieces a format string becomes and the errors it can give.

use super::*;

fn text_pieces(s: &str) -> Vec<Piece> {
    match Format::text(s).unwrap() {
        Format::Text(p) => p,
        Format::Json(_) => panic!("a text format parsed as JSON"),
    }
}

#[test]
fn text_pieces_and_the_final_newline() {
    assert_eq!(
        text_pieces("a %RESPONSE_CODE% 100%% %REQ(X-Long?:PATH):3%"),
        vec![
            Piece::Lit("a ".into()),
            Piece::Cmd(Command::ResponseCode),
            Piece::Lit(" 100% ".into()),
            Piece::Cmd(Command::Req {
                name: "x-long".into(),
                alt: Some(":path".into()),
                max_len: Some(3),
            }),
            Piece::Lit("\n".into()),
        ]
    );
    // A format ending in a newline keeps exactly that one; literal text gets one appended.
    assert_eq!(
        text_pieces("%DURATION%\n"),
        vec![Piece::Cmd(Command::Duration), Piece::Lit("\n".into())]
    );
    assert_eq!(text_pieces("plain"), vec![Piece::Lit("plain\n".into())]);
    assert_eq!(text_pieces(""), vec![Piece::Lit("\n".into())]);
}

#[test]
fn json_keys_sorted_and_escaped_once() {
    let Format::Json(fields) = Format::json([
        ("zeta", "%RESPONSE_CODE%"),
        ("a\"b", "x=%BYTES_SENT%"),
        ("mid", "lit"),
    ])
    .unwrap() else {
        panic!("not JSON");
    };
    let keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, ["\"a\\\"b\"", "\"mid\"", "\"zeta\""]);
    // JSON values get no newline: the renderer ends the object's line.
    assert_eq!(fields[1].1, vec![Piece::Lit("lit".into())]);
    assert_eq!(
        fields[0].1,
        vec![Piece::Lit("x=".into()), Piece::Cmd(Command::BytesSent)]
    );
}

#[test]
fn default_format_is_envoys() {
    let f = Format::envoy_default();
    assert_eq!(Format::text(DEFAULT_FORMAT).unwrap(), f);
    let Format::Text(p) = &f else {
        panic!("not text");
    };
    assert!(matches!(p[0], Piece::Lit(ref l) if l == "["));
    assert!(
        matches!(p[1], Piece::Cmd(Command::StartTime(ref t)) if *t == time::TimeFormat::envoy_default())
    );
    let commands = p.iter().filter(|p| matches!(p, Piece::Cmd(_))).count();
    assert_eq!(commands, 14);
}

#[test]
fn every_listed_command_parses() {
    for name in COMMANDS {
        let s = match *name {
            "REQ" | "RESP" => format!("%{name}(HOST)%"),
            "FILTER_STATE" | "DYNAMIC_METADATA" => format!("%{name}(a:b)%"),
            _ => format!("%{name}%"),
        };
        assert!(Format::text(&s).is_ok(), "{s}");
    }
}

#[test]
fn parse_errors_name_the_command() {
    assert!(Format::text("%NOPE%").unwrap_err().contains("%NOPE%"));
    assert!(Format::text("%REQ(").is_err());
    assert!(Format::text("%RESPONSE_CODE").is_err());
    assert!(Format::text("50% off").is_err());
    assert!(Format::text("%DURATION(x)%").is_err());
    assert!(Format::text("%DURATION:3%")
        .unwrap_err()
        .contains("only supported on `%REQ(...)%`"));
    assert!(Format::text("%FILTER_STATE%")
        .unwrap_err()
        .contains("needs a key"));
    assert!(Format::text("%REQ(a b)%")
        .unwrap_err()
        .contains("is not a header name"));
    assert!(Format::text("%RESP(:path)%")
        .unwrap_err()
        .contains("no pseudo-headers"));
    assert!(Format::text("%TRAILER(x)%")
        .unwrap_err()
        .contains("trailers"));
    assert!(matches!(
        Format::text("%RESP(X-A?x-b):4%").unwrap(),
        Format::Text(p) if matches!(&p[0], Piece::Cmd(Command::Resp { name, alt: Some(a), max_len: Some(4) }) if name == "x-a" && a == "x-b")
    ));
    assert!(matches!(
        Format::text("%DYNAMIC_METADATA(cache:status)% %FILTER_STATE(fault.injected:PLAIN)%").unwrap(),
        Format::Text(p) if p[0] == Piece::Cmd(Command::FilterState("cache.status".into()))
            && p[2] == Piece::Cmd(Command::FilterState("fault.injected".into()))
    ));
    let e = Format::json([("a", "%OK%"), ("b", "%DURATION%")]).unwrap_err();
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].0, "a");
    // START_TIME's argument may hold `%` and `)`.
    let f = Format::text("%START_TIME(%Y-%m-%dT%H:%M:%S%z)%").unwrap();
    assert!(matches!(&f, Format::Text(p) if matches!(p[0], Piece::Cmd(Command::StartTime(_)))));
    assert!(Format::text("%START_TIME(%Q)%").unwrap_err().contains("%Q"));
}
