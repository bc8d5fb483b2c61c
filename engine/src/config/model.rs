//! The validated configuration: what `config::load` produces and what every worker builds its
//! local views from. Immutable after load; shared across threads as `Arc<Config>`.
//!
//! API CONTRACT: the runtime, listeners, connection manager and upstream code use exactly these
//! names. Add fields freely; do not rename.

use std::{net::SocketAddr, time::Duration};

use bytes::Bytes;

/// The whole validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// `None` = `auto` (one worker per online CPU, or per CPU of an explicit `cpu_affinity`).
    pub workers: Option<usize>,
    /// Where worker threads run (default [`CpuAffinity::Auto`]).
    pub cpu_affinity: CpuAffinity,
    /// How long shutdown waits for in-flight requests (default 5s).
    pub drain_timeout: Duration,
    /// How long a keep-alive connection waits between requests before it is parked (default
    /// 2s; zero: never).
    pub park_idle_after: Duration,
    /// Reload when the file changes (default false).
    pub watch: bool,
    /// Which I/O driver the workers run on (default [`IoDriverMode::Auto`]); read at start only.
    pub io_driver: IoDriverMode,
    pub listeners: Vec<Listener>,
    /// Index in this Vec is the `ClusterId` used by routes.
    pub clusters: Vec<Cluster>,
    /// Where it came from (path), for messages.
    pub source: String,
    /// How often workers ship histograms to the stats aggregator (default 5s).
    pub stats_flush_interval: Duration,
    /// The admin server, if configured.
    pub admin: Option<Admin>,
    /// The document as parsed (before defaults), for the admin `/config_dump`.
    pub document: Option<std::sync::Arc<serde_json::Value>>,
    /// `document` with every default `validate()` applied written in (`config::dump`).
    pub effective: Option<std::sync::Arc<serde_json::Value>>,
    /// Distributed tracing, if configured.
    pub tracing: Option<Tracing>,
    /// The file's own document (before a control plane's resources were composed in).
    pub file_document: Option<std::sync::Arc<serde_json::Value>>,
    /// What the composition left out, waiting for resources from the control plane.
    pub warming: super::compose::Warming,
    /// The listeners and clusters that came from the control plane.
    pub added_via_api: super::compose::Added,
    /// How this proxy names itself to a control plane.
    pub node: Node,
    /// The xDS control plane, if configured.
    pub xds: Option<Xds>,
}

/// `node`: the id and cluster sent to a control plane.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Node {
    pub id: String,
    pub cluster: String,
}

/// `xds`: where listeners, routes, clusters and endpoints come from besides the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Xds {
    /// The control plane's cluster (an index into `Config::clusters`).
    pub cluster: ClusterId,
    /// The control plane's cluster by name.
    pub cluster_name: String,
    /// Incremental (`DELTA_GRPC`) rather than state of the world (`GRPC`).
    pub delta: bool,
    /// Listeners (LDS, and RDS for their routes) from the control plane.
    pub lds: bool,
    /// Clusters (CDS, and EDS for their endpoints) from the control plane.
    pub cds: bool,
    /// How long the start waits for the first config.
    pub initial_fetch_timeout: Duration,
}

/// `io_driver`: the kernel interface every worker's runtime uses for socket I/O.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum IoDriverMode {
    /// io_uring; refuse to start where a ring cannot be set up.
    IoUring,
    /// epoll (readiness, one syscall per read and write): for where io_uring is refused.
    Epoll,
    /// io_uring when a ring can be set up, otherwise epoll with one warning at start.
    #[default]
    Auto,
}

impl IoDriverMode {
    /// The config and flag spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            IoDriverMode::IoUring => "io_uring",
            IoDriverMode::Epoll => "epoll",
            IoDriverMode::Auto => "auto",
        }
    }
}

impl std::str::FromStr for IoDriverMode {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "io_uring" | "io-uring" | "iouring" => Ok(IoDriverMode::IoUring),
            "epoll" => Ok(IoDriverMode::Epoll),
            "auto" => Ok(IoDriverMode::Auto),
            other => Err(format!(
                "unknown I/O driver {other:?}: expected io_uring, epoll or auto"
            )),
        }
    }
}

/// Where worker threads run (`cpu_affinity`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CpuAffinity {
    /// Worker *i* pinned to the *i*-th CPU the process may run on (round-robin).
    #[default]
    Auto,
    /// Not pinned: workers may run on any CPU the process may use; the scheduler places them.
    None,
    /// Worker *i* pinned to `cpus[i % cpus.len()]`; never empty, every id one the process may
    /// run on (checked at load).
    Cpus(Vec<usize>),
}

