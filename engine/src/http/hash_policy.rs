//! A request's hash for the hashing load balancers (`ring_hash`, `maglev`): the route's
//! `hash_policy` entries in order, each hashing one value of the request with xxHash64 (seed
//! 0) — a header, a cookie, the client's IP, a query parameter — combined as Envoy does
//! (the running hash rotated left by one bit, then xored with the next), stopping after an entry
//! marked `terminal` that produced a hash. No entry producing a hash means no hash: the
//! balancer then picks at random.
//!
//! A `cookie` entry with a `ttl` whose cookie is absent generates one (the hex of the hash of
//! the client's address, as Envoy), hashes it, and returns the `Set-Cookie` value the router
//! adds to the response, so the client's next requests carry it and stay on the same host.
//!
//! Runs only for routes whose cluster hashes; no allocation unless a cookie is generated.

use std::net::SocketAddr;

use ringway_filters::RequestHead;

use crate::{
    config::{HashKind, HashPolicy},
    upstream::hash::xxhash64,
};

/// The request's hash under `policies`, and a generated cookie's `Set-Cookie` value.
pub(crate) fn request_hash(
    policies: &[HashPolicy],
    req: &RequestHead,
    peer: SocketAddr,
) -> (Option<u64>, Option<Vec<u8>>) {
    let mut hash: Option<u64> = None;
    let mut set_cookie = None;
    for p in policies {
        let h = match &p.kind {
            HashKind::Header(name) => req.headers.get_bytes(name).map(|v| xxhash64(v, 0)),
            HashKind::Cookie { name, ttl, path } => match cookie(req, name.as_bytes()) {
                Some(v) => Some(xxhash64(v, 0)),
                None => ttl.map(|ttl| {
                    let value = format!("{:016x}", xxhash64(peer.to_string().as_bytes(), 0));
                    let mut c = format!("{name}=\"{value}\"; Max-Age={}", ttl.as_secs());
                    if let Some(path) = path {
                        c.push_str("; Path=");
                        c.push_str(path);
                    }
                    c.push_str("; HttpOnly");
                    set_cookie = Some(c.into_bytes());
                    xxhash64(value.as_bytes(), 0)
                }),
            },
            HashKind::SourceIp => Some(match peer.ip() {
                std::net::IpAddr::V4(a) => xxhash64(a.to_string().as_bytes(), 0),
                std::net::IpAddr::V6(a) => xxhash64(a.to_string().as_bytes(), 0),
            }),
            HashKind::QueryParameter(name) => {
                query_param(req.path(), name.as_bytes()).map(|v| xxhash64(v, 0))
            }
        };
        if let Some(h) = h {
            hash = Some(match hash {
                None => h,
                Some(prev) => prev.rotate_left(1) ^ h,
            });
            if p.terminal {
                break;
            }
        }
    }
    (hash, set_cookie)
}

/// The value of cookie `name` in the request's `Cookie` headers (quotes removed).
fn cookie<'a>(req: &'a RequestHead, name: &[u8]) -> Option<&'a [u8]> {
    for line in req.headers.get_all("cookie") {
        for pair in line.split(|&b| b == b';') {
            let pair = pair.trim_ascii();
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            if &pair[..eq] == name {
                let v = &pair[eq + 1..];
                let v = v
                    .strip_prefix(b"\"")
                    .and_then(|v| v.strip_suffix(b"\""))
                    .unwrap_or(v);
                return Some(v);
            }
        }
    }
    None
}

