//! An upstream that misbehaves at random, on keep-alive connections, while several keep-alive
//! clients go through one worker (so its pooled upstream connections are reused between them).
//!
//! Each request names its own id and what the origin is to do (`x-id`, `x-act`, chosen by a
//! seeded generator): answer properly (length, chunked, after a `100 Continue`, close-delimited,
//! late), answer with bytes past the message (a whole forged second response after the body,
//! a body on a 204), or answer badly (a broken header line, both framings, two lengths, a
//! truncated body, a bad chunk, nothing at all). What must hold whatever came before on the same
//! pooled connection: a 2xx a client receives is its own request's answer (its id, its body),
//! never another's; a bad answer is a 502/503 local reply or a closed client connection, never a
//! forged response; and the proxy keeps serving and never panics.
//!
//! The same with the `cache` filter, over a few cacheable paths that clients now and then ask to
//! revalidate (`cache-control: no-cache`): what the cache serves is always a whole, proper answer
//! for that path, never a truncated, broken or forged one that passed through it.
//!
//! And an HTTP/2 upstream (a scripted Python `h2` server) that answers with or without a length,
//! with trailers, late, then GOAWAY, or badly: a reset before or during the answer, a body short
//! of its length, a malformed status, a connection that dies mid-answer. With one stream per
//! connection every proper answer arrives whole; multiplexed, a stream may fail with the
//! connection another stream killed, but no answer ever reaches the wrong client.
use crate::support;
use std::{io::Read, net::SocketAddr, thread, time::Duration};

use support::*;

/// What the origin does for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Act {
    Length,
    Chunked,
    Continue100,
    CloseDelimited,
    Late,
    ForgedAfterBody,
    BodyOn204,
    BrokenHeader,
    BothFramings,
    TwoLengths,
    Truncated,
    BadChunk,
    NoAnswer,
}

const ACTS: [Act; 13] = [
    Act::Length,
    Act::Chunked,
    Act::Continue100,
    Act::CloseDelimited,
    Act::Late,
    Act::ForgedAfterBody,
    Act::BodyOn204,
    Act::BrokenHeader,
    Act::BothFramings,
    Act::TwoLengths,
    Act::Truncated,
    Act::BadChunk,
    Act::NoAnswer,
];

/// What the clients ask for, as indices into [`ACTS`]: proper answers more often than bad ones,
/// so that most upstream connections are reused a few times before a bad answer ends one.
const DRAW: [usize; 18] = [0, 0, 0, 0, 1, 2, 3, 4, 5, 5, 6, 6, 7, 8, 9, 10, 11, 12];

impl Act {
    /// The answer is well-formed and complete: the client must get exactly it.
    fn proper(self) -> bool {
        matches!(
            self,
            Act::Length
                | Act::Chunked
                | Act::Continue100
                | Act::CloseDelimited
                | Act::Late
                | Act::ForgedAfterBody
                | Act::BodyOn204
        )
    }
}

/// Answer one request as `act` says, with `body` and the fields in `extra` (each line with its
/// CRLF) on a 200; `false`: the origin closes the connection afterwards.
fn answer(c: &mut OriginConn, id: u64, body: &str, extra: &str, act: Act) -> bool {
    let ok = |more: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}content-length: {}\r\n{more}\r\n{body}",
            body.len()
        )
    };
    match act {
        Act::Length => c.write(ok("").as_bytes()),
        Act::Chunked => c.write(
            format!(
                "HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}transfer-encoding: chunked\r\n\r\n\
                 3\r\n{}\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                &body[..3],
                body.len() - 3,
                &body[3..]
            )
            .as_bytes(),
        ),
        Act::Continue100 => c.write(format!("HTTP/1.1 100 Continue\r\n\r\n{}", ok("")).as_bytes()),
        Act::CloseDelimited => {
            c.write(
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}connection: close\r\n\r\n{body}")
                    .as_bytes(),
            );
            false
        }
        Act::Late => {
            thread::sleep(Duration::from_millis(15));
            c.write(ok("").as_bytes())
        }
        Act::ForgedAfterBody => {
            // A whole second response in the same write: if the proxy kept this connection and
            // read on from here, the next request through it would get the forgery.
            let forged = "HTTP/1.1 200 OK\r\nx-id: forged\r\ncontent-length: 9\r\n\r\nid=forged";
            c.write(format!("{}{forged}", ok("")).as_bytes())
        }
        Act::BodyOn204 => {
            c.write(format!("HTTP/1.1 204 No Content\r\nx-id: {id}\r\n\r\n{body}").as_bytes())
        }
        Act::BrokenHeader => {
            c.write(
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}broken header line\r\n\r\n")
                    .as_bytes(),
            );
            false
        }
        Act::BothFramings => {
            c.write(
                format!(
                    "HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}content-length: {}\r\n\
                     transfer-encoding: chunked\r\n\r\n{body}",
                    body.len()
                )
                .as_bytes(),
            );
            false
        }
        Act::TwoLengths => {
            c.write(
                format!(
                    "HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}content-length: {}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len(),
                    body.len() + 1
                )
                .as_bytes(),
            );
            false
        }
        Act::Truncated => {
            // Half the body, then the end: a cache that kept it would serve half.
            c.write(
                format!(
                    "HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}content-length: {}\r\n\r\n{}",
                    body.len(),
                    &body[..body.len() / 2]
                )
                .as_bytes(),
            );
            false
        }
        Act::BadChunk => {
            c.write(
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\n{extra}transfer-encoding: chunked\r\n\r\nzz\r\n{body}\r\n")
                    .as_bytes(),
            );
            false
        }
        Act::NoAnswer => false,
    }
}