/// The top-level `tracing` section: how spans are sampled and where they go.
#[derive(Debug, Clone)]
pub struct Tracing {
    /// Fraction of new traces sampled (0..=1); connection managers may override it.
    pub sample_rate: f64,
    pub format: TraceFormat,
    /// The cluster whose endpoints receive the export requests.
    pub collector_cluster: ClusterId,
    /// Request path of export requests.
    pub collector_path: String,
    /// `Host` header of export requests.
    pub collector_host: String,
    /// Time allowed for one export request, connect included.
    pub collector_timeout: Duration,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Spans are exported at least this often.
    pub flush_interval: Duration,
    /// Most spans in one export request.
    pub max_batch: usize,
}

/// How spans are encoded for the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TraceFormat {
    /// OTLP/HTTP with the JSON encoding (`POST /v1/traces`).
    OtlpJson,
    /// Zipkin v2 JSON (`POST /api/v2/spans`).
    ZipkinJson,
}

/// The admin HTTP server.
#[derive(Debug, Clone)]
pub struct Admin {
    pub address: SocketAddr,
}

pub type ClusterId = usize;

#[derive(Debug, Clone)]
pub struct Listener {
    pub name: String,
    pub address: SocketAddr,
    /// Accept backlog (default 1024).
    pub backlog: u32,
    /// `TCP_DEFER_ACCEPT` on the listening sockets: accepted once the client's first bytes are
    /// in (`defer_accept`).
    pub defer_accept: bool,
    /// Hand each new connection to the least loaded worker (`connection_balance: exact`, the
    /// default) instead of serving it where SO_REUSEPORT hashed it (`kernel`).
    pub exact_balance: bool,
    /// The terminal network filter of the first filter chain (of `default_filter_chain` when
    /// `filter_chains` is empty): what a listener without chain matching runs, and whose
    /// `stat_prefix` names the listener's `http.`/`tcp.` stats.
    pub network: NetworkFilter,
    /// Listener filters and chain matching; `None` for a listener with one chain, no
    /// `filter_chain_match`, no default chain and no listener filters (it runs `network` on
    /// every connection, with no per-connection work before it).
    pub select: Option<Box<ChainSelect>>,
}

/// A listener's listener filters and filter chains, ready to match (`listener::select`).
#[derive(Debug, Clone)]
pub struct ChainSelect {
    /// Read a PROXY protocol header first (`proxy_protocol`).
    pub proxy_protocol: bool,
    /// `allow_requests_without_proxy_protocol`: a connection whose first bytes are not a PROXY
    /// signature is served as is, with its socket's addresses (otherwise it is closed).
    pub allow_without_proxy_protocol: bool,
    /// Peek at the TLS ClientHello (`tls_inspector`).
    pub tls_inspector: bool,
    /// `listener_filters_timeout` (`None`: `0s`, no limit).
    pub timeout: Option<Duration>,
    /// `continue_on_listener_filters_timeout`: at the timeout, a connection still waiting for a
    /// ClientHello is matched as `raw_buffer` (one still inside a PROXY header is closed).
    pub continue_on_timeout: bool,
    /// `filter_chains`, in config order (at most [`super::defaults::MAX_FILTER_CHAINS`]).
    pub chains: Vec<FilterChain>,
    /// `default_filter_chain`.
    pub default: Option<NetworkFilter>,
    /// The listener's `access_log`: one line per connection closed before a chain served it.
    pub access_log: Vec<AccessLog>,
}

/// One filter chain: its match and its terminal network filter.
#[derive(Debug, Clone)]
pub struct FilterChain {
    pub matcher: ChainMatch,
    pub network: NetworkFilter,
}

/// A `filter_chain_match`, normalised (names lower-cased, lists sorted and deduplicated, so
/// two equal matches compare equal). Empty criteria match anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainMatch {
    pub destination_port: Option<u16>,
    /// Destination address ranges.
    pub prefix_ranges: Vec<Cidr>,
    /// Exact names and `*.suffix` wildcards, lower-case.
    pub server_names: Vec<String>,
    pub transport_protocol: Option<TransportProtocol>,
    pub application_protocols: Vec<String>,
    /// `source_type`; `Any` matches every connection (as if unset).
    pub source_type: SourceType,
    pub source_prefix_ranges: Vec<Cidr>,
    pub source_ports: Vec<u16>,
}

