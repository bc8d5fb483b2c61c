//! Message bodies through the proxy, both directions: Content-Length and chunked uploads,
//! chunked, Content-Length and close-delimited downloads, `Expect: 100-continue`.
use crate::support;

use std::{io::Write, thread, time::Duration};

use support::*;

/// A recognisable body: every byte depends on its offset, so a lost, doubled or reordered
/// piece shows.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut at = 0;
    let mut i = 0;
    while at < body.len() {
        let n = sizes[i % sizes.len()].min(body.len() - at);
        out.extend_from_slice(format!("{n:x}\r\n").as_bytes());
        out.extend_from_slice(&body[at..at + n]);
        out.extend_from_slice(b"\r\n");
        at += n;
        i += 1;
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

#[test]
fn http1_upload_content_length_to_echo() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for n in [1usize, 4096, 16 * 1024 + 1, 300_000] {
        let body = pattern(n);
        c.send(format!("POST /echo HTTP/1.1\r\nHost: b\r\nContent-Length: {n}\r\n\r\n").as_bytes());
        // The body in a few separate writes.
        for part in body.chunks(70_000) {
            c.send(part);
        }
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        let e = echo_json(&r);
        assert_eq!(e["body_length"], n as u64);
        let list = echo_header_list(&e);
        assert!(
            list.contains(&("content-length".into(), n.to_string())),
            "{list:?}"
        );
        assert!(
            !list.iter().any(|(h, _)| h == "transfer-encoding"),
            "{list:?}"
        );
    }
}

#[test]
fn http1_upload_chunked_to_echo() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for (n, sizes) in [
        (10usize, &[1usize, 2, 3][..]),
        (100_000, &[1, 7000, 65536, 13]),
        (500_000, &[32 * 1024]),
    ] {
        let body = chunked(&pattern(n), sizes);
        c.send(b"POST /echo HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n");
        for part in body.chunks(50_000) {
            c.send(part);
        }
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        let e = echo_json(&r);
        assert_eq!(e["body_length"], n as u64, "chunk sizes {sizes:?}");
        let list = echo_header_list(&e);
        assert!(
            list.contains(&("transfer-encoding".into(), "chunked".into())),
            "{list:?}"
        );
    }
}