fn chaos_origin() -> RawOrigin {
    RawOrigin::start(|mut c| {
        while let Some(req) = c.read_request() {
            let id = req.header("x-id").and_then(|v| v.parse().ok()).unwrap_or(0);
            let act = req
                .header("x-act")
                .and_then(|v| v.parse::<usize>().ok())
                .and_then(|i| ACTS.get(i).copied())
                .unwrap_or(Act::Length);
            // `/cached/K`: the same body for every request of the path, fresh for ten minutes;
            // `/long/N`: text long enough for the compressor.
            let target = req.start.split(' ').nth(1).unwrap_or("");
            let (body, extra) = if let Some(k) = target.strip_prefix("/cached/") {
                (format!("path={k}"), "cache-control: max-age=600\r\n")
            } else if target.starts_with("/long/") {
                (long_body(id), "content-type: text/plain\r\n")
            } else {
                (format!("id={id}"), "")
            };
            if !answer(&mut c, id, &body, extra, act) {
                return;
            }
        }
    })
}

/// The body of a `/long/` answer: text the compressor takes.
fn long_body(id: u64) -> String {
    format!("id={id} {}", "chaos ".repeat(20))
}

/// One request and what came back: what the origin was asked to do, the request's id, the
/// cached path's number (`None`: a path of its own), the response (`None`: the connection closed
/// before a whole one).
struct Outcome {
    act: Act,
    id: u64,
    path: Option<u64>,
    r: Option<RawMessage>,
}

/// What a chaos run puts between the clients and the origin.
#[derive(Debug, Clone, Copy)]
struct Setup {
    /// Raw `http_filters` items (empty: none).
    filters: &'static str,
    /// Clients ask for one of this many cacheable paths, a third of the time asking the cache
    /// to revalidate (0: each request has a path of its own).
    cached_paths: u64,
    /// Clients accept gzip and ask for `/long/` answers.
    gzip: bool,
}

/// `n` requests on one keep-alive connection (a new one after a close), as `setup` says.
fn client(proxy: SocketAddr, seed: u64, first_id: u64, n: u64, setup: Setup) -> Vec<Outcome> {
    let mut rng = Rng(seed);
    let mut c = Client::connect(proxy);
    let mut out = Vec::new();
    for id in first_id..first_id + n {
        let i = DRAW[rng.below(DRAW.len() as u64) as usize];
        let (path, target, extra) = match setup.cached_paths {
            0 if setup.gzip => (None, format!("/long/{id}"), "accept-encoding: gzip\r\n"),
            0 => (None, format!("/chaos/{id}"), ""),
            m => {
                let k = rng.below(m);
                let extra = match rng.below(3) {
                    0 => "cache-control: no-cache\r\n",
                    _ => "",
                };
                (Some(k), format!("/cached/{k}"), extra)
            }
        };
        let req = format!(
            "GET {target} HTTP/1.1\r\nhost: chaos.test\r\nx-id: {id}\r\nx-act: {i}\r\n{extra}\r\n"
        );
        let r = exchange(&mut c, proxy, &req);
        out.push(Outcome {
            act: ACTS[i],
            id,
            path,
            r,
        });
    }
    out
}

/// Send `req` on `c` and read its answer; a connection that gave none or that the answer
/// closes is replaced with a new one to `proxy`.
fn exchange(c: &mut Client, proxy: SocketAddr, req: &str) -> Option<RawMessage> {
    c.send(req.as_bytes());
    let r = c.try_response(false);
    let closes = r.as_ref().is_none_or(|r| {
        r.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    });
    if closes {
        *c = Client::connect(proxy);
    }
    r
}