impl ChainMatch {
    /// Whether matching needs the connection's destination address.
    pub fn needs_destination_ip(&self) -> bool {
        !self.prefix_ranges.is_empty() || self.source_type != SourceType::Any
    }
}

/// `source_type` (Envoy's `ConnectionSourceType`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SourceType {
    /// Any client.
    #[default]
    Any,
    /// A client on a loopback address, or on the address it connected to.
    SameIpOrLoopback,
    /// Any other client.
    External,
}

/// `transport_protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TransportProtocol {
    /// The connection starts with a TLS ClientHello (`tls_inspector` saw one).
    Tls,
    /// Anything else (or no `tls_inspector`).
    RawBuffer,
}

/// An address range (`source_prefix_ranges`): the address with bits past `len` cleared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Cidr {
    pub addr: std::net::IpAddr,
    pub len: u8,
}

impl Cidr {
    /// Whether `ip` is in the range (an IPv4 range also holds IPv4-mapped IPv6 addresses).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                u32::from(a) & mask == u32::from(net)
            }
            (IpAddr::V6(net), IpAddr::V6(a)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                u128::from(a) & mask == u128::from(net)
            }
            _ => false,
        }
    }
}

/// What a listener's connections run: the terminal network filter of its chain.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// `http_connection_manager`: HTTP/1.1, routes, HTTP filters.
    Http(HttpConnManager),
    /// `tcp_proxy`: raw bytes to an endpoint of one cluster.
    TcpProxy(TcpProxy),
}

impl NetworkFilter {
    /// The TLS its chain terminates, if any.
    pub fn tls(&self) -> Option<&std::sync::Arc<DownstreamTls>> {
        match self {
            NetworkFilter::Http(h) => h.tls.as_ref(),
            NetworkFilter::TcpProxy(t) => t.tls.as_ref(),
        }
    }
}

impl Listener {
    /// The HTTP connection manager, when the listener runs one.
    pub fn http(&self) -> Option<&HttpConnManager> {
        match &self.network {
            NetworkFilter::Http(h) => Some(h),
            NetworkFilter::TcpProxy(_) => None,
        }
    }

    /// The TCP proxy, when the listener runs one.
    pub fn tcp_proxy(&self) -> Option<&TcpProxy> {
        match &self.network {
            NetworkFilter::TcpProxy(t) => Some(t),
            NetworkFilter::Http(_) => None,
        }
    }

    /// The network filter's `stat_prefix`.
    pub fn stat_prefix(&self) -> &str {
        match &self.network {
            NetworkFilter::Http(h) => &h.stat_prefix,
            NetworkFilter::TcpProxy(t) => &t.stat_prefix,
        }
    }

    /// Every chain's network filter (`network` alone for a listener without chain matching;
    /// otherwise each chain's, then the default chain's).
    pub fn networks(&self) -> impl Iterator<Item = &NetworkFilter> {
        let (first, rest, default) = match &self.select {
            None => (Some(&self.network), &[][..], None),
            Some(s) => (None, &s.chains[..], s.default.as_ref()),
        };
        first
            .into_iter()
            .chain(rest.iter().map(|c| &c.network))
            .chain(default)
    }

    /// The network filter's access logs.
    pub fn access_log(&self) -> &[AccessLog] {
        match &self.network {
            NetworkFilter::Http(h) => &h.access_log,
            NetworkFilter::TcpProxy(t) => &t.access_log,
        }
    }
}

/// The `tcp_proxy` network filter (Envoy's semantics: one upstream connection per downstream
/// connection, bytes copied both ways, half-close passed on).
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// TLS terminated on this filter chain (`tls:` on the chain; kept with its one filter).
    pub tls: Option<std::sync::Arc<DownstreamTls>>,
    /// `tcp.<stat_prefix>.` stats (default: the listener name).
    pub stat_prefix: String,
    pub cluster: ClusterId,
    pub cluster_name: String,
    /// No byte either way for this long closes both sides (default 1h); `None` = disabled (`0s`).
    pub idle_timeout: Option<Duration>,
    /// Endpoints tried before the connection is given up (default 1, at least 1).
    pub max_connect_attempts: u32,
    /// One line per connection, when it closes.
    pub access_log: Vec<AccessLog>,
}

