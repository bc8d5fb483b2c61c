//! DNS service discovery for `type: strict_dns | logical_dns` clusters, off the workers.
//!
//! The control side resolves every DNS cluster's names before the first generation of workers
//! starts ([`Dns::resolve_all`]) and hands the workers a config whose endpoints are the
//! addresses found ([`Dns::apply`]). A `ringway-dns` thread then resolves each cluster again
//! every `dns_refresh_rate` (or when the answers' TTL runs out, with `respect_dns_ttl`); when a
//! cluster's set of addresses changes it raises SIGUSR2, and the control thread starts a new
//! generation of workers with the new endpoints on the same sockets, as a reload does (the
//! workers never look anything up and hold no lock). A failed lookup keeps the last good set.
//! `cluster.<name>.update_attempt / update_success / update_failure` count the lookups.
//!
//! Names are resolved with the system's resolver (`getaddrinfo`: `/etc/hosts`, search domains)
//! or, with `dns_resolvers`, by asking those servers directly over UDP (A and AAAA queries, the
//! answers' TTLs).
//!
//! Control side only.

use std::{
    collections::BTreeMap,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs, UdpSocket},
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use crate::config::{Config, DnsCluster, DnsFamily, Endpoint};

/// One query's wait for an answer from one server.
const QUERY_TIMEOUT: Duration = Duration::from_secs(2);

/// A cluster's lookup counters.
#[derive(Debug, Default)]
pub struct DnsStats {
    pub attempt: AtomicU64,
    pub success: AtomicU64,
    pub failure: AtomicU64,
}

/// What the control side knows of every DNS cluster, by cluster name.
#[derive(Debug, Default)]
pub struct Dns {
    /// The last good addresses of each cluster's names (one list per `hosts` entry).
    resolved: Mutex<BTreeMap<String, Vec<Vec<SocketAddr>>>>,
    pub stats: Mutex<BTreeMap<String, Arc<DnsStats>>>,
    /// The DNS clusters of the config in force (the thread reads it each round).
    clusters: Mutex<Vec<(String, Arc<DnsCluster>)>>,
}

impl Dns {
    /// Take the DNS clusters of `cfg` (at start and after each reload).
    pub fn configure(&self, cfg: &Config) {
        let list: Vec<(String, Arc<DnsCluster>)> = cfg
            .clusters
            .iter()
            .filter_map(|c| c.dns.as_ref().map(|d| (c.name.clone(), Arc::clone(d))))
            .collect();
        let mut stats = self.stats.lock().unwrap_or_else(|p| p.into_inner());
        for (name, _) in &list {
            stats.entry(name.clone()).or_default();
        }
        *self.clusters.lock().unwrap_or_else(|p| p.into_inner()) = list;
    }