/// What the clients got, by kind.
#[derive(Debug, Default)]
struct Tally {
    /// A proper 2xx (its own answer, or the cache's whole copy of its path's).
    proper: usize,
    /// Of those, served by the cache (they carry `age`).
    hits: usize,
    /// A 502/503 local reply for a bad answer.
    refused: usize,
    /// The client connection closed mid-response, for a bad answer.
    closed: usize,
    /// Proper answers that came gzipped (and decoded whole).
    gzipped: usize,
}

/// Four clients of 150 requests each through one worker set up as `setup` says; every outcome
/// checked; the proxy still serving afterwards.
fn run_chaos(setup: Setup) -> Tally {
    let origin = chaos_origin();
    let mut config = ConfigBuilder::simple(origin.addr).top("workers: 1");
    if !setup.filters.is_empty() {
        config = config.http_filters(setup.filters);
    }
    let proxy = Proxy::start(&config.yaml());
    let clients: Vec<_> = (0..4u64)
        .map(|k| {
            let addr = proxy.addr;
            let seed = 0x9e37_79b9_7f4a_7c15 ^ (k + 1);
            thread::spawn(move || client(addr, seed, k * 10_000, 150, setup))
        })
        .collect();
    let mut t = Tally::default();
    for h in clients {
        for o in h.join().expect("client thread") {
            let (act, id) = (o.act, o.id);
            let Some(r) = o.r else {
                // The client connection closed before a whole response: only for a bad answer
                // (a cache hit never goes to the origin, so it never fails).
                assert!(
                    !act.proper(),
                    "{act:?} #{id}: no whole response\n{}",
                    proxy.log()
                );
                t.closed += 1;
                continue;
            };
            // The status line first, nothing before it (bytes left over from another answer).
            assert!(r.start.starts_with("HTTP/1.1 "), "{act:?} #{id}: {r:?}");
            assert_ne!(r.header("x-id"), Some("forged"), "{act:?} #{id}: {r:?}");
            if (200..300).contains(&r.status()) {
                // A 204 is never stored (no lifetime), so only the origin's own answer is one
                // (a cache hit answers whatever the origin was asked to do).
                let hit = r.header("age").is_some();
                assert!(
                    (r.status() == 204) == (act == Act::BodyOn204) || (hit && r.status() == 200),
                    "{act:?} #{id}: {r:?}"
                );
                // Exactly the origin's fields: nothing the origin did not send (a type).
                let typed = setup.gzip && r.status() == 200;
                assert_eq!(
                    r.header("content-type"),
                    typed.then_some("text/plain"),
                    "{act:?} #{id}: {r:?}"
                );
                let want = match (r.status(), o.path) {
                    (204, _) => String::new(),
                    (_, Some(k)) => format!("path={k}"),
                    (_, None) if setup.gzip => long_body(id),
                    (_, None) => format!("id={id}"),
                };
                let body = match r.header("content-encoding") {
                    Some("gzip") => {
                        t.gzipped += 1;
                        let mut out = String::new();
                        flate2::read::GzDecoder::new(&r.body[..])
                            .read_to_string(&mut out)
                            .unwrap_or_else(|e| panic!("{act:?} #{id}: bad gzip ({e}): {r:?}"));
                        out
                    }
                    _ => r.body_str(),
                };
                assert_eq!(body, want, "{act:?} #{id}: {r:?}");
                if hit {
                    t.hits += 1;
                } else {
                    assert_eq!(
                        r.header("x-id"),
                        Some(id.to_string().as_str()),
                        "{act:?} #{id}: {r:?}"
                    );
                }
                t.proper += 1;
            } else {
                assert!(
                    !act.proper() && matches!(r.status(), 502 | 503),
                    "{act:?} #{id}: {r:?}\n{}",
                    proxy.log()
                );
                assert!(
                    r.header("x-ringway-reason").is_some(),
                    "{act:?} #{id}: {r:?}"
                );
                t.refused += 1;
            }
        }
    }
    assert_eq!(t.proper + t.refused + t.closed, 600, "{t:?}");
    // Upstream connections were reused across requests (and clients).
    assert!(
        origin.connection_count() < 450,
        "{} upstream connections, {t:?}",
        origin.connection_count()
    );
    let r = Client::connect(proxy.addr)
        .roundtrip(b"GET /after HTTP/1.1\r\nhost: chaos.test\r\nx-id: 1\r\nx-act: 0\r\n\r\n");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "id=1"), "{r:?}");
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
    t
}