#[test]
fn http1_upload_bytes_arrive_intact() {
    // Byte-exact at a scripted origin: a Content-Length body, and a chunked one (with chunk
    // extensions and trailers, which the proxy drops) re-chunked but with the same payload.
    let origin = RawOrigin::start(|mut c| {
        while let Some(req) = c.read_request_framed() {
            let sum: u64 = req.body.iter().map(|&b| u64::from(b)).sum();
            let reply = format!("{} {}", req.body.len(), sum);
            let resp = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{reply}",
                reply.len()
            );
            if !c.write(resp.as_bytes()) {
                break;
            }
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let body = pattern(200_000);
    let sum: u64 = body.iter().map(|&b| u64::from(b)).sum();
    let want = format!("{} {sum}", body.len());

    let mut c = Client::connect(proxy.addr);
    c.send(
        format!(
            "POST /cl HTTP/1.1\r\nHost: b\r\nContent-Length: {}\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    c.send(&body);
    let r = c.response(false);
    assert_eq!((r.status(), r.body_str()), (200, want.clone()), "{r:?}");

    let mut enc = Vec::new();
    for (i, part) in body.chunks(33_333).enumerate() {
        enc.extend_from_slice(format!("{:X};i={i}\r\n", part.len()).as_bytes());
        enc.extend_from_slice(part);
        enc.extend_from_slice(b"\r\n");
    }
    enc.extend_from_slice(b"0\r\nX-Trailer: t\r\n\r\n");
    c.send(b"POST /chunked HTTP/1.1\r\nHost: b\r\nTransfer-Encoding: chunked\r\n\r\n");
    c.send(&enc);
    let r = c.response(false);
    assert_eq!((r.status(), r.body_str()), (200, want), "{r:?}");

    let got = origin.received_bytes();
    let at = find(&got, b"POST /chunked").expect("second request");
    let head_end = at + find(&got[at..], b"\r\n\r\n").expect("head") + 4;
    let head = String::from_utf8_lossy(&got[at..head_end]).to_string();
    assert!(
        head.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{head}"
    );
    let (payload, used) = dechunk(&got[head_end..]).expect("a well-formed chunked body");
    assert_eq!(payload, body);
    assert_eq!(head_end + used, got.len(), "nothing after the body");
    assert!(
        find(&got[head_end..], b"i=0").is_none(),
        "chunk extensions are not passed on"
    );
    assert!(
        find(&got[head_end..], b"X-Trailer").is_none(),
        "trailers are not passed on"
    );
}

#[test]
fn http1_download_chunked_and_content_length() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for n in [0usize, 1, 16 * 1024, 1_000_003] {
        c.send(format!("GET /bytes/{n} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        assert_eq!(r.header_all("transfer-encoding"), ["chunked"], "{r:?}");
        assert_eq!(r.header("content-length"), None);
        assert_eq!(r.body.len(), n);
        assert!(r.body.iter().all(|&b| b == b'x'));

        c.send(format!("GET /bytes/{n}?cl=1 HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        assert_eq!(
            r.header("content-length"),
            Some(n.to_string().as_str()),
            "{r:?}"
        );
        assert_eq!(r.header("transfer-encoding"), None, "{r:?}");
        assert_eq!(r.body.len(), n);
        assert!(r.body.iter().all(|&b| b == b'x'));
    }
    assert!(c.buffered().is_empty());
}

#[test]
fn http1_download_bytes_arrive_intact() {
    // A scripted origin sends a patterned body with Content-Length, and chunked with odd chunk
    // sizes, extensions and trailers: the client gets exactly the payload.
    let body = pattern(250_000);
    let origin = {
        let body = body.clone();
        RawOrigin::start(move |mut c| {
            while let Some(req) = c.read_request() {
                let mut resp;
                if req.start.contains("/cl") {
                    resp = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len())
                        .into_bytes();
                    resp.extend_from_slice(&body);
                } else {
                    resp = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
                    for (i, part) in body.chunks(12_345).enumerate() {
                        resp.extend_from_slice(format!("{:x};n={i}\r\n", part.len()).as_bytes());
                        resp.extend_from_slice(part);
                        resp.extend_from_slice(b"\r\n");
                    }
                    resp.extend_from_slice(b"0\r\nx-t: 1\r\n\r\n");
                }
                // In uneven writes, so the proxy sees the framing split anywhere.
                for part in resp.chunks(9_999) {
                    if !c.write(part) {
                        return;
                    }
                }
            }
        })
    };
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for path in ["/cl", "/chunked", "/cl"] {
        c.send(format!("GET {path} HTTP/1.1\r\nHost: b\r\n\r\n").as_bytes());
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{path}: {:?}", r.headers);
        assert!(
            r.body == body,
            "{path}: body differs ({} bytes)",
            r.body.len()
        );
    }
    assert_eq!(origin.connection_count(), 1);
}

#[test]
fn http1_download_close_delimited_is_chunked_to_http11_client() {
    let origin = RawOrigin::start(|mut c| {
        if c.read_request().is_some() {
            c.write(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n");
            thread::sleep(Duration::from_millis(20));
            c.write(b"until ");
            c.write(b"close");
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(r.header_all("transfer-encoding"), ["chunked"], "{r:?}");
    assert_eq!(r.body_str(), "until close");
    // The client connection outlives the upstream one.
    c.send(b"GET / HTTP/1.1\r\nHost: b\r\n\r\n");
    assert_eq!(c.response(false).body_str(), "until close");
    assert_eq!(origin.connection_count(), 2);
}

#[test]
fn http1_expect_100_continue() {
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    for (framing, body) in [
        ("Content-Length: 11", b"hello world".to_vec()),
        (
            "Transfer-Encoding: chunked",
            b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n".to_vec(),
        ),
    ] {
        c.send(
            format!("PUT /echo HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\n{framing}\r\n\r\n")
                .as_bytes(),
        );
        // The client waits for the interim answer before sending the body.
        let interim = c.read_head().expect("100 Continue before the body");
        assert_eq!(interim.start, "HTTP/1.1 100 Continue", "{interim:?}");
        assert!(
            c.buffered().is_empty(),
            "nothing but the 100 before the body: {:?}",
            c.buffered()
        );
        c.send(&body);
        let r = c.response(false);
        assert_eq!(r.status(), 200, "{r:?}");
        let e = echo_json(&r);
        assert_eq!(e["body_length"], 11);
        let list = echo_header_list(&e);
        assert!(
            !list.iter().any(|(n, _)| n == "expect"),
            "Expect forwarded: {list:?}"
        );
    }
}

#[test]
fn http1_expect_100_continue_with_body_already_sent() {
    // A client that does not wait: the body comes with the head. The request still works and
    // the answer is the final response.
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(
        b"POST /echo HTTP/1.1\r\nHost: b\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\nabc",
    );
    let r = c.response(false);
    assert_eq!(r.status(), 200, "{r:?}");
    assert_eq!(echo_json(&r)["body_length"], 3);
}

#[test]
fn http1_expect_100_continue_with_curl() {
    // curl sends Expect: 100-continue for uploads over 1 MiB and waits for the 100.
    let origin = BenchOrigin::start(&[]);
    let proxy = Proxy::start(&simple_config(origin.addr));
    let dir = scratch_dir();
    let file = dir.join("upload.bin");
    std::fs::File::create(&file)
        .and_then(|mut f| f.write_all(&pattern(2 * 1024 * 1024)))
        .expect("write upload file");
    let out = std::process::Command::new("curl")
        .args([
            "-sS",
            "--max-time",
            "10",
            "--expect100-timeout",
            "5",
            "-v",
            "--data-binary",
        ])
        .arg(format!("@{}", file.display()))
        .arg(format!("http://{}/echo", proxy.addr))
        .output()
        .expect("run curl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "curl failed: {stderr}");
    assert!(
        stderr.contains("Expect: 100-continue"),
        "curl did not send Expect: {stderr}"
    );
    assert!(
        stderr.contains("HTTP/1.1 100 Continue"),
        "no 100 Continue: {stderr}"
    );
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).expect("echo json");
    assert_eq!(e["body_length"], 2 * 1024 * 1024);
    assert!(e["headers"].get("expect").is_none(), "{e}");
}

/// Send a `POST /up` head for `n` bytes on `c`, then the body from another thread until the
/// proxy stops reading it (the thread ends when the body is sent or a write fails).
fn upload(c: &mut Client, n: usize) -> thread::JoinHandle<()> {
    c.send(format!("POST /up HTTP/1.1\r\nHost: b\r\nContent-Length: {n}\r\n\r\n").as_bytes());
    let mut up = c.stream.try_clone().expect("clone");
    thread::spawn(move || {
        let chunk = vec![b'u'; 64 * 1024];
        let mut sent = 0;
        while sent < n && up.write_all(&chunk).is_ok() {
            sent += chunk.len();
        }
    })
}

/// An upstream that answers an upload before it has read it (a 413 for a body it will not
/// take) and closes: the client gets that answer, not a 502, and both connections close (the
/// rest of the upload was never read, so the client's connection cannot carry another request,
/// and the upstream's is not reused). As Envoy, nginx and HAProxy do, and as curl sees straight
/// from the origin.
#[test]
fn http1_an_answer_before_the_whole_upload_is_the_response() {
    let origin = RawOrigin::start(|mut c| {
        if c.read_request_head().is_some() {
            c.write(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\nx-from: origin\r\n\r\ntoo large",
            );
        }
        // Dropped with the upload unread: the kernel resets the connection.
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    for round in 0..3 {
        let mut c = Client::connect(proxy.addr);
        let writer = upload(&mut c, 16 << 20);
        let r = c.try_response(false).expect("an answer");
        assert_eq!(r.status(), 413, "round {round}: {r:?}\n{}", proxy.log());
        assert_eq!(r.header("x-from"), Some("origin"), "{r:?}");
        assert_eq!(r.body_str(), "too large");
        assert_eq!(r.header("connection"), Some("close"), "{r:?}");
        assert!(c.closed(), "the client connection closes");
        writer.join().expect("writer");
    }
    // Each upload had a connection of its own: none that carried part of one was reused.
    assert_eq!(origin.connection_count(), 3);
    let r = get(proxy.addr, "b", "/after");
    assert_eq!(r.status(), 413, "{r:?}");
    assert_eq!(origin.connection_count(), 4);
}

/// An upstream that answers an upload early and then neither reads the rest nor closes: once
/// the body has not moved for `request_body_timeout`, the upload is given up and the answer the
/// upstream sent goes to the client (both connections then close), instead of the client and
/// the connection being held for as long as the upstream waits.
#[test]
fn http1_an_upstream_that_stops_taking_the_upload_still_has_its_answer_sent() {
    let origin = RawOrigin::start(|mut c| {
        if c.read_request_head().is_some() {
            c.write(b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 9\r\n\r\ntoo large");
            // Holds the connection open, reading nothing.
            thread::sleep(Duration::from_secs(20));
        }
    });
    let proxy = Proxy::start(
        &ConfigBuilder::simple(origin.addr)
            .hcm_extra("request_body_timeout: 1s")
            .yaml(),
    );
    let mut c = Client::connect(proxy.addr);
    let writer = upload(&mut c, 64 << 20);
    let r = c.try_response(false).expect("an answer");
    assert_eq!(
        (r.status(), r.body_str().as_str()),
        (413, "too large"),
        "{r:?}"
    );
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.closed(), "the client connection closes");
    writer.join().expect("writer");
}

/// An upstream that stops taking an upload and never answers timed out, as nginx and HAProxy
/// say it (504 `upstream_timeout`, `UT`), counted as an upstream timeout and nothing else, and
/// both connections close.
#[test]
fn http1_an_upstream_that_stops_taking_the_upload_and_never_answers_is_a_504() {
    let origin = RawOrigin::start(|mut c| {
        if c.read_request_head().is_some() {
            // Holds the connection open, reading nothing, saying nothing.
            thread::sleep(Duration::from_secs(20));
        }
    });
    let log = scratch_dir().join("stalled-upload.log");
    let proxy = Proxy::start(
        &ConfigBuilder::simple(origin.addr)
            .admin()
            .hcm_extra(&format!(
                "request_body_timeout: 1s\naccess_log: [{{ path: {}, format: \"%RESPONSE_CODE% %RESPONSE_FLAGS%\\n\" }}]",
                log.display()
            ))
            .yaml(),
    );
    let mut c = Client::connect(proxy.addr);
    let writer = upload(&mut c, 64 << 20);
    let r = c.try_response(false).expect("an answer");
    assert_eq!(r.status(), 504, "{r:?}");
    assert_eq!(r.header("x-ringway-reason"), Some("upstream_timeout"));
    assert_eq!(r.header("connection"), Some("close"), "{r:?}");
    assert!(c.closed(), "the client connection closes");
    writer.join().expect("writer");
    let admin = proxy.admin_addr.expect("admin");
    let s = admin_stats(admin);
    let stat = |n: &str| s.get(n).copied().unwrap_or(0);
    assert_eq!(stat("cluster.origin.upstream_rq_timeout"), 1, "{s:?}");
    assert_eq!(stat("cluster.origin.upstream_rq_per_try_timeout"), 0);
    assert_eq!(stat("cluster.origin.upstream_rq_retry"), 0);
    assert_eq!(wait_lines(&log, 1), vec!["504 UT".to_string()]);
}

/// Read `c` to its end: `true` when it ended in a reset, `false` on a clean close (or after
/// [`WAIT`]).
fn ends_in_reset(c: &mut Client) -> bool {
    use std::io::Read;
    let _ = c.stream.set_read_timeout(Some(WAIT));
    let mut buf = [0u8; 4096];
    loop {
        match c.stream.read(&mut buf) {
            Ok(0) => return false,
            Ok(_) => {}
            Err(e) => return e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    }
}

/// An HTTP/1.0 client gets a body of unknown length delimited by the close; when the upstream's
/// body breaks off (here a bad chunk), a plain close would pass what came as the whole body, so
/// the proxy resets the connection instead. A whole body still ends with a clean close.
#[test]
fn http1_a_cut_body_to_an_http10_client_ends_in_a_reset() {
    let origin = RawOrigin::start(|mut c| {
        if let Some(req) = c.read_request() {
            let tail = if req.start.contains("/cut") {
                "zz\r\n"
            } else {
                "0\r\n\r\n"
            };
            c.write(
                format!(
                    "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n{tail}"
                )
                .as_bytes(),
            );
        }
    });
    let proxy = Proxy::start(&simple_config(origin.addr));
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /whole HTTP/1.0\r\nHost: b\r\n\r\n");
    assert!(
        !ends_in_reset(&mut c),
        "a whole body ends with a clean close"
    );
    let mut c = Client::connect(proxy.addr);
    c.send(b"GET /cut HTTP/1.0\r\nHost: b\r\n\r\n");
    assert!(
        ends_in_reset(&mut c),
        "a cut body must not end like a whole one"
    );
}