    /// Whether the config has any DNS cluster.
    pub fn any(&self) -> bool {
        !self
            .clusters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Resolve every DNS cluster that has no answer yet (at start, and for clusters a reload
    /// added). Returns the earliest time a cluster is due again.
    pub fn resolve_all(&self) {
        let list = self
            .clusters
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        for (name, d) in list {
            let known = self
                .resolved
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .contains_key(&name);
            if !known {
                self.refresh(&name, &d);
            }
        }
    }

    /// Resolve one cluster's names; `true` if its addresses changed. A name that fails keeps
    /// its last good addresses.
    fn refresh(&self, name: &str, d: &DnsCluster) -> (bool, Option<Duration>) {
        let stats = Arc::clone(
            self.stats
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(name.to_string())
                .or_default(),
        );
        let before = self
            .resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .cloned();
        let mut now = Vec::with_capacity(d.hosts.len());
        let mut min_ttl: Option<u32> = None;
        for (i, h) in d.hosts.iter().enumerate() {
            stats.attempt.fetch_add(1, Relaxed);
            match resolve(&h.host, h.port, d.family, &d.resolvers) {
                Ok((mut addrs, ttl)) => {
                    stats.success.fetch_add(1, Relaxed);
                    addrs.sort();
                    addrs.dedup();
                    if d.logical {
                        addrs.truncate(1);
                    }
                    if let Some(t) = ttl {
                        min_ttl = Some(min_ttl.map_or(t, |m| m.min(t)));
                    }
                    now.push(addrs);
                }
                Err(e) => {
                    stats.failure.fetch_add(1, Relaxed);
                    tracing::warn!(cluster = name, host = %h.host, error = %e, "DNS lookup failed: keeping the last addresses");
                    now.push(
                        before
                            .as_ref()
                            .and_then(|b| b.get(i).cloned())
                            .unwrap_or_default(),
                    );
                }
            }
        }
        let changed = before.as_ref() != Some(&now);
        if changed {
            tracing::info!(cluster = name, addresses = ?now, "DNS: endpoints changed");
        }
        self.resolved
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.to_string(), now);
        let ttl = min_ttl.map(|t| Duration::from_secs(u64::from(t.max(1))));
        (changed, ttl)
    }

    /// `cfg` with every DNS cluster's endpoints set to what its names resolved to.
    pub fn apply(&self, cfg: &Config) -> Config {
        let resolved = self.resolved.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = cfg.clone();
        for c in &mut out.clusters {
            let Some(d) = &c.dns else { continue };
            let lists = resolved.get(&c.name);
            c.endpoints = d
                .hosts
                .iter()
                .enumerate()
                .flat_map(|(i, h)| {
                    lists
                        .and_then(|l| l.get(i))
                        .into_iter()
                        .flatten()
                        .map(move |&address| Endpoint {
                            address,
                            weight: h.weight,
                            priority: h.priority,
                        })
                })
                .collect();
        }
        out
    }

    /// Start the `ringway-dns` thread: each cluster resolved again when due; `changed` runs
    /// (on that thread) when some cluster's addresses changed.
    pub fn start(self: &Arc<Self>, changed: impl Fn() + Send + 'static) -> io::Result<()> {
        let dns = Arc::clone(self);
        crate::background::spawn_background("ringway-dns", move || {
            let mut due: BTreeMap<String, Instant> = BTreeMap::new();
            loop {
                let list = dns
                    .clusters
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let now = Instant::now();
                let mut any = false;
                let mut next = now + Duration::from_secs(1);
                for (name, d) in &list {
                    let at = *due.entry(name.clone()).or_insert(now + d.refresh);
                    if at <= now {
                        let (changed, ttl) = dns.refresh(name, d);
                        any |= changed;
                        let wait = match (d.respect_ttl, ttl) {
                            (true, Some(t)) => t,
                            _ => d.refresh,
                        };
                        due.insert(name.clone(), now + wait);
                    }
                    next = next.min(due[name]);
                }
                if any {
                    changed();
                }
                std::thread::sleep(
                    next.saturating_duration_since(Instant::now())
                        .max(Duration::from_millis(1)),
                );
            }
        })?;
        Ok(())
    }
}

/// Resolve `host` to addresses with `port`: by the system's resolver, or by asking `servers`.
/// The TTL is known only from a server's answer.
pub fn resolve(
    host: &str,
    port: u16,
    family: DnsFamily,
    servers: &[SocketAddr],
) -> io::Result<(Vec<SocketAddr>, Option<u32>)> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return Ok((vec![SocketAddr::new(ip, port)], None));
    }
    let (v4, v6, ttl) = if servers.is_empty() {
        let all: Vec<SocketAddr> = (host, port).to_socket_addrs()?.collect();
        let (v4, v6): (Vec<SocketAddr>, Vec<SocketAddr>) =
            all.into_iter().partition(|a| a.is_ipv4());
        (v4, v6, None)
    } else {
        let want4 = family != DnsFamily::V6Only;
        let want6 = family != DnsFamily::V4Only;
        let (v4, t4) = if want4 {
            query_any(servers, host, QTYPE_A)?
        } else {
            (Vec::new(), None)
        };
        let (v6, t6) = if want6 {
            query_any(servers, host, QTYPE_AAAA)?
        } else {
            (Vec::new(), None)
        };
        let with = |ips: Vec<IpAddr>| {
            ips.into_iter()
                .map(|ip| SocketAddr::new(ip, port))
                .collect::<Vec<_>>()
        };
        let ttl = match (t4, t6) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        (with(v4), with(v6), ttl)
    };
    let picked = match family {
        DnsFamily::Auto if !v6.is_empty() => v6,
        DnsFamily::Auto => v4,
        DnsFamily::V4Only => v4,
        DnsFamily::V6Only => v6,
        DnsFamily::V4Preferred if !v4.is_empty() => v4,
        DnsFamily::V4Preferred => v6,
        DnsFamily::All => v4.into_iter().chain(v6).collect(),
    };
    Ok((picked, ttl))
}