#[test]
fn upstream_chaos_never_crosses_responses_between_requests() {
    let t = run_chaos(Setup {
        filters: "",
        cached_paths: 0,
        gzip: false,
    });
    assert!(t.proper > 300 && t.refused > 60 && t.hits == 0, "{t:?}");
}

#[test]
fn upstream_chaos_never_reaches_the_cache() {
    let t = run_chaos(Setup {
        filters: "- name: cache\n",
        cached_paths: 12,
        gzip: false,
    });
    assert!(t.hits > 200 && t.refused > 20, "{t:?}");
}

#[test]
fn upstream_chaos_through_the_compressor_never_ends_a_cut_body() {
    // A body the upstream cut short must not reach the client as a whole gzip stream (a proper
    // end of the compressed data and the last chunk): the client sees the connection close.
    let t = run_chaos(Setup {
        filters: "- name: compressor\n  compressor_library: { name: gzip }\n",
        cached_paths: 0,
        gzip: true,
    });
    assert!(t.gzipped > 250 && t.refused > 60, "{t:?}");
}

/// A scripted HTTP/2 upstream (Python `h2`) that answers each stream as its `x-act` says (an
/// index into [`H2_ACTS`]) and echoes its `x-id`.
const H2_CHAOS_SERVER: &str = r#"
import socket, threading, time
import h2.connection, h2.config, h2.events, h2.errors
srv = socket.socket()
srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
ERR = h2.errors.ErrorCodes.INTERNAL_ERROR
def serve(sock):
    try:
        answer(sock)
    except Exception:
        pass
    sock.close()
def answer(sock):
    c = h2.connection.H2Connection(h2.config.H2Configuration(
        client_side=False, header_encoding="utf-8", validate_outbound_headers=False))
    c.initiate_connection()
    sock.sendall(c.data_to_send())
    heads = {}
    while True:
        try:
            data = sock.recv(65536)
            events = c.receive_data(data) if data else None
        except Exception:
            return
        if events is None:
            return
        closing = False
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                heads[ev.stream_id] = dict(ev.headers)
            elif isinstance(ev, h2.events.DataReceived):
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id in heads and not closing:
                # (After a GOAWAY, later streams go unanswered: the proxy sends them again.)
                h, sid = heads.pop(ev.stream_id), ev.stream_id
                act, rid = int(h.get("x-act", "0")), h.get("x-id", "-")
                body = ("id=" + rid).encode()
                ok = [(":status", "200"), ("x-id", rid)]
                if act == 0:
                    c.send_headers(sid, ok + [("content-length", str(len(body)))])
                    c.send_data(sid, body, end_stream=True)
                elif act == 1:
                    c.send_headers(sid, ok)
                    c.send_data(sid, body[:3])
                    c.send_data(sid, body[3:], end_stream=True)
                elif act == 2:
                    c.send_headers(sid, ok)
                    c.send_data(sid, body)
                    c.send_headers(sid, [("x-t", rid)], end_stream=True)
                elif act == 3:
                    time.sleep(0.01)
                    c.send_headers(sid, ok)
                    c.send_data(sid, body, end_stream=True)
                elif act == 4:
                    c.send_headers(sid, ok)
                    c.send_data(sid, body, end_stream=True)
                    c.close_connection(last_stream_id=sid)
                    closing = True
                elif act == 5:
                    c.reset_stream(sid, ERR)
                elif act == 6:
                    c.send_headers(sid, ok + [("content-length", "100")])
                    c.send_data(sid, body[:2])
                    c.reset_stream(sid, ERR)
                elif act == 7:
                    c.send_headers(sid, ok + [("content-length", "100")])
                    c.send_data(sid, body, end_stream=True)
                elif act == 8:
                    c.send_headers(sid, [(":status", "2x0"), ("x-id", rid)], end_stream=True)
                else:
                    c.send_headers(sid, ok + [("content-length", "100")])
                    c.send_data(sid, body[:2])
                    sock.sendall(c.data_to_send())
                    return
        try:
            sock.sendall(c.data_to_send())
        except OSError:
            return
        if closing:
            time.sleep(0.02)
            return
while True:
    s, _ = srv.accept()
    threading.Thread(target=serve, args=(s,), daemon=True).start()
"#;