#[derive(Debug, Clone)]
pub struct HttpConnManager {
    /// TLS terminated on this filter chain (`tls:` on the chain; kept with its one filter).
    pub tls: Option<std::sync::Arc<DownstreamTls>>,
    pub stat_prefix: String,
    pub virtual_hosts: Vec<VirtualHost>,
    /// Largest request head accepted, bytes (`max_request_headers_kb`, default 60 KiB).
    pub max_request_headers_bytes: usize,
    /// Longest request-target, bytes (default 8 KiB, always <= max_request_headers_bytes).
    pub max_uri_bytes: usize,
    /// Time allowed for a request head to arrive once its first byte has (default 10s).
    pub request_headers_timeout: Duration,
    /// Idle keep-alive connection timeout (default 60s).
    pub idle_timeout: Duration,
    /// A request body that makes no progress for this long is abandoned (default 30s).
    pub request_body_timeout: Duration,
    /// An upgraded tunnel idle both ways this long is closed (default 5m); `None` = disabled.
    pub stream_idle_timeout: Option<Duration>,
    /// Generate `x-request-id` when absent (default true).
    pub generate_request_id: bool,
    /// Access logs written for every request (empty: none, and no cost).
    pub access_log: Vec<AccessLog>,
    /// Fraction of new traces this connection manager samples, when `tracing` is configured
    /// (the top-level rate unless overridden); `None` without tracing.
    pub trace_sample_rate: Option<f64>,
    /// HTTP filters in order (the router is implicit and last).
    pub http_filters: Vec<HttpFilter>,
    /// Trailers of chunked bodies are decoded from clients and sent to them
    /// (`http_protocol_options.enable_trailers`, default false: dropped, as Envoy).
    pub enable_trailers: bool,
    /// `x-forwarded-client-cert` handling.
    pub xfcc: Xfcc,
    /// The client side's codec (`codec_type`).
    pub codec: CodecType,
    /// HTTP/2 settings for clients (`http2_protocol_options`).
    pub http2: Http2Options,
}

/// `codec_type` on a connection manager.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CodecType {
    /// HTTP/2 by ALPN or by its connection preface, HTTP/1.1 otherwise.
    #[default]
    Auto,
    Http1,
    Http2,
}

impl CodecType {
    /// Whether clients may speak HTTP/2.
    pub fn h2(self) -> bool {
        self != CodecType::Http1
    }
}

/// `http2_protocol_options`, resolved (defaults: Envoy's recommendations for an edge proxy).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Http2Options {
    pub max_concurrent_streams: u32,
    pub initial_stream_window_size: u32,
    pub initial_connection_window_size: u32,
    pub max_header_list_size: u32,
    /// `connection_keepalive: {interval, timeout}` (upstream connections): a PING every
    /// interval, the connection given up without an answer within the timeout.
    pub keepalive: Option<(std::time::Duration, std::time::Duration)>,
}

/// `forward_client_cert_details` and `set_current_client_cert_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Xfcc {
    pub mode: XfccMode,
    pub subject: bool,
    pub cert: bool,
    pub chain: bool,
    pub dns: bool,
    pub uri: bool,
}

/// Envoy's `ForwardClientCertDetails`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum XfccMode {
    /// Remove the client's header (the default).
    #[default]
    Sanitize,
    /// Keep the client's header on mTLS connections, remove it on others.
    ForwardOnly,
    /// On mTLS connections, add this connection's client certificate to the client's header.
    AppendForward,
    /// On mTLS connections, replace the client's header with this connection's certificate.
    SanitizeSet,
    /// Keep the client's header whatever the connection.
    AlwaysForwardOnly,
}

impl Xfcc {
    /// Whether this connection manager ever adds an element (so the policy must run on mTLS
    /// connections even when the client sent no header).
    pub fn sets(&self) -> bool {
        matches!(self.mode, XfccMode::AppendForward | XfccMode::SanitizeSet)
    }
}

/// One configured HTTP filter.
#[derive(Debug, Clone)]
pub struct HttpFilter {
    /// The registry name (`cors`), whatever spelling the file used.
    pub name: &'static str,
    /// Validated, immutable; every worker builds its factory from it.
    pub config: std::sync::Arc<dyn ringway_filters::FilterConfig>,
    /// Off unless a route or virtual host enables it with its own config.
    pub disabled: bool,
}

/// A route's (or virtual host's) override of one HTTP filter.
#[derive(Debug, Clone)]
pub struct PerFilter {
    /// Index in `HttpConnManager::http_filters`.
    pub filter: usize,
    pub action: PerFilterAction,
}

#[derive(Debug, Clone)]
pub enum PerFilterAction {
    /// The filter does not run for these requests.
    Disabled,
    /// The filter runs with this config instead (its own per-worker state).
    Config(std::sync::Arc<dyn ringway_filters::FilterConfig>),
}