const QTYPE_A: u16 = 1;
const QTYPE_AAAA: u16 = 28;

/// Ask each server in turn until one answers: the addresses of type `qtype` and their
/// smallest TTL. A name that does not exist (NXDOMAIN) or has no such record is an empty
/// answer, not an error.
fn query_any(
    servers: &[SocketAddr],
    host: &str,
    qtype: u16,
) -> io::Result<(Vec<IpAddr>, Option<u32>)> {
    let mut last = io::Error::new(io::ErrorKind::NotFound, "no DNS server");
    for s in servers {
        match query(*s, host, qtype) {
            Ok(r) => return Ok(r),
            Err(e) => last = e,
        }
    }
    Err(last)
}

fn query(server: SocketAddr, host: &str, qtype: u16) -> io::Result<(Vec<IpAddr>, Option<u32>)> {
    let bind: SocketAddr = if server.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(bind)?;
    sock.connect(server)?;
    sock.set_read_timeout(Some(QUERY_TIMEOUT))?;
    // Unpredictable enough that an off-path answer cannot guess it (the source port is random
    // too): the clock's nanoseconds mixed with the process id.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let id = (nanos as u16) ^ ((nanos >> 16) as u16) ^ (std::process::id() as u16) ^ qtype;
    let msg = encode_query(id, host, qtype)?;
    sock.send(&msg)?;
    let mut buf = [0u8; 1500];
    let until = Instant::now() + QUERY_TIMEOUT;
    loop {
        match sock.recv(&mut buf) {
            Ok(n) => {
                if let Some(r) = decode_answer(&buf[..n], id, qtype)? {
                    return Ok(r);
                }
            }
            // A signal to this thread (the process's own reload and DNS signals) is not a
            // failed lookup: wait on for the answer.
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(io::ErrorKind::TimedOut, "no DNS answer"));
        }
        sock.set_read_timeout(Some(left))?;
    }
}

/// A standard query with recursion desired.
fn encode_query(id: u16, host: &str, qtype: u16) -> io::Result<Vec<u8>> {
    let mut m = Vec::with_capacity(32 + host.len());
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in host.trim_end_matches('.').split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "bad host name"));
        }
        m.push(label.len() as u8);
        m.extend_from_slice(label.as_bytes());
    }
    m.push(0);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    Ok(m)
}

/// Skip a (possibly compressed) name at `i`; the index after it.
fn skip_name(b: &[u8], mut i: usize) -> Option<usize> {
    loop {
        let len = *b.get(i)? as usize;
        if len == 0 {
            return Some(i + 1);
        }
        if len & 0xC0 == 0xC0 {
            return Some(i + 2);
        }
        i += 1 + len;
    }
}