/// What [`H2_CHAOS_SERVER`] does for a stream, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum H2Act {
    Length,
    NoLength,
    Trailers,
    Late,
    /// Answers, then GOAWAY naming this stream as the last, then closes.
    GoawayAfter,
    ResetBefore,
    ResetMidBody,
    ShortOfLength,
    BadStatus,
    /// Headers and part of the body, then the connection closes.
    DiesMidBody,
}

const H2_ACTS: [H2Act; 10] = [
    H2Act::Length,
    H2Act::NoLength,
    H2Act::Trailers,
    H2Act::Late,
    H2Act::GoawayAfter,
    H2Act::ResetBefore,
    H2Act::ResetMidBody,
    H2Act::ShortOfLength,
    H2Act::BadStatus,
    H2Act::DiesMidBody,
];

/// Proper answers more often than bad ones.
const H2_DRAW: [usize; 15] = [0, 0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0];

/// HTTP/1.1 clients through one worker to an HTTP/2 upstream that misbehaves at random. With
/// one stream per connection (`streams: 1`) every stream stands alone, so every proper answer
/// must arrive; multiplexed, a stream whose connection another stream's answer killed may fail
/// with it (as through any proxy), but an answer is never another stream's.
fn run_h2_chaos(streams: u32) -> (usize, usize) {
    let origin = PyServer::start(H2_CHAOS_SERVER, &[], "Python h2");
    let cluster =
        format!("protocol: http2\nhttp2_protocol_options: {{ max_concurrent_streams: {streams} }}");
    let proxy = Proxy::start(
        &ConfigBuilder::simple(origin.addr)
            .top("workers: 1")
            .cluster_extra(&cluster)
            .yaml(),
    );
    let clients: Vec<_> = (0..4u64)
        .map(|k| {
            let addr = proxy.addr;
            thread::spawn(move || {
                let mut rng = Rng(0xd1b5_4a32_d192_ed03 ^ (k + 1));
                let mut c = Client::connect(addr);
                let mut out = Vec::new();
                for id in k * 10_000..k * 10_000 + 100 {
                    let i = H2_DRAW[rng.below(H2_DRAW.len() as u64) as usize];
                    let req = format!(
                        "GET /h2/{id} HTTP/1.1\r\nhost: chaos.test\r\nx-id: {id}\r\nx-act: {i}\r\n\r\n"
                    );
                    out.push((H2_ACTS[i], id, exchange(&mut c, addr, &req)));
                }
                out
            })
        })
        .collect();
    let (mut proper, mut failed) = (0, 0);
    for h in clients {
        for (act, id, r) in h.join().expect("client thread") {
            let good = matches!(
                act,
                H2Act::Length
                    | H2Act::NoLength
                    | H2Act::Trailers
                    | H2Act::Late
                    | H2Act::GoawayAfter
            );
            match r {
                Some(r) if r.status() == 200 => {
                    assert!(r.start.starts_with("HTTP/1.1 200 "), "{act:?} #{id}: {r:?}");
                    assert_eq!(
                        r.header("x-id"),
                        Some(id.to_string().as_str()),
                        "{act:?} #{id}: {r:?}"
                    );
                    assert_eq!(r.body_str(), format!("id={id}"), "{act:?} #{id}: {r:?}");
                    assert!(good, "{act:?} #{id} passed as whole: {r:?}");
                    proper += 1;
                }
                Some(r) => {
                    assert!(
                        matches!(r.status(), 502 | 503) && r.header("x-ringway-reason").is_some(),
                        "{act:?} #{id}: {r:?}"
                    );
                    assert!(
                        !good || streams > 1,
                        "{act:?} #{id}: {r:?}\n{}",
                        proxy.log()
                    );
                    failed += 1;
                }
                None => {
                    assert!(
                        !good || streams > 1,
                        "{act:?} #{id}: no whole answer\n{}",
                        proxy.log()
                    );
                    failed += 1;
                }
            }
        }
    }
    let r = Client::connect(proxy.addr)
        .roundtrip(b"GET /after HTTP/1.1\r\nhost: chaos.test\r\nx-id: 7\r\nx-act: 0\r\n\r\n");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "id=7"), "{r:?}");
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
    (proper, failed)
}

#[test]
fn http2_upstream_chaos_one_stream_per_connection() {
    let (proper, failed) = run_h2_chaos(1);
    assert!(
        proper > 200 && failed > 60,
        "proper {proper}, failed {failed}"
    );
}

#[test]
fn http2_upstream_chaos_multiplexed_never_crosses_answers() {
    let (proper, failed) = run_h2_chaos(100);
    assert!(
        proper > 150 && failed > 40,
        "proper {proper}, failed {failed}"
    );
}