/// One access log of a connection manager.
#[derive(Debug, Clone)]
pub struct AccessLog {
    pub path: AccessLogPath,
    /// Index of the destination among all the config's distinct destinations (two logs on the
    /// same path share one; see `access_log::destinations`).
    pub file: usize,
    /// The parsed format (`logfmt`), rendered per request by `access_log::format`.
    pub format: std::sync::Arc<crate::logfmt::Format>,
}

/// Where an access log's lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AccessLogPath {
    Stdout,
    File(std::path::PathBuf),
}

#[derive(Debug, Clone)]
pub struct VirtualHost {
    pub name: String,
    /// Lower-cased as written: exact `a.com`, suffix `*.a.com`, prefix `a.*`, or `*`.
    pub domains: Vec<String>,
    pub routes: Vec<Route>,
    /// Filter overrides for every route of this host.
    pub per_filter: Vec<PerFilter>,
    /// Header edits for every route of this host (applied before the route's own).
    pub headers: HeaderEdits,
}

/// Envoy's `request_headers_to_add` / `_to_remove` and `response_headers_to_add` /
/// `_to_remove` of a route or virtual host.
#[derive(Debug, Clone, Default)]
pub struct HeaderEdits {
    pub request: ringway_filters::http::header_mutation::Mutations,
    pub response: ringway_filters::http::header_mutation::Mutations,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position among all routes of its connection manager, in config order (per-route state
    /// such as resolved filter chains is indexed by it).
    pub id: usize,
    /// The route's `name` (empty when none).
    pub name: String,
    pub matcher: RouteMatch,
    /// How tracing names the route (`/api/*`, `/exact`, the regex).
    pub http_route: std::sync::Arc<str>,
    pub action: RouteAction,
    /// Filter overrides for this route (applied over its virtual host's).
    pub per_filter: Vec<PerFilter>,
    /// Header edits of this route (applied after its virtual host's).
    pub headers: HeaderEdits,
}

#[derive(Debug, Clone)]
pub struct RouteMatch {
    pub path: PathMatch,
    pub headers: Vec<HeaderMatcher>,
    /// Upper-case method names; empty = any.
    pub methods: Vec<String>,
}

#[derive(Debug, Clone)]
pub enum PathMatch {
    /// Whole path (query removed) equals.
    Exact(String),
    /// Path starts with (`""`: every path).
    Prefix(String),
    /// Whole path (query removed) matches; compiled anchored (`^(?:re)$`).
    Regex(regex::Regex),
}

#[derive(Debug, Clone)]
pub struct HeaderMatcher {
    /// Lower-cased header name.
    pub name: String,
    pub kind: HeaderMatchKind,
    /// Negate the result.
    pub invert: bool,
}

#[derive(Debug, Clone)]
pub enum HeaderMatchKind {
    Exact(String),
    Prefix(String),
    /// Whole value must match (anchored).
    Regex(regex::Regex),
    Present,
}

#[derive(Debug, Clone)]
pub enum RouteAction {
    Forward(ForwardAction),
    DirectResponse { status: u16, body: Bytes },
    Redirect(RedirectAction),
}

#[derive(Debug, Clone)]
pub struct ForwardAction {
    pub cluster: ClusterId,
    pub cluster_name: String,
    /// Whole-request upstream timeout (default 15s, Envoy's); `None` = disabled (`0s`).
    pub timeout: Option<Duration>,
    /// Replaces the matched prefix (only for prefix routes; for exact/regex routes the whole path).
    pub prefix_rewrite: Option<String>,
    pub host_rewrite: Option<String>,
    /// `max_grpc_timeout`: the most a request's `grpc-timeout` may ask for (`None`: no cap).
    pub max_grpc_timeout: Option<Duration>,
    /// `weighted_clusters` (`cluster` is then the first of them).
    pub weighted: Option<std::sync::Arc<WeightedClusters>>,
    /// `retry_policy` (`None`: only the keep-alive race of an idempotent request is retried).
    pub retry: Option<std::sync::Arc<RetryPolicy>>,
    /// `request_mirror_policies`.
    pub mirrors: Vec<Mirror>,
    /// `hash_policy` (empty: hashing load balancers pick at random).
    pub hash_policy: Vec<HashPolicy>,
    /// `include_request_attempt_count` on the virtual host.
    pub attempt_count_header: bool,
}

/// A route's split between clusters.
#[derive(Debug, Clone)]
pub struct WeightedClusters {
    /// (cluster, its name, cumulative weight).
    pub clusters: Vec<(ClusterId, String, u64)>,
    pub total: u64,
}

/// Retry conditions (`retry_on`), as bits.
pub mod retry_on {
    pub const FIVE_XX: u32 = 1;
    pub const GATEWAY_ERROR: u32 = 1 << 1;
    pub const RESET: u32 = 1 << 2;
    pub const CONNECT_FAILURE: u32 = 1 << 3;
    pub const RETRIABLE_4XX: u32 = 1 << 4;
    pub const REFUSED_STREAM: u32 = 1 << 5;
    pub const RETRIABLE_STATUS_CODES: u32 = 1 << 6;
    pub const RESET_BEFORE_REQUEST: u32 = 1 << 7;
    pub const GRPC_CANCELLED: u32 = 1 << 8;
    pub const GRPC_DEADLINE_EXCEEDED: u32 = 1 << 9;
    pub const GRPC_INTERNAL: u32 = 1 << 10;
    pub const GRPC_RESOURCE_EXHAUSTED: u32 = 1 << 11;
    pub const GRPC_UNAVAILABLE: u32 = 1 << 12;
    /// (name, bit), as `retry_on` spells them.
    pub const NAMES: &[(&str, u32)] = &[
        ("5xx", FIVE_XX),
        ("gateway-error", GATEWAY_ERROR),
        ("reset", RESET),
        ("reset-before-request", RESET_BEFORE_REQUEST),
        ("connect-failure", CONNECT_FAILURE),
        ("retriable-4xx", RETRIABLE_4XX),
        ("refused-stream", REFUSED_STREAM),
        ("retriable-status-codes", RETRIABLE_STATUS_CODES),
        ("cancelled", GRPC_CANCELLED),
        ("deadline-exceeded", GRPC_DEADLINE_EXCEEDED),
        ("internal", GRPC_INTERNAL),
        ("resource-exhausted", GRPC_RESOURCE_EXHAUSTED),
        ("unavailable", GRPC_UNAVAILABLE),
    ];
}

/// A route's `retry_policy`, checked.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// [`retry_on`] bits.
    pub retry_on: u32,
    pub num_retries: u32,
    pub per_try_timeout: Option<Duration>,
    pub per_try_idle_timeout: Option<Duration>,
    pub base_interval: Duration,
    pub max_interval: Duration,
    pub retriable_status_codes: Vec<u16>,
    pub retriable_request_headers: Vec<HeaderMatcher>,
    /// `previous_hosts`: a retry avoids the hosts already tried.
    pub avoid_previous_hosts: bool,
    pub host_selection_retry_max_attempts: u32,
}