/// The answer to query `id`: `None` if the message is another one's (ignored). An error code
/// other than NXDOMAIN is an error.
fn decode_answer(b: &[u8], id: u16, qtype: u16) -> io::Result<Option<(Vec<IpAddr>, Option<u32>)>> {
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "malformed DNS answer");
    if b.len() < 12 || u16::from_be_bytes([b[0], b[1]]) != id || b[2] & 0x80 == 0 {
        return Ok(None);
    }
    match b[3] & 0x0F {
        0 => {}
        3 => return Ok(Some((Vec::new(), None))),
        rcode => {
            return Err(io::Error::other(format!(
                "DNS server answered with error code {rcode}"
            )))
        }
    }
    let qd = u16::from_be_bytes([b[4], b[5]]) as usize;
    let an = u16::from_be_bytes([b[6], b[7]]) as usize;
    let mut i = 12;
    for _ in 0..qd {
        i = skip_name(b, i).ok_or_else(bad)? + 4;
    }
    let mut out = Vec::new();
    let mut ttl: Option<u32> = None;
    for _ in 0..an {
        i = skip_name(b, i).ok_or_else(bad)?;
        let h = b.get(i..i + 10).ok_or_else(bad)?;
        let rtype = u16::from_be_bytes([h[0], h[1]]);
        let rttl = u32::from_be_bytes([h[4], h[5], h[6], h[7]]);
        let len = u16::from_be_bytes([h[8], h[9]]) as usize;
        let data = b.get(i + 10..i + 10 + len).ok_or_else(bad)?;
        i += 10 + len;
        let ip = match (rtype, len) {
            (QTYPE_A, 4) if rtype == qtype => IpAddr::from([data[0], data[1], data[2], data[3]]),
            (QTYPE_AAAA, 16) if rtype == qtype => {
                let mut a = [0u8; 16];
                a.copy_from_slice(data);
                IpAddr::from(a)
            }
            _ => continue,
        };
        ttl = Some(ttl.map_or(rttl, |t| t.min(rttl)));
        out.push(ip);
    }
    Ok(Some((out, ttl)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_and_an_answer_with_a_compressed_name() {
        let q = encode_query(0x1234, "svc.test", QTYPE_A).unwrap();
        assert_eq!(&q[..2], &[0x12, 0x34]);
        assert_eq!(&q[12..], b"\x03svc\x04test\x00\x00\x01\x00\x01");
        // The answer: the question echoed, two A records pointing back at it, TTLs 30 and 10.
        let mut a = q.clone();
        a[2] = 0x81;
        a[3] = 0x80;
        a[7] = 2;
        for (ip, ttl) in [([127, 0, 0, 1], 30u32), ([127, 0, 0, 2], 10)] {
            a.extend_from_slice(&[0xC0, 12, 0, 1, 0, 1]);
            a.extend_from_slice(&ttl.to_be_bytes());
            a.extend_from_slice(&[0, 4]);
            a.extend_from_slice(&ip);
        }
        let (ips, ttl) = decode_answer(&a, 0x1234, QTYPE_A).unwrap().unwrap();
        assert_eq!(
            ips,
            vec![IpAddr::from([127, 0, 0, 1]), IpAddr::from([127, 0, 0, 2])]
        );
        assert_eq!(ttl, Some(10));
        // Another query's answer is ignored; NXDOMAIN is an empty answer; SERVFAIL an error.
        assert!(decode_answer(&a, 0x9999, QTYPE_A).unwrap().is_none());
        a[3] = 0x83;
        assert_eq!(
            decode_answer(&a, 0x1234, QTYPE_A).unwrap(),
            Some((Vec::new(), None))
        );
        a[3] = 0x82;
        assert!(decode_answer(&a, 0x1234, QTYPE_A).is_err());
        // Truncated: an error, not a panic.
        a[3] = 0x80;
        assert!(decode_answer(&a[..a.len() - 3], 0x1234, QTYPE_A).is_err());
    }

    #[test]
    fn ip_literals_need_no_lookup() {
        let (a, ttl) = resolve("127.0.0.1", 80, DnsFamily::Auto, &[]).unwrap();
        assert_eq!(a, vec!["127.0.0.1:80".parse().unwrap()]);
        assert_eq!(ttl, None);
    }
}