/// The raw value of query parameter `name` in `path` (first occurrence; not percent-decoded,
/// as Envoy).
fn query_param<'a>(path: &'a [u8], name: &[u8]) -> Option<&'a [u8]> {
    let q = path.iter().position(|&b| b == b'?')?;
    let query = &path[q + 1..];
    let query = query.split(|&b| b == b'#').next().unwrap_or(query);
    for pair in query.split(|&b| b == b'&') {
        let (k, v) = match pair.iter().position(|&b| b == b'=') {
            Some(eq) => (&pair[..eq], &pair[eq + 1..]),
            None => (pair, &b""[..]),
        };
        if k == name {
            return Some(v);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(path: &str, headers: &[(&str, &str)]) -> RequestHead {
        let mut r = RequestHead::new(b"GET", "http", b"h", path.as_bytes());
        for (n, v) in headers {
            r.headers.append(n, v);
        }
        r
    }

    fn peer() -> SocketAddr {
        "10.1.2.3:5555".parse().expect("addr")
    }

    fn pol(kind: HashKind, terminal: bool) -> HashPolicy {
        HashPolicy { kind, terminal }
    }

    #[test]
    fn header_query_and_source_ip_hash_their_values() {
        let r = req("/a?x=1&user=bob&y", &[("x-user", "alice")]);
        let h = |k| request_hash(&[pol(k, false)], &r, peer()).0;
        assert_eq!(
            h(HashKind::Header("x-user".into())),
            Some(xxhash64(b"alice", 0))
        );
        assert_eq!(h(HashKind::Header("x-none".into())), None);
        assert_eq!(
            h(HashKind::QueryParameter("user".into())),
            Some(xxhash64(b"bob", 0))
        );
        assert_eq!(
            h(HashKind::QueryParameter("y".into())),
            Some(xxhash64(b"", 0))
        );
        assert_eq!(h(HashKind::QueryParameter("z".into())), None);
        assert_eq!(h(HashKind::SourceIp), Some(xxhash64(b"10.1.2.3", 0)));
    }

    #[test]
    fn entries_combine_and_terminal_stops() {
        let r = req("/?q=1", &[("a", "1"), ("b", "2")]);
        let a = pol(HashKind::Header("a".into()), false);
        let b = pol(HashKind::Header("b".into()), false);
        let (ha, hb) = (xxhash64(b"1", 0), xxhash64(b"2", 0));
        let both = request_hash(&[a.clone(), b.clone()], &r, peer()).0;
        assert_eq!(both, Some(ha.rotate_left(1) ^ hb));
        let term = request_hash(
            &[pol(HashKind::Header("a".into()), true), b.clone()],
            &r,
            peer(),
        )
        .0;
        assert_eq!(term, Some(ha));
        // A terminal entry that produced nothing does not stop the walk.
        let missing = pol(HashKind::Header("none".into()), true);
        assert_eq!(request_hash(&[missing, b], &r, peer()).0, Some(hb));
    }

    #[test]
    fn cookies_are_read_or_generated() {
        let r = req("/", &[("cookie", "a=1; sticky=\"abc\"; b=2")]);
        let kind = |ttl| HashKind::Cookie {
            name: "sticky".into(),
            ttl,
            path: Some("/".into()),
        };
        let (h, set) = request_hash(&[pol(kind(None), false)], &r, peer());
        assert_eq!((h, set), (Some(xxhash64(b"abc", 0)), None));
        let bare = req("/", &[]);
        assert_eq!(
            request_hash(&[pol(kind(None), false)], &bare, peer()),
            (None, None)
        );
        let ttl = Some(std::time::Duration::from_secs(60));
        let (h, set) = request_hash(&[pol(kind(ttl), false)], &bare, peer());
        let set = String::from_utf8(set.expect("generated")).expect("utf8");
        let value = format!("{:016x}", xxhash64(b"10.1.2.3:5555", 0));
        assert_eq!(
            set,
            format!("sticky=\"{value}\"; Max-Age=60; Path=/; HttpOnly")
        );
        assert_eq!(h, Some(xxhash64(value.as_bytes(), 0)));
        // The client sends it back: the same hash.
        let back = req("/", &[("cookie", &format!("sticky=\"{value}\""))]);
        assert_eq!(request_hash(&[pol(kind(ttl), false)], &back, peer()).0, h);
    }
}