/// One mirror of a route.
#[derive(Debug, Clone)]
pub struct Mirror {
    pub cluster: ClusterId,
    pub cluster_name: String,
    /// Requests mirrored per million.
    pub per_million: u32,
}

/// One `hash_policy` entry.
#[derive(Debug, Clone)]
pub struct HashPolicy {
    pub kind: HashKind,
    pub terminal: bool,
}

#[derive(Debug, Clone)]
pub enum HashKind {
    /// A request header (lower-cased name).
    Header(String),
    /// A cookie; with `ttl`, generated (and set on the response) when absent.
    Cookie {
        name: String,
        ttl: Option<Duration>,
        path: Option<String>,
    },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone)]
pub struct RedirectAction {
    pub https_redirect: bool,
    pub host_redirect: Option<String>,
    pub path_redirect: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    pub response_code: u16,
}

/// Which addresses a DNS name gives (`dns_lookup_family`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DnsFamily {
    /// IPv6 if the name has any, else IPv4.
    Auto,
    V4Only,
    V6Only,
    /// IPv4 if the name has any, else IPv6.
    V4Preferred,
    All,
}

/// One `host:port` endpoint of a DNS cluster.
#[derive(Debug, Clone)]
pub struct DnsHost {
    pub host: String,
    pub port: u16,
    pub weight: u32,
    pub priority: u32,
}

