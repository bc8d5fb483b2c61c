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

/// A small deterministic generator (xorshift), one per client.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
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
        let i = DRAW[rng.below(DRAW.len())];
        let (path, target, extra) = match setup.cached_paths {
            0 if setup.gzip => (None, format!("/long/{id}"), "accept-encoding: gzip\r\n"),
            0 => (None, format!("/chaos/{id}"), ""),
            m => {
                let k = rng.below(m as usize) as u64;
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
        c.send(req.as_bytes());
        let r = c.try_response(false);
        let closes = r.as_ref().is_none_or(|r| {
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        });
        out.push(Outcome {
            act: ACTS[i],
            id,
            path,
            r,
        });
        if closes {
            c = Client::connect(proxy);
        }
    }
    out
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
