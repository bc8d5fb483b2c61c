use super::*;

#[test]
fn base64_round_trips_and_takes_concatenated_padded_pieces() {
    for s in [&b""[..], b"a", b"ab", b"abc", b"abcd", b"\x00\xff\x80grpc"] {
        assert_eq!(base64::decode(&base64::encode(s)).unwrap(), s);
    }
    assert_eq!(base64::encode(b"hello"), b"aGVsbG8=");
    assert_eq!(base64::decode(b"aGk=aGk=").unwrap(), b"hihi");
    assert!(base64::decode(b"aGk").is_none());
    assert!(base64::decode(b"a=Gk").is_none());
    assert!(base64::decode(b"a*Gk").is_none());
}

#[test]
fn trailer_frames_are_flagged_and_sized() {
    let f = trailer_frame(&[(b"Grpc-Status", b"0"), (b"grpc-message", b"ok")]);
    let body = b"grpc-status:0\r\ngrpc-message:ok\r\n";
    assert_eq!(f[0], 0x80);
    assert_eq!(
        u32::from_be_bytes([f[1], f[2], f[3], f[4]]) as usize,
        body.len()
    );
    assert_eq!(&f[5..], body);
}

#[test]
fn content_types_are_recognised() {
    let head = |ct: &str| {
        let mut h = RequestHead::new(b"POST", "http", b"a", b"/s/M");
        h.headers.append("content-type", ct);
        h
    };
    assert!(Web::of(&head("application/grpc-web")).is_some_and(|w| !w.text));
    assert!(Web::of(&head("application/grpc-web+proto")).is_some_and(|w| !w.text));
    assert!(Web::of(&head("application/grpc-web-text")).is_some_and(|w| w.text));
    assert!(Web::of(&head("application/grpc-web-text+proto")).is_some_and(|w| w.text));
    assert!(Web::of(&head("application/grpc")).is_none());
    assert!(Web::of(&head("application/grpc-webby")).is_none());
    assert!(Web::of(&head("text/plain")).is_none());
}