/// `type: strict_dns | logical_dns`: the names to resolve (the cluster's `endpoints` are what
/// they resolved to, filled in at run time).
#[derive(Debug, Clone)]
pub struct DnsCluster {
    pub hosts: Vec<DnsHost>,
    /// `logical_dns`: the first address of each name only.
    pub logical: bool,
    pub refresh: Duration,
    pub respect_ttl: bool,
    pub family: DnsFamily,
    /// Servers to ask; empty: the system's resolver.
    pub resolvers: Vec<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    /// `strict_dns` / `logical_dns` (`None`: static endpoints).
    pub dns: Option<std::sync::Arc<DnsCluster>>,
    pub connect_timeout: Duration,
    pub lb_policy: LbPolicy,
    /// The table of `ring_hash` / `maglev` (`None` for the other policies).
    pub hash_lb: Option<HashLbConfig>,
    /// `slow_start_config` of `round_robin` / `least_request`.
    pub slow_start: Option<SlowStart>,
    pub endpoints: Vec<Endpoint>,
    /// Idle keep-alive connections kept per endpoint per worker (default 1024).
    pub max_idle_per_endpoint: usize,
    /// Idle upstream connection lifetime (default 60s).
    pub idle_timeout: Duration,
    /// Trailers of chunked bodies are sent to and decoded from this cluster's endpoints
    /// (`http_protocol_options.enable_trailers`, default false).
    pub enable_trailers: bool,
    /// The PROXY protocol header sent first on every new connection to an endpoint
    /// (`upstream_proxy_protocol`; `None`: none).
    pub upstream_proxy_protocol: Option<ProxyProtocolVersion>,
    /// TLS to the endpoints (`tls`; `None`: plain TCP).
    pub tls: Option<std::sync::Arc<UpstreamTls>>,
    /// `protocol: http2`: requests go out as HTTP/2 streams, multiplexed (with `http2_auto`:
    /// only on connections where TLS's ALPN chose `h2`).
    pub http2: bool,
    /// `protocol: auto` on a TLS cluster.
    pub http2_auto: bool,
    /// HTTP/2 settings for connections to the endpoints.
    pub http2_options: Http2Options,
    /// Requests one connection carries before it is closed (`None`: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// Active health checking (`health_checks`; `None`: every endpoint counts as healthy).
    pub health_check: Option<std::sync::Arc<HealthCheck>>,
    /// Passive health checking (`outlier_detection`).
    pub outlier: Option<OutlierDetection>,
    /// Below this percentage of healthy endpoints, every endpoint takes traffic (default 50).
    pub healthy_panic_threshold: f64,
    /// `circuit_breakers` (Envoy's defaults when absent).
    pub breakers: CircuitBreakers,
    /// Connections older than this are closed instead of reused (`None`: no limit).
    pub max_connection_duration: Option<Duration>,
}

/// A cluster's circuit breakers, for the whole process (each worker enforces its share).
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakers {
    pub max_connections: u32,
    pub max_pending_requests: u32,
    pub max_requests: u32,
    pub max_retries: u32,
    /// (budget percent, min retry concurrency): when set, replaces `max_retries`.
    pub retry_budget: Option<(f64, u32)>,
    pub track_remaining: bool,
}

impl Default for CircuitBreakers {
    /// Envoy's: 1024 connections, 1024 pending, 1024 requests, 3 retries.
    fn default() -> Self {
        CircuitBreakers {
            max_connections: 1024,
            max_pending_requests: 1024,
            max_requests: 1024,
            max_retries: 3,
            retry_budget: None,
            track_remaining: false,
        }
    }
}

/// A cluster's active health check, checked at load.
#[derive(Debug, Clone, PartialEq)]
pub struct HealthCheck {
    pub timeout: Duration,
    pub interval: Duration,
    pub interval_jitter: Duration,
    pub interval_jitter_percent: u32,
    pub initial_jitter: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub no_traffic_interval: Duration,
    pub unhealthy_interval: Duration,
    pub unhealthy_edge_interval: Duration,
    pub healthy_edge_interval: Duration,
    pub reuse_connection: bool,
    pub always_log_failures: bool,
    pub kind: HealthCheckKind,
}

#[derive(Debug, Clone, PartialEq)]
pub enum HealthCheckKind {
    Http {
        /// The whole request, encoded once at load.
        request: bytes::Bytes,
        /// `HEAD`: the answer has no body.
        head: bool,
        /// `[start, end)` ranges that pass.
        expected: Vec<(u16, u16)>,
        /// Ranges that count towards `unhealthy_threshold` instead of failing at once.
        retriable: Vec<(u16, u16)>,
    },
    Tcp {
        send: Vec<u8>,
        receive: Vec<Vec<u8>>,
    },
    Grpc {
        service_name: String,
        authority: String,
    },
}

