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
use crate::support;
use std::{net::SocketAddr, thread, time::Duration};

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

/// Answer one request as `act` says; `false`: the origin closes the connection afterwards.
fn answer(c: &mut OriginConn, id: u64, act: Act) -> bool {
    let body = format!("id={id}");
    let ok = |extra: &str| {
        format!(
            "HTTP/1.1 200 OK\r\nx-id: {id}\r\ncontent-length: {}\r\n{extra}\r\n{body}",
            body.len()
        )
    };
    match act {
        Act::Length => c.write(ok("").as_bytes()),
        Act::Chunked => c.write(
            format!(
                "HTTP/1.1 200 OK\r\nx-id: {id}\r\ntransfer-encoding: chunked\r\n\r\n\
                 3\r\nid=\r\n{:x}\r\n{}\r\n0\r\n\r\n",
                body.len() - 3,
                &body[3..]
            )
            .as_bytes(),
        ),
        Act::Continue100 => c.write(format!("HTTP/1.1 100 Continue\r\n\r\n{}", ok("")).as_bytes()),
        Act::CloseDelimited => {
            c.write(
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\nconnection: close\r\n\r\n{body}")
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
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\nbroken header line\r\n\r\n").as_bytes(),
            );
            false
        }
        Act::BothFramings => {
            c.write(
                format!(
                    "HTTP/1.1 200 OK\r\nx-id: {id}\r\ncontent-length: {}\r\n\
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
                    "HTTP/1.1 200 OK\r\nx-id: {id}\r\ncontent-length: {}\r\ncontent-length: {}\r\n\r\n{body}",
                    body.len(),
                    body.len() + 1
                )
                .as_bytes(),
            );
            false
        }
        Act::Truncated => {
            c.write(
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\ncontent-length: 100\r\n\r\n{body}")
                    .as_bytes(),
            );
            false
        }
        Act::BadChunk => {
            c.write(
                format!("HTTP/1.1 200 OK\r\nx-id: {id}\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{body}\r\n")
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
            if !answer(&mut c, id, act) {
                return;
            }
        }
    })
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

/// What one client saw: (act, id, what came back) for every request.
type Outcomes = Vec<(Act, u64, Option<RawMessage>)>;

fn client(proxy: SocketAddr, seed: u64, first_id: u64, n: u64) -> Outcomes {
    let mut rng = Rng(seed);
    let mut c = Client::connect(proxy);
    let mut out = Vec::new();
    for id in first_id..first_id + n {
        let i = DRAW[rng.below(DRAW.len())];
        let req = format!(
            "GET /chaos/{id} HTTP/1.1\r\nhost: chaos.test\r\nx-id: {id}\r\nx-act: {i}\r\n\r\n"
        );
        c.send(req.as_bytes());
        let r = c.try_response(false);
        let closes = r.as_ref().is_none_or(|r| {
            r.header("connection")
                .is_some_and(|v| v.eq_ignore_ascii_case("close"))
        });
        out.push((ACTS[i], id, r));
        if closes {
            c = Client::connect(proxy);
        }
    }
    out
}

#[test]
fn upstream_chaos_never_crosses_responses_between_requests() {
    let origin = chaos_origin();
    let proxy = Proxy::start(&ConfigBuilder::simple(origin.addr).top("workers: 1").yaml());
    let clients: Vec<_> = (0..4u64)
        .map(|k| {
            let addr = proxy.addr;
            thread::spawn(move || client(addr, 0x9e37_79b9_7f4a_7c15 ^ (k + 1), k * 10_000, 150))
        })
        .collect();
    let mut proper = 0;
    let mut refused = 0;
    let mut closed = 0;
    for h in clients {
        for (act, id, r) in h.join().expect("client thread") {
            let Some(r) = r else {
                // The client connection closed before a whole response: only for a bad answer.
                assert!(
                    !act.proper(),
                    "{act:?} #{id}: no whole response\n{}",
                    proxy.log()
                );
                closed += 1;
                continue;
            };
            // The status line first, nothing before it (bytes left over from another answer).
            assert!(r.start.starts_with("HTTP/1.1 "), "{act:?} #{id}: {r:?}");
            assert_ne!(r.header("x-id"), Some("forged"), "{act:?} #{id}: {r:?}");
            if (200..300).contains(&r.status()) {
                assert_eq!(
                    r.header("x-id"),
                    Some(id.to_string().as_str()),
                    "{act:?} #{id}: {r:?}"
                );
                let want = if r.status() == 204 {
                    String::new()
                } else {
                    format!("id={id}")
                };
                assert_eq!(r.body_str(), want, "{act:?} #{id}: {r:?}");
                assert_eq!(
                    r.status() == 204,
                    act == Act::BodyOn204,
                    "{act:?} #{id}: {r:?}"
                );
                proper += 1;
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
                refused += 1;
            }
        }
    }
    // Every proper answer arrived whole; every kind of bad one was met.
    assert!(
        proper > 300 && refused > 60 && proper + refused + closed == 600,
        "proper {proper}, refused {refused}, closed {closed}"
    );
    // Upstream connections were reused across requests (and clients).
    assert!(
        origin.connection_count() < 450,
        "{}",
        origin.connection_count()
    );
    let r = Client::connect(proxy.addr)
        .roundtrip(b"GET /after HTTP/1.1\r\nhost: chaos.test\r\nx-id: 1\r\nx-act: 0\r\n\r\n");
    assert_eq!((r.status(), r.body_str().as_str()), (200, "id=1"), "{r:?}");
    assert!(!proxy.log().contains("panicked"), "{}", proxy.log());
}