/// `outlier_detection`, with Envoy's defaults filled in. Percentages are 0..=100.
#[derive(Debug, Clone, PartialEq)]
pub struct OutlierDetection {
    pub consecutive_5xx: u32,
    pub interval: Duration,
    pub base_ejection_time: Duration,
    pub max_ejection_time: Duration,
    pub max_ejection_percent: u32,
    pub enforcing_consecutive_5xx: u32,
    pub enforcing_success_rate: u32,
    pub success_rate_minimum_hosts: u32,
    pub success_rate_request_volume: u32,
    /// Thousandths: 1900 = 1.9 standard deviations.
    pub success_rate_stdev_factor: u32,
    pub consecutive_gateway_failure: u32,
    pub enforcing_consecutive_gateway_failure: u32,
    pub split_external_local_origin_errors: bool,
    pub consecutive_local_origin_failure: u32,
    pub enforcing_consecutive_local_origin_failure: u32,
    pub enforcing_local_origin_success_rate: u32,
    pub failure_percentage_threshold: u32,
    pub enforcing_failure_percentage: u32,
    pub enforcing_failure_percentage_local_origin: u32,
    pub failure_percentage_minimum_hosts: u32,
    pub failure_percentage_request_volume: u32,
    pub successful_active_health_check_uneject_host: bool,
}

impl Default for OutlierDetection {
    /// Envoy's defaults.
    fn default() -> Self {
        OutlierDetection {
            consecutive_5xx: 5,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejection_percent: 10,
            enforcing_consecutive_5xx: 100,
            enforcing_success_rate: 100,
            success_rate_minimum_hosts: 5,
            success_rate_request_volume: 100,
            success_rate_stdev_factor: 1900,
            consecutive_gateway_failure: 5,
            enforcing_consecutive_gateway_failure: 0,
            split_external_local_origin_errors: false,
            consecutive_local_origin_failure: 5,
            enforcing_consecutive_local_origin_failure: 100,
            enforcing_local_origin_success_rate: 100,
            failure_percentage_threshold: 85,
            enforcing_failure_percentage: 0,
            enforcing_failure_percentage_local_origin: 0,
            failure_percentage_minimum_hosts: 5,
            failure_percentage_request_volume: 50,
            successful_active_health_check_uneject_host: true,
        }
    }
}

/// A cluster's TLS origination, checked and built at load.
#[derive(Debug)]
pub struct UpstreamTls {
    /// The client config every worker copies (each copy gets its own session cache).
    pub client: std::sync::Arc<rustls::ClientConfig>,
    /// SNI and the verified name; `None`: no SNI, verified against the endpoint's address.
    pub sni: Option<rustls::pki_types::ServerName<'static>>,
}

/// Which PROXY protocol header a cluster sends to its upstreams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersion {
    /// The text line (`PROXY TCP4 ...\r\n`).
    V1,
    /// The binary header.
    V2,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicy {
    RoundRobin,
    LeastRequest,
    Random,
    RingHash,
    Maglev,
}

impl LbPolicy {
    /// The config spelling (`round_robin`).
    pub fn as_str(self) -> &'static str {
        match self {
            LbPolicy::RoundRobin => "round_robin",
            LbPolicy::LeastRequest => "least_request",
            LbPolicy::Random => "random",
            LbPolicy::RingHash => "ring_hash",
            LbPolicy::Maglev => "maglev",
        }
    }

    /// Picks with the request's hash (`hash_policy`).
    pub fn hashing(self) -> bool {
        matches!(self, LbPolicy::RingHash | LbPolicy::Maglev)
    }
}

/// A hashing load balancer's table (`ring_hash_lb_config`, `maglev_lb_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashLbConfig {
    Ring {
        min_size: u64,
        max_size: u64,
        murmur: bool,
    },
    Maglev {
        table_size: u64,
    },
}

/// `slow_start_config`, checked.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlowStart {
    pub window: Duration,
    pub aggression: f64,
    /// 0.0..=1.0.
    pub min_weight: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    pub address: SocketAddr,
    /// Default 1, at least 1.
    pub weight: u32,
    /// Priority level (0: the highest, the default).
    pub priority: u32,
}

/// `tls:` on a filter chain: TLS terminated there (`io::tls`).
#[derive(Clone)]
pub struct DownstreamTls {
    /// Built and checked at load (certificates, keys, versions, suites, client CA); each
    /// worker uses a copy with its own session cache.
    pub server: std::sync::Arc<rustls::ServerConfig>,
    /// `transport_socket_connect_timeout`: how long the handshake may take.
    pub handshake_timeout: Duration,
}

impl std::fmt::Debug for DownstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DownstreamTls")
            .field("alpn", &self.server.alpn_protocols)
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}
