//! The config file format: serde structs mirroring the YAML/JSON keys one to one, with a doc on
//! every key. Step one of "config in two steps": these types accept any document that is
//! well-formed (right keys, right types) and nothing else (`deny_unknown_fields` everywhere);
//! `validate()` then checks meaning and builds the runtime [`model`](super::model) types.
//!
//! The same types derive `JsonSchema`: [`json_schema`](super::json_schema) turns them into the
//! file's JSON Schema (`ringway schema`, `config/ringway.schema.json`), so a `///` here is also
//! what an editor shows for the key. A type with a hand-written `Deserialize` gets its schema
//! written by hand there too.
//!
//! Omitted optional keys stay `None` here; their defaults live in [`defaults`](super::defaults).
//! Lists of maps hold [`Item`]s, so one broken element is reported and skipped while its
//! siblings are still read and validated (every error in one run, not the first).

use std::fmt;

use schemars::JsonSchema;
use serde::{
    de::{self, value::MapAccessDeserializer, IgnoredAny},
    Deserialize, Deserializer,
};

pub use super::decode::Item;
pub use super::duration::Dur;

/// The whole file.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a map of workers, drain_timeout, listeners, clusters"
)]
pub struct ConfigSpec {
    /// `auto` (one worker per online CPU, or per CPU of an explicit `cpu_affinity` list; the
    /// default) or a worker count (1..=1024).
    pub workers: Option<WorkersSpec>,
    /// Where workers run: `auto` (each pinned to its own CPU, round-robin over the CPUs the
    /// process may use; the default), `none` (not pinned: the scheduler places them) or a list
    /// of CPU ids (`[0, 2]`: workers pinned round-robin over it).
    pub cpu_affinity: Option<CpuAffinitySpec>,
    /// How long shutdown waits for in-flight requests (default `5s`).
    pub drain_timeout: Option<Dur>,
    /// How long an HTTP/1 keep-alive connection waits between requests before it is parked:
    /// its task and receive are freed and the worker waits on its socket's readiness instead
    /// (default `2s`; `0s`: never park).
    pub park_idle_after: Option<Dur>,
    /// The listeners; at least one, unless `xds` brings them.
    #[serde(default)]
    pub listeners: Vec<Item<ListenerSpec>>,
    /// The upstream clusters routes may name (default none).
    #[serde(default)]
    pub clusters: Vec<Item<ClusterSpec>>,
    /// How often workers ship their histograms to the stats aggregator (default `5s`).
    pub stats_flush_interval: Option<Dur>,
    /// The admin HTTP server (stats, readiness, drain); off unless configured.
    pub admin: Option<AdminSpec>,
    /// Distributed tracing: sample requests and export their spans to a collector; off unless
    /// configured (trace headers are forwarded untouched then).
    pub tracing: Option<TracingSpec>,
    /// Reload the config when its file changes (edited in place or renamed over; the
    /// directory is watched); default `false` (SIGHUP and `POST /config/reload` only).
    pub watch: Option<bool>,
    /// The kernel interface for socket I/O: `auto` (io_uring when a ring can be set up,
    /// otherwise epoll with a warning; the default), `io_uring` (refuse to start without it) or
    /// `epoll` (for where io_uring is refused, such as container runtimes' default seccomp
    /// profiles; costs CPU per request). Read at start; a reload does not change it.
    pub io_driver: Option<super::model::IoDriverMode>,
    /// How this proxy names itself to an xDS control plane (Envoy's `Node`).
    pub node: Option<NodeSpec>,
    /// Take listeners, routes, clusters and endpoints from an xDS control plane (Envoy's
    /// `dynamic_resources` with an ADS `ads_config`); the file's own listeners and clusters
    /// stay, beside them. Off unless configured.
    pub xds: Option<XdsSpec>,
}

/// `node: {id, cluster}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a node map")]
pub struct NodeSpec {
    /// This proxy's id (default: the host name).
    pub id: Option<String>,
    /// The service cluster this proxy belongs to (default empty).
    pub cluster: Option<String>,
}

/// `xds: {cluster: xds_cluster}`: an aggregated discovery service (ADS) stream over gRPC.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an xds map")]
pub struct XdsSpec {
    /// The static cluster (under `clusters`) of the control plane; spoken to over gRPC
    /// (HTTP/2, or HTTP/2 over TLS when the cluster has `tls`). Its endpoints are tried in turn.
    pub cluster: String,
    /// `GRPC` (state of the world; the default) or `DELTA_GRPC` (incremental).
    pub api_type: Option<String>,
    /// Take listeners from the control plane (LDS; default true).
    pub lds: Option<bool>,
    /// Take clusters from the control plane (CDS; default true).
    pub cds: Option<bool>,
    /// How long the start waits for the control plane's first listeners and clusters before
    /// serving the file's own (default `15s`, Envoy's `initial_fetch_timeout`; `0s`: no wait).
    pub initial_fetch_timeout: Option<Dur>,
}

/// `tracing: {collector: {cluster: otel}, sample_rate: 0.1}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tracing map")]
pub struct TracingSpec {
    /// Where spans are sent; required.
    pub collector: CollectorSpec,
    /// Fraction of new traces sampled, 0 to 1 (default 1: every request). A request that
    /// carries a sampling decision (`traceparent` flags, B3 sampled) keeps it.
    pub sample_rate: Option<f64>,
    /// `service.name` of ringway's spans (default `ringway`).
    pub service_name: Option<String>,
    /// Spans are sent at least this often (default `1s`).
    pub flush_interval: Option<Dur>,
    /// Most spans in one export request (default 512).
    pub max_batch: Option<usize>,
}

/// `collector: {cluster: otel, format: otlp_json}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a collector map")]
pub struct CollectorSpec {
    /// The cluster (under `clusters`) whose endpoints receive the spans.
    pub cluster: String,
    /// `otlp_json` (OTLP/HTTP with JSON encoding; the default) or `zipkin_json` (Zipkin v2).
    pub format: Option<String>,
    /// Request path (default `/v1/traces` for OTLP, `/api/v2/spans` for Zipkin).
    pub path: Option<String>,
    /// `Host` header of export requests (default: the cluster's name).
    pub host: Option<String>,
    /// Time allowed for one export request, connect included (default `5s`).
    pub timeout: Option<Dur>,
}

/// `admin: {address: 127.0.0.1:9901}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an admin map")]
pub struct AdminSpec {
    /// `IP:port` the admin server binds (keep it on loopback; port 0 picks a free port).
    pub address: String,
}

/// `workers: auto` or `workers: 4`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkersSpec {
    /// One worker per online CPU.
    Auto,
    /// Exactly this many workers (validated to 1..=1024).
    Count(u64),
}

impl<'de> Deserialize<'de> for WorkersSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = WorkersSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto` or a number of workers")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<WorkersSpec, E> {
                if s == "auto" {
                    Ok(WorkersSpec::Auto)
                } else {
                    Err(E::custom(format!(
                        "invalid workers {s:?}: expected `auto` or a number of workers"
                    )))
                }
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<WorkersSpec, E> {
                Ok(WorkersSpec::Count(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<WorkersSpec, E> {
                Err(E::custom(format!(
                    "invalid workers {n}: must be at least 1"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

/// `cpu_affinity: auto`, `none` or `[0, 2]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CpuAffinitySpec {
    /// Pin each worker to its own CPU.
    Auto,
    /// Leave placement to the scheduler.
    None,
    /// Pin workers round-robin over these CPU ids (checked in `validate`).
    Cpus(Vec<u64>),
}

impl<'de> Deserialize<'de> for CpuAffinitySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = CpuAffinitySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`auto`, `none` or a list of CPU ids")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<CpuAffinitySpec, E> {
                match s {
                    "auto" => Ok(CpuAffinitySpec::Auto),
                    "none" => Ok(CpuAffinitySpec::None),
                    _ => Err(E::custom(format!(
                        "invalid cpu_affinity {s:?}: expected `auto`, `none` or a list of CPU ids"
                    ))),
                }
            }
            fn visit_seq<A: de::SeqAccess<'de>>(
                self,
                mut seq: A,
            ) -> Result<CpuAffinitySpec, A::Error> {
                let mut cpus = Vec::new();
                while let Some(id) = seq.next_element::<u64>()? {
                    cpus.push(id);
                }
                Ok(CpuAffinitySpec::Cpus(cpus))
            }
        }
        d.deserialize_any(V)
    }
}

/// A listening socket and what runs on its connections.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a listener map")]
pub struct ListenerSpec {
    /// Unique listener name (used in stats and logs).
    pub name: String,
    /// `IP:port` to bind, e.g. `0.0.0.0:8080` or `[::1]:8080`. Host names are not resolved.
    pub address: String,
    /// Accept queue length (default 1024).
    pub backlog: Option<u32>,
    /// Hand a connection to the proxy only once its first bytes have arrived (Linux
    /// `TCP_DEFER_ACCEPT`, nginx's `deferred`, HAProxy's `defer-accept`): one wake-up instead of
    /// two for a new connection. Default `true` when every filter chain is an
    /// `http_connection_manager` (its clients speak first), `false` when any is a `tcp_proxy`
    /// (a protocol where the server speaks first would wait).
    pub defer_accept: Option<bool>,
    /// How new connections are spread over workers: `exact` (the least loaded worker serves
    /// it; the default) or `kernel` (the worker SO_REUSEPORT hashed it to).
    pub connection_balance: Option<String>,
    /// The filter chains; a connection runs the one whose `filter_chain_match` fits it best
    /// (Envoy's order: destination port, destination address, server name, transport
    /// protocol, application protocols, source type, source address, source port), or
    /// `default_filter_chain`, or is closed.
    #[serde(default)]
    pub filter_chains: Vec<Item<FilterChainSpec>>,
    /// The chain for connections no `filter_chains` entry matches (default none: closed).
    pub default_filter_chain: Option<Item<FilterChainSpec>>,
    /// Filters that read the start of a connection before a chain is chosen, in order:
    /// `proxy_protocol`, `tls_inspector` (default none).
    #[serde(default)]
    pub listener_filters: Vec<Item<ListenerFilterSpec>>,
    /// How long the listener filters may wait for the bytes they need (default 15s, Envoy's;
    /// `0s` disables).
    pub listener_filters_timeout: Option<Dur>,
    /// At `listener_filters_timeout`, choose a chain with what is known instead of closing
    /// (default false, Envoy's): for protocols where the server speaks first.
    pub continue_on_listener_filters_timeout: Option<bool>,
    /// The listener's own access logs: one line per connection closed before a filter chain
    /// served it (default none).
    #[serde(default)]
    pub access_log: Vec<Item<AccessLogSpec>>,
}

/// One listener filter: the short name (`tls_inspector`), a map with one key, the name, holding
/// its (empty) config (`tls_inspector: {}`), or Envoy's `{name: envoy.filters.listener.NAME}`.
#[derive(Debug)]
pub enum ListenerFilterSpec {
    /// `tls_inspector`: peeks at the TLS ClientHello (SNI, ALPN) without consuming it.
    TlsInspector,
    /// `proxy_protocol`: reads a PROXY v1/v2 header and takes the client address from it.
    ProxyProtocol(ProxyProtocolSpec),
    /// A name this version does not know: a validation error.
    Unsupported(String),
}

impl ListenerFilterSpec {
    fn from_name(name: &str) -> ListenerFilterSpec {
        match name.strip_prefix("envoy.filters.listener.").unwrap_or(name) {
            "tls_inspector" => ListenerFilterSpec::TlsInspector,
            "proxy_protocol" => ListenerFilterSpec::ProxyProtocol(ProxyProtocolSpec::default()),
            _ => ListenerFilterSpec::Unsupported(name.to_string()),
        }
    }
}

/// `proxy_protocol`'s settings (Envoy's `ProxyProtocol` listener filter config).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a proxy_protocol map")]
pub struct ProxyProtocolSpec {
    /// Serve a connection that does not start with a PROXY v1/v2 signature as is, with its
    /// socket's addresses (default false: close it).
    pub allow_requests_without_proxy_protocol: Option<bool>,
}

/// A listener filter's config map, for those without settings (`tls_inspector`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "an empty map (this listener filter has no settings)"
)]
pub(super) struct NoSettings {}

impl<'de> Deserialize<'de> for ListenerFilterSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = ListenerFilterSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a listener filter: `tls_inspector`, `proxy_protocol`, a map with one key \
                     (the name) or `{name: envoy.filters.listener.NAME}`",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ListenerFilterSpec, E> {
                Ok(ListenerFilterSpec::from_name(s))
            }
            fn visit_map<A: de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<ListenerFilterSpec, A::Error> {
                let Some(key) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty listener filter: expected one key, the filter name",
                    ));
                };
                let filter = if key == "name" {
                    ListenerFilterSpec::from_name(&map.next_value::<String>()?)
                } else {
                    let f = ListenerFilterSpec::from_name(&key);
                    match f {
                        ListenerFilterSpec::Unsupported(_) => {
                            map.next_value::<IgnoredAny>()?;
                            f
                        }
                        ListenerFilterSpec::ProxyProtocol(_) => ListenerFilterSpec::ProxyProtocol(
                            map.next_value::<Option<ProxyProtocolSpec>>()?
                                .unwrap_or_default(),
                        ),
                        ListenerFilterSpec::TlsInspector => {
                            map.next_value::<Option<NoSettings>>()?;
                            f
                        }
                    }
                };
                if let Some(k) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected key `{k}`: a listener filter is a map with exactly one key \
                         (its name, or `name`)"
                    )));
                }
                Ok(filter)
            }
        }
        d.deserialize_any(V)
    }
}

/// What a connection must look like for a filter chain to run on it (Envoy's
/// `filter_chain_match`). An omitted or empty criterion matches anything.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a filter_chain_match map")]
pub struct FilterChainMatchSpec {
    /// The port the client connected to (the listener's, or the PROXY header's destination).
    pub destination_port: Option<u16>,
    /// Destination address ranges (the listener's local address, or the PROXY header's
    /// destination): `10.0.0.0/8` or Envoy's `{address_prefix, prefix_len}`.
    #[serde(default)]
    pub prefix_ranges: Vec<CidrSpec>,
    /// SNI names (`tls_inspector`): exact names or `*.suffix` wildcards; the most specific wins.
    #[serde(default)]
    pub server_names: Vec<String>,
    /// `tls` or `raw_buffer` (`tls_inspector`).
    pub transport_protocol: Option<String>,
    /// ALPN protocols (`tls_inspector`): matches when the client offers one of them.
    #[serde(default)]
    pub application_protocols: Vec<String>,
    /// Client address ranges: `10.0.0.0/8` or Envoy's `{address_prefix, prefix_len}`.
    #[serde(default)]
    pub source_prefix_ranges: Vec<CidrSpec>,
    /// `ANY` (default), `SAME_IP_OR_LOOPBACK` (the client is on a loopback address or the
    /// destination's), or `EXTERNAL` (any other client).
    pub source_type: Option<String>,
    /// Client ports.
    #[serde(default)]
    pub source_ports: Vec<u16>,
}

/// An address range: `"10.0.0.0/8"` or `{address_prefix: 10.0.0.0, prefix_len: 8}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    untagged,
    expecting = "a CIDR range: \"10.0.0.0/8\" or {address_prefix, prefix_len}"
)]
pub enum CidrSpec {
    /// `ADDRESS/LEN` (or a bare address: one host).
    Text(String),
    /// Envoy's `CidrRange`.
    Range {
        /// The network address.
        address_prefix: String,
        /// Bits of the prefix (default: the whole address).
        prefix_len: Option<u32>,
    },
}

/// The network filters run on a connection, in order.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a filter chain map")]
pub struct FilterChainSpec {
    /// Which connections this chain serves (default: all).
    pub filter_chain_match: Option<FilterChainMatchSpec>,
    /// A name for messages (optional, as Envoy's).
    pub name: Option<String>,
    /// Exactly one filter for now, the terminal one: `http_connection_manager` or `tcp_proxy`.
    pub filters: Vec<Item<FilterSpec>>,
    /// Terminate TLS on this chain (Envoy's `DownstreamTlsContext`, without the
    /// `transport_socket`/`typed_config` wrapping). Default: none (plain TCP).
    pub tls: Option<TlsSpec>,
    /// How long the TLS handshake may take (default `10s`; Envoy's name).
    pub transport_socket_connect_timeout: Option<Dur>,
}

/// `tls:` on a filter chain: the keys of Envoy's `DownstreamTlsContext`, with those of its
/// `common_tls_context` accepted either inside it or directly here.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tls map")]
pub struct TlsSpec {
    /// Envoy's wrapper for the keys below (use one or the other).
    pub common_tls_context: Option<CommonTlsSpec>,
    pub tls_certificates: Option<Vec<TlsCertificateSpec>>,
    pub alpn_protocols: Option<Vec<String>>,
    pub tls_params: Option<TlsParamsSpec>,
    pub validation_context: Option<ValidationContextSpec>,
    /// With a `validation_context`: refuse clients without a valid certificate (default
    /// false: a certificate is verified when presented).
    pub require_client_certificate: Option<bool>,
    /// Turn off session tickets (default false: tickets on, keys rotated by rustls).
    pub disable_stateless_session_resumption: Option<bool>,
    /// Certificates from the control plane's secret discovery (SDS, over `xds`), by name:
    /// `[{name: edge-cert, sds_config: {ads: {}}}]`; the chain serves once they have arrived.
    pub tls_certificate_sds_secret_configs: Option<Vec<SdsSecretSpec>>,
}

/// One secret taken from the control plane (Envoy's `SdsSecretConfig`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {name, sds_config} map")]
pub struct SdsSecretSpec {
    /// The secret's name.
    pub name: String,
    /// Where it comes from: `{ads: {}}` (the only source there is).
    pub sds_config: Option<serde_json::Value>,
}

/// Envoy's `CommonTlsContext`.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a common_tls_context map")]
pub struct CommonTlsSpec {
    pub tls_certificates: Option<Vec<TlsCertificateSpec>>,
    /// Certificates from the control plane (SDS), as on `tls`.
    pub tls_certificate_sds_secret_configs: Option<Vec<SdsSecretSpec>>,
    pub alpn_protocols: Option<Vec<String>>,
    pub tls_params: Option<TlsParamsSpec>,
    pub validation_context: Option<ValidationContextSpec>,
}

/// One certificate with its key (and optionally its OCSP response).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a map with certificate_chain and private_key"
)]
pub struct TlsCertificateSpec {
    pub certificate_chain: DataSourceSpec,
    pub private_key: DataSourceSpec,
    /// A DER OCSP response stapled to handshakes with this certificate.
    pub ocsp_staple: Option<DataSourceSpec>,
}

/// Envoy's `DataSource`: a file, or the text inline.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a map with filename or inline_string"
)]
pub struct DataSourceSpec {
    pub filename: Option<String>,
    pub inline_string: Option<String>,
}

/// `tls_params`.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tls_params map")]
pub struct TlsParamsSpec {
    /// `TLSv1_2` (default) or `TLSv1_3`.
    pub tls_minimum_protocol_version: Option<String>,
    /// `TLSv1_2` or `TLSv1_3` (default).
    pub tls_maximum_protocol_version: Option<String>,
    /// TLS 1.2 suites (OpenSSL or IANA names); TLS 1.3's are always on, as in Envoy.
    pub cipher_suites: Option<Vec<String>>,
}

/// `validation_context`: how client certificates are verified (mTLS).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a validation_context map")]
pub struct ValidationContextSpec {
    pub trusted_ca: DataSourceSpec,
    /// The client certificate must also carry a subject alternative name one of these matches
    /// (Envoy's key; any one suffices). None: every certificate the CA signed.
    #[serde(default)]
    pub match_typed_subject_alt_names: Option<Vec<SanMatcherSpec>>,
}

/// One `match_typed_subject_alt_names` entry: which kind of SAN, and Envoy's `StringMatcher`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {san_type, matcher} map")]
pub struct SanMatcherSpec {
    /// `DNS` or `URI` (`EMAIL`, `IP_ADDRESS` and `OTHER_NAME` are not supported yet).
    pub san_type: String,
    /// `exact`, `prefix`, `suffix`, `contains` or `safe_regex`, with `ignore_case`.
    pub matcher: ringway_filters::http::cors::StringMatcherSpec,
}

/// One network filter: a map with a single key, the filter's name, holding its config.
#[derive(Debug)]
pub enum FilterSpec {
    /// `http_connection_manager: {...}`.
    HttpConnectionManager(Box<HcmSpec>),
    /// `tcp_proxy: {...}`.
    TcpProxy(Box<TcpProxySpec>),
    /// A filter name this version does not implement (`redis_proxy`, ...): a validation error.
    Unsupported(String),
}

impl<'de> Deserialize<'de> for FilterSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = FilterSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a map with one key, the filter name (`http_connection_manager` or `tcp_proxy`)",
                )
            }
            fn visit_map<A: de::MapAccess<'de>>(self, mut map: A) -> Result<FilterSpec, A::Error> {
                let Some(name) = map.next_key::<String>()? else {
                    return Err(de::Error::custom(
                        "empty filter: expected one key, the filter name \
                         (`http_connection_manager` or `tcp_proxy`)",
                    ));
                };
                let filter = match name.as_str() {
                    "http_connection_manager" => {
                        FilterSpec::HttpConnectionManager(Box::new(map.next_value()?))
                    }
                    "tcp_proxy" => FilterSpec::TcpProxy(Box::new(map.next_value()?)),
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        FilterSpec::Unsupported(name)
                    }
                };
                if map.next_key::<IgnoredAny>()?.is_some() {
                    return Err(de::Error::custom(
                        "a filter is a map with exactly one key, the filter name; \
                         list each filter as its own item",
                    ));
                }
                Ok(filter)
            }
        }
        d.deserialize_map(V)
    }
}

/// The TCP proxy (Envoy's `envoy.filters.network.tcp_proxy`): each connection is joined to one
/// endpoint of a cluster and bytes are copied both ways until both sides have closed.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tcp_proxy map")]
pub struct TcpProxySpec {
    /// Prefix of this proxy's stats, `tcp.<stat_prefix>.` (default: the listener name).
    pub stat_prefix: Option<String>,
    /// The cluster (under `clusters`) whose load balancer picks each connection's endpoint.
    pub cluster: String,
    /// A connection with no byte moving either way this long is closed, both sides (default
    /// `1h`, Envoy's; `0s` disables).
    pub idle_timeout: Option<Dur>,
    /// Endpoints tried (each a fresh pick of the load balancer) before the connection is given
    /// up (default 1; at least 1).
    pub max_connect_attempts: Option<u32>,
    /// Access logs: one line per connection, when it closes (default none).
    #[serde(default)]
    pub access_log: Vec<Item<AccessLogSpec>>,
}

/// The HTTP connection manager: HTTP/1.1 codec, then the router.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an http_connection_manager map")]
pub struct HcmSpec {
    /// Prefix of this connection manager's stats (default: the listener name).
    pub stat_prefix: Option<String>,
    /// Virtual hosts, picked by the request's Host; at least one.
    pub virtual_hosts: Vec<Item<VirtualHostSpec>>,
    /// Largest request head (request line + headers) accepted, KiB, 1..=96 (default 60).
    pub max_request_headers_kb: Option<u32>,
    /// Time for a whole request head once its first byte arrived (default `10s`).
    pub request_headers_timeout: Option<Dur>,
    /// Idle keep-alive connections are closed after this (default `60s`).
    pub idle_timeout: Option<Dur>,
    /// A request body making no progress this long is abandoned (default `30s`).
    pub request_body_timeout: Option<Dur>,
    /// An upgraded (WebSocket) tunnel with no bytes either way this long is closed (default
    /// `5m`, Envoy's; `0s` disables).
    pub stream_idle_timeout: Option<Dur>,
    /// Add an `x-request-id` header when the request has none (default `true`).
    pub generate_request_id: Option<bool>,
    /// Access logs: one line per request to each (default none).
    #[serde(default)]
    pub access_log: Vec<Item<AccessLogSpec>>,
    /// This connection manager's tracing settings (needs the top-level `tracing`).
    pub tracing: Option<HcmTracingSpec>,
    /// HTTP/1 codec options for the client side.
    pub http_protocol_options: Option<Http1OptionsSpec>,
    /// Which codec the client side speaks: `auto` (the default: HTTP/2 when TLS negotiated
    /// `h2` by ALPN or the connection starts with the HTTP/2 preface, HTTP/1.1 otherwise),
    /// `http1` or `http2` (Envoy's `AUTO`, `HTTP1`, `HTTP2` are accepted too).
    pub codec_type: Option<String>,
    /// HTTP/2 settings for the client side.
    pub http2_protocol_options: Option<Http2OptionsSpec>,
    /// What happens to `x-forwarded-client-cert` (Envoy's values: `SANITIZE`, the default,
    /// `FORWARD_ONLY`, `APPEND_FORWARD`, `SANITIZE_SET`, `ALWAYS_FORWARD_ONLY`).
    pub forward_client_cert_details: Option<String>,
    /// Which of the client certificate's details `APPEND_FORWARD` and `SANITIZE_SET` add.
    pub set_current_client_cert_details: Option<ClientCertDetailsSpec>,
    /// HTTP filters, run in order before the router (which is implicit and last): each a map
    /// with the filter's `name` (`cors`, or Envoy's `envoy.filters.http.cors`), optionally
    /// `disabled: true` (off unless a route enables it), and the filter's own keys.
    #[serde(default)]
    #[schemars(schema_with = "super::json_schema::http_filters")]
    pub http_filters: Vec<serde_json::Value>,
}

/// `set_current_client_cert_details` (the hash is always added, as Envoy's).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a set_current_client_cert_details map"
)]
pub struct ClientCertDetailsSpec {
    pub subject: Option<bool>,
    pub cert: Option<bool>,
    pub chain: Option<bool>,
    pub dns: Option<bool>,
    pub uri: Option<bool>,
}

/// `http_protocol_options` (Envoy's `Http1ProtocolOptions`), on a connection manager (the client
/// side) or a cluster (the upstream side).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an http_protocol_options map")]
pub struct Http1OptionsSpec {
    /// Decode trailers of chunked bodies that arrive on this side and send trailers on this side
    /// (default `false`, Envoy's: the HTTP/1 codec drops trailers).
    pub enable_trailers: Option<bool>,
}

/// `http2_protocol_options` (Envoy's `Http2ProtocolOptions`, the settings ringway has).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an http2_protocol_options map")]
pub struct Http2OptionsSpec {
    /// Streams a client may have open at once on one connection (default 100).
    pub max_concurrent_streams: Option<u32>,
    /// Bytes a client may send on one stream before the proxy has forwarded them (default
    /// 65536; 65535..=2147483647). Also what the proxy buffers per stream at most.
    pub initial_stream_window_size: Option<u32>,
    /// The same for the whole connection (default 1048576; 65535..=2147483647).
    pub initial_connection_window_size: Option<u32>,
    /// Largest header list (decoded, as HTTP/2 counts it) accepted (default: the connection
    /// manager's `max_request_headers_kb`).
    pub max_header_list_size: Option<u32>,
    /// Clusters: PING the server every `interval`; no answer within `timeout` (default `5s`)
    /// gives the connection up.
    pub connection_keepalive: Option<KeepaliveSpec>,
}

/// `connection_keepalive` (Envoy's `KeepaliveSettings`, without jitter).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a connection_keepalive map")]
pub struct KeepaliveSpec {
    pub interval: Option<Dur>,
    pub timeout: Option<Dur>,
}

/// `tracing: {sample_rate: 0.01}` on a connection manager.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tracing map")]
pub struct HcmTracingSpec {
    /// Overrides the top-level `tracing.sample_rate` for this connection manager.
    pub sample_rate: Option<f64>,
}

/// One access log: where lines go and their format (`format` or `json_format`; neither: Envoy's
/// default text format).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an access log map")]
pub struct AccessLogSpec {
    /// A file (opened for appending, created if missing) or `stdout`.
    pub path: String,
    /// A text format with `%COMMAND%`s; a newline is added when it does not end with one.
    pub format: Option<String>,
    /// One JSON object per line: each key's value is a format string.
    pub json_format: Option<std::collections::BTreeMap<String, String>>,
}

/// A set of domains and the routes for them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a virtual host map")]
#[schemars(transform = super::json_schema::aliases(&[("per_filter_config", "typed_per_filter_config")]))]
pub struct VirtualHostSpec {
    /// Name, unique within its connection manager (stats, logs).
    pub name: String,
    /// Host names served: exact `a.com`, suffix `*.a.com`, prefix `a.*`, or `*` (any); matched
    /// case-insensitively without the port; unique across the connection manager's hosts.
    pub domains: Vec<String>,
    /// Routes, tried in order; the first match wins.
    pub routes: Vec<Item<RouteSpec>>,
    /// Per-filter overrides for every route of this host, by filter name: `{disabled: true}`,
    /// or a whole config that replaces the filter's (Envoy's `typed_per_filter_config`).
    #[serde(default, alias = "typed_per_filter_config")]
    #[schemars(schema_with = "super::json_schema::per_filter_config")]
    pub per_filter_config: std::collections::BTreeMap<String, serde_json::Value>,
    /// Envoy's `request_headers_to_add`: headers added to requests before they go upstream
    /// (`{header: {key, value}, append_action}`; values may use `%VAR%` commands).
    #[serde(default)]
    pub request_headers_to_add: Vec<ringway_filters::http::header_mutation::HeaderValueOptionSpec>,
    /// Envoy's `request_headers_to_remove`: header names removed from requests.
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    /// Envoy's `response_headers_to_add`: headers added to responses (upstream or local).
    #[serde(default)]
    pub response_headers_to_add: Vec<ringway_filters::http::header_mutation::HeaderValueOptionSpec>,
    /// Envoy's `response_headers_to_remove`: header names removed from responses.
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
    /// Send `x-envoy-attempt-count` (the try's number) with each request upstream.
    pub include_request_attempt_count: Option<bool>,
}

/// A match and what to do with matching requests: exactly one of `route`, `direct_response`,
/// `redirect`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a route map")]
#[schemars(transform = super::json_schema::aliases(&[("per_filter_config", "typed_per_filter_config")]))]
pub struct RouteSpec {
    /// The route's name (access logs' `%ROUTE_NAME%`, filters); optional.
    pub name: Option<String>,
    /// What requests this route takes.
    #[serde(rename = "match")]
    pub matcher: MatchSpec,
    /// Forward to a cluster.
    pub route: Option<ForwardSpec>,
    /// Answer directly with a fixed status and body.
    pub direct_response: Option<DirectResponseSpec>,
    /// Answer with a redirect.
    pub redirect: Option<RedirectSpec>,
    /// Per-filter overrides for this route, by filter name (over the virtual host's):
    /// `{disabled: true}`, or a whole config that replaces the filter's.
    #[serde(default, alias = "typed_per_filter_config")]
    #[schemars(schema_with = "super::json_schema::per_filter_config")]
    pub per_filter_config: std::collections::BTreeMap<String, serde_json::Value>,
    /// Envoy's `request_headers_to_add`: headers added to requests before they go upstream
    /// (`{header: {key, value}, append_action}`; values may use `%VAR%` commands).
    #[serde(default)]
    pub request_headers_to_add: Vec<ringway_filters::http::header_mutation::HeaderValueOptionSpec>,
    /// Envoy's `request_headers_to_remove`: header names removed from requests.
    #[serde(default)]
    pub request_headers_to_remove: Vec<String>,
    /// Envoy's `response_headers_to_add`: headers added to responses (upstream or local).
    #[serde(default)]
    pub response_headers_to_add: Vec<ringway_filters::http::header_mutation::HeaderValueOptionSpec>,
    /// Envoy's `response_headers_to_remove`: header names removed from responses.
    #[serde(default)]
    pub response_headers_to_remove: Vec<String>,
}

/// Request matching: exactly one of `path`, `prefix`, `regex`, plus optional headers and methods.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a match map")]
pub struct MatchSpec {
    /// The path without its query string equals this (starts with `/`).
    pub path: Option<String>,
    /// The path (query string included, as Envoy) starts with this (starts with `/`); `""`
    /// (Envoy's idiom) matches every path.
    pub prefix: Option<String>,
    /// The whole path without its query string matches this regex (implicitly anchored).
    pub regex: Option<String>,
    /// Every header matcher must match.
    #[serde(default)]
    pub headers: Vec<Item<HeaderMatchSpec>>,
    /// The method is one of these (upper-cased); empty or absent = any method.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// One header condition: `name` plus exactly one of `exact`, `prefix`, `regex`, `present`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a header matcher map")]
pub struct HeaderMatchSpec {
    /// Header name, case-insensitive. The first header of that name is the one checked.
    pub name: String,
    /// The value equals this.
    pub exact: Option<String>,
    /// The value starts with this.
    pub prefix: Option<String>,
    /// The whole value matches this regex (implicitly anchored).
    pub regex: Option<String>,
    /// `true`: the header is present, whatever its value.
    pub present: Option<bool>,
    /// Negate the result (default `false`). A missing header fails every matcher, so an
    /// inverted matcher matches requests without the header.
    pub invert: Option<bool>,
}

/// Forward to a cluster.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a route action map")]
pub struct ForwardSpec {
    /// Name of a cluster defined under `clusters` (or `weighted_clusters`).
    pub cluster: Option<String>,
    /// Split the route's traffic between clusters by weight (canaries): exactly one of
    /// `cluster`, `weighted_clusters`.
    pub weighted_clusters: Option<WeightedClustersSpec>,
    /// When and how often a failed request is tried again (Envoy's `RetryPolicy`).
    pub retry_policy: Option<RetryPolicySpec>,
    /// Send a copy of each request to these clusters, fire-and-forget (Envoy's
    /// `request_mirror_policies`).
    #[serde(default)]
    pub request_mirror_policies: Vec<Item<MirrorPolicySpec>>,
    /// What a hashing load balancer (`ring_hash`, `maglev`) hashes (Envoy's `hash_policy`).
    #[serde(default)]
    pub hash_policy: Vec<Item<HashPolicySpec>>,
    /// Whole-request upstream timeout (default `15s`); `0s` disables it.
    pub timeout: Option<Dur>,
    /// Replaces the matched prefix of the path (for `path`/`regex` routes, the whole path).
    pub prefix_rewrite: Option<String>,
    /// Replaces the Host header sent upstream.
    pub host_rewrite: Option<String>,
    /// Caps the timeout a gRPC client asks for in `grpc-timeout` (which otherwise replaces
    /// `timeout`); `0s`: no cap.
    pub max_grpc_timeout: Option<Dur>,
}

/// `weighted_clusters` on a route (Envoy's `WeightedCluster`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a weighted_clusters map")]
pub struct WeightedClustersSpec {
    pub clusters: Vec<Item<ClusterWeightSpec>>,
    /// Envoy's legacy `total_weight`: when given, the weights must add up to it.
    pub total_weight: Option<u32>,
}

/// One cluster of `weighted_clusters`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {name, weight} map")]
pub struct ClusterWeightSpec {
    pub name: String,
    pub weight: u32,
}

/// `retry_policy` on a route.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a retry_policy map")]
pub struct RetryPolicySpec {
    /// Comma-separated conditions: `5xx`, `gateway-error`, `reset`, `reset-before-request`,
    /// `connect-failure`, `retriable-4xx`, `refused-stream`, `retriable-status-codes`, and the
    /// gRPC ones `cancelled`, `deadline-exceeded`, `internal`, `resource-exhausted`,
    /// `unavailable`.
    pub retry_on: Option<String>,
    /// Retries after the first try (default 1).
    pub num_retries: Option<u32>,
    /// Each try's own timeout (default: none; the route timeout bounds all tries).
    pub per_try_timeout: Option<Dur>,
    /// A try whose response makes no progress for this long is given up.
    pub per_try_idle_timeout: Option<Dur>,
    pub retry_back_off: Option<RetryBackOffSpec>,
    /// Statuses retried under `retriable-status-codes`.
    #[serde(default)]
    pub retriable_status_codes: Vec<u16>,
    /// Only requests matching one of these are retried (default: every request).
    #[serde(default)]
    pub retriable_request_headers: Vec<Item<HeaderMatchSpec>>,
    /// `[{name: envoy.retry_host_predicates.previous_hosts}]`: a retry avoids the hosts
    /// already tried.
    #[serde(default)]
    pub retry_host_predicate: Vec<serde_json::Value>,
    /// Picks a retry makes to find a host the predicate accepts (default 1).
    pub host_selection_retry_max_attempts: Option<u32>,
}

/// `retry_back_off`: jittered exponential back-off between tries.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a retry_back_off map")]
pub struct RetryBackOffSpec {
    /// Default `25ms`.
    pub base_interval: Option<Dur>,
    /// Default 10 × `base_interval`.
    pub max_interval: Option<Dur>,
}

/// One of `request_mirror_policies` (Envoy's `RequestMirrorPolicy`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a mirror policy map")]
pub struct MirrorPolicySpec {
    pub cluster: String,
    /// The share of requests mirrored (default all): `{default_value: {numerator, denominator}}`
    /// as Envoy, or a percentage.
    pub runtime_fraction: Option<serde_json::Value>,
}

/// One `hash_policy` entry (Envoy's `HashPolicy`): exactly one of the kinds.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a hash_policy map")]
pub struct HashPolicySpec {
    pub header: Option<HashHeaderSpec>,
    pub cookie: Option<HashCookieSpec>,
    pub connection_properties: Option<HashConnectionSpec>,
    pub query_parameter: Option<HashQuerySpec>,
    /// Stop at this entry when it produced a hash.
    pub terminal: Option<bool>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {header_name} map")]
pub struct HashHeaderSpec {
    pub header_name: String,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {name, ttl, path} map")]
pub struct HashCookieSpec {
    pub name: String,
    /// When the cookie is absent, the proxy generates one with this lifetime and sets it on
    /// the response (absent: no cookie is generated).
    pub ttl: Option<Dur>,
    pub path: Option<String>,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {source_ip: true} map")]
pub struct HashConnectionSpec {
    pub source_ip: bool,
}

#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {name} map")]
pub struct HashQuerySpec {
    pub name: String,
}

/// Answer without going upstream.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a direct_response map")]
pub struct DirectResponseSpec {
    /// Status code, 200..=599.
    pub status: u16,
    /// Response body (default empty).
    pub body: Option<String>,
}

/// Answer with a redirect to the same URL with some parts replaced; at least one of
/// `https_redirect`, `host_redirect`, `path_redirect`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a redirect map")]
pub struct RedirectSpec {
    /// Redirect to `https` (default `false`).
    pub https_redirect: Option<bool>,
    /// Replace the host.
    pub host_redirect: Option<String>,
    /// Replace the path (and query); starts with `/`.
    pub path_redirect: Option<String>,
    /// 301 (default), 302, 303, 307 or 308.
    pub response_code: Option<u16>,
}

/// A named group of upstream endpoints and how to reach them.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a cluster map")]
pub struct ClusterSpec {
    /// Unique cluster name, referenced by routes.
    pub name: String,
    /// Upstream TCP connect timeout (default `5s`; must be more than zero).
    pub connect_timeout: Option<Dur>,
    /// How an endpoint is picked (default `round_robin`).
    pub lb_policy: Option<LbPolicySpec>,
    /// The upstream endpoints; at least one.
    pub endpoints: Vec<Item<EndpointSpec>>,
    /// Idle keep-alive connections kept per endpoint per worker (default 1024; 0 = no reuse).
    pub max_idle_per_endpoint: Option<usize>,
    /// Idle upstream connections are closed after this (default `60s`).
    pub idle_timeout: Option<Dur>,
    /// HTTP/1 codec options for connections to this cluster's endpoints.
    pub http_protocol_options: Option<Http1OptionsSpec>,
    /// Send a PROXY protocol header first on every new connection to this cluster's endpoints
    /// (Envoy's `envoy.transport_sockets.upstream_proxy_protocol` transport socket).
    pub upstream_proxy_protocol: Option<UpstreamProxyProtocolSpec>,
    /// TLS to this cluster's endpoints (Envoy's `UpstreamTlsContext`, flattened).
    pub tls: Option<UpstreamTlsSpec>,
    /// What the endpoints are spoken to in: `http1` (the default) or `http2` (`auto`, by
    /// ALPN, is not there yet).
    pub protocol: Option<String>,
    /// HTTP/2 settings for connections to this cluster's endpoints (`protocol: http2`).
    pub http2_protocol_options: Option<Http2OptionsSpec>,
    /// Requests one upstream connection carries before it is closed (default: no limit).
    pub max_requests_per_connection: Option<u32>,
    /// Active health checks of the endpoints (Envoy's `health_checks`; one per cluster here).
    #[serde(default)]
    pub health_checks: Vec<Item<HealthCheckSpec>>,
    /// Passive health: endpoints that keep failing are ejected for a while (Envoy's
    /// `outlier_detection`).
    pub outlier_detection: Option<OutlierDetectionSpec>,
    /// Settings every load balancer shares (`healthy_panic_threshold`).
    pub common_lb_config: Option<CommonLbConfigSpec>,
    /// `lb_policy: ring_hash` settings.
    pub ring_hash_lb_config: Option<RingHashLbConfigSpec>,
    /// `lb_policy: maglev` settings.
    pub maglev_lb_config: Option<MaglevLbConfigSpec>,
    /// `lb_policy: round_robin` settings (`slow_start_config`).
    pub round_robin_lb_config: Option<SlowStartHolderSpec>,
    /// `lb_policy: least_request` settings (`slow_start_config`, `choice_count`).
    pub least_request_lb_config: Option<LeastRequestLbConfigSpec>,
    /// Limits on connections, requests and retries to the cluster (Envoy's `circuit_breakers`).
    pub circuit_breakers: Option<CircuitBreakersSpec>,
    /// An upstream connection is closed (once idle) after this long (default: never).
    pub max_connection_duration: Option<Dur>,
    /// Envoy's `common_http_protocol_options`: `idle_timeout`, `max_connection_duration`,
    /// `max_requests_per_connection` (the same as the keys of the same names on the cluster).
    pub common_http_protocol_options: Option<CommonHttpOptionsSpec>,
    /// Service discovery: `static` (the default: endpoints are `IP:port`), `strict_dns`
    /// (endpoints are `host:port`, each resolved to every address it has) or `logical_dns` (the
    /// first address only); Envoy's upper-case spellings too.
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// How often DNS names are resolved again (default `5s`).
    pub dns_refresh_rate: Option<Dur>,
    /// Resolve again when the answer's TTL runs out rather than every `dns_refresh_rate`
    /// (default `false`).
    pub respect_dns_ttl: Option<bool>,
    /// `AUTO` (IPv6, else IPv4; the default), `V4_ONLY`, `V6_ONLY`, `V4_PREFERRED` or `ALL`.
    pub dns_lookup_family: Option<String>,
    /// DNS servers to ask (`IP` or `IP:port`) instead of the system's resolver.
    pub dns_resolvers: Option<Vec<String>>,
}

/// `circuit_breakers` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a circuit_breakers map")]
pub struct CircuitBreakersSpec {
    #[serde(default)]
    pub thresholds: Vec<Item<ThresholdsSpec>>,
}

/// One `thresholds` entry (Envoy's `Thresholds`; only the `DEFAULT` priority is routed here).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a thresholds map")]
pub struct ThresholdsSpec {
    pub priority: Option<String>,
    pub max_connections: Option<u32>,
    pub max_pending_requests: Option<u32>,
    pub max_requests: Option<u32>,
    pub max_retries: Option<u32>,
    pub retry_budget: Option<RetryBudgetSpec>,
    /// Publish the `remaining_*` gauges.
    pub track_remaining: Option<bool>,
}

/// `retry_budget`: retries allowed as a share of the requests in flight.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a retry_budget map")]
pub struct RetryBudgetSpec {
    /// Default 20 (`{value: 20}` or a number).
    pub budget_percent: Option<PercentSpec>,
    /// Default 3.
    pub min_retry_concurrency: Option<u32>,
}

/// `common_http_protocol_options` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a common_http_protocol_options map")]
pub struct CommonHttpOptionsSpec {
    pub idle_timeout: Option<Dur>,
    pub max_connection_duration: Option<Dur>,
    pub max_requests_per_connection: Option<u32>,
}

/// `health_checks:` item on a cluster (Envoy's `HealthCheck`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a health check map")]
pub struct HealthCheckSpec {
    /// How long one check may take (required).
    pub timeout: Option<Dur>,
    /// Time between checks of one endpoint (required).
    pub interval: Option<Dur>,
    /// A random extra wait of up to this much before each check (default `0s`).
    pub interval_jitter: Option<Dur>,
    /// ... and up to this percentage of the interval (default 0).
    pub interval_jitter_percent: Option<u32>,
    /// A random wait of up to this much before the first check (default `0s`).
    pub initial_jitter: Option<Dur>,
    /// Failed checks in a row that make a healthy endpoint unhealthy (default 3).
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks in a row that make an unhealthy endpoint healthy (default 2).
    pub healthy_threshold: Option<u32>,
    /// Interval while the cluster has seen no traffic (default `60s`).
    pub no_traffic_interval: Option<Dur>,
    /// Interval for an unhealthy endpoint (default: `interval`).
    pub unhealthy_interval: Option<Dur>,
    /// Interval after an endpoint turned unhealthy (default: `unhealthy_interval`).
    pub unhealthy_edge_interval: Option<Dur>,
    /// Interval after an endpoint turned healthy (default: `interval`).
    pub healthy_edge_interval: Option<Dur>,
    /// Keep the connection between checks (default `true`).
    pub reuse_connection: Option<bool>,
    /// Log every failed check, not only the transitions (default `false`).
    pub always_log_health_check_failures: Option<bool>,
    pub http_health_check: Option<HttpHealthCheckSpec>,
    pub tcp_health_check: Option<TcpHealthCheckSpec>,
    pub grpc_health_check: Option<GrpcHealthCheckSpec>,
}

/// `http_health_check` (Envoy's `HttpHealthCheck`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an http_health_check map")]
pub struct HttpHealthCheckSpec {
    /// The path requested (required).
    pub path: Option<String>,
    /// The Host header (default: the cluster's name).
    pub host: Option<String>,
    /// `GET` (default) or `HEAD`.
    pub method: Option<String>,
    /// Statuses that pass, as `[start, end)` ranges (default: only 200).
    pub expected_statuses: Option<Vec<StatusRangeSpec>>,
    /// Statuses that count as a failure towards `unhealthy_threshold` instead of failing the
    /// endpoint at once (default none).
    pub retriable_statuses: Option<Vec<StatusRangeSpec>>,
    /// Extra request headers: `[{header: {key, value}}]` as Envoy, or `{key: value}`.
    pub request_headers_to_add: Option<serde_json::Value>,
}

/// A `[start, end)` range of HTTP statuses (Envoy's `Int64Range`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a {start, end} map")]
pub struct StatusRangeSpec {
    pub start: i64,
    pub end: i64,
}

/// `tcp_health_check` (Envoy's `TcpHealthCheck`): connect, optionally send bytes and expect
/// bytes back.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tcp_health_check map")]
pub struct TcpHealthCheckSpec {
    pub send: Option<PayloadSpec>,
    /// Blocks that must each appear in the answer, in this order (not necessarily adjacent).
    pub receive: Option<Vec<PayloadSpec>>,
}

/// Envoy's `Payload`: `text` is hex, `binary` is base64.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(
    deny_unknown_fields,
    expecting = "a payload map ({text: hex} or {binary: base64})"
)]
pub struct PayloadSpec {
    pub text: Option<String>,
    pub binary: Option<String>,
}

/// `grpc_health_check` (Envoy's `GrpcHealthCheck`): `grpc.health.v1.Health/Check` over HTTP/2.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a grpc_health_check map")]
pub struct GrpcHealthCheckSpec {
    /// The service asked about (default empty: the server as a whole).
    pub service_name: Option<String>,
    /// `:authority` (default: the cluster's name).
    pub authority: Option<String>,
}

/// `outlier_detection` on a cluster (Envoy's `OutlierDetection`; same names, same defaults).
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an outlier_detection map")]
pub struct OutlierDetectionSpec {
    pub consecutive_5xx: Option<u32>,
    pub interval: Option<Dur>,
    pub base_ejection_time: Option<Dur>,
    pub max_ejection_time: Option<Dur>,
    pub max_ejection_percent: Option<u32>,
    pub enforcing_consecutive_5xx: Option<u32>,
    pub enforcing_success_rate: Option<u32>,
    pub success_rate_minimum_hosts: Option<u32>,
    pub success_rate_request_volume: Option<u32>,
    pub success_rate_stdev_factor: Option<u32>,
    pub consecutive_gateway_failure: Option<u32>,
    pub enforcing_consecutive_gateway_failure: Option<u32>,
    pub split_external_local_origin_errors: Option<bool>,
    pub consecutive_local_origin_failure: Option<u32>,
    pub enforcing_consecutive_local_origin_failure: Option<u32>,
    pub enforcing_local_origin_success_rate: Option<u32>,
    pub failure_percentage_threshold: Option<u32>,
    pub enforcing_failure_percentage: Option<u32>,
    pub enforcing_failure_percentage_local_origin: Option<u32>,
    pub failure_percentage_minimum_hosts: Option<u32>,
    pub failure_percentage_request_volume: Option<u32>,
    pub successful_active_health_check_uneject_host: Option<bool>,
}

/// `ring_hash_lb_config` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a ring_hash_lb_config map")]
pub struct RingHashLbConfigSpec {
    /// Default 1024.
    pub minimum_ring_size: Option<u64>,
    /// Default 8M (8388608).
    pub maximum_ring_size: Option<u64>,
    /// `XX_HASH` (default) or `MURMUR_HASH_2`.
    pub hash_function: Option<String>,
}

/// `maglev_lb_config` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a maglev_lb_config map")]
pub struct MaglevLbConfigSpec {
    /// A prime; default 65537.
    pub table_size: Option<u64>,
}

/// `round_robin_lb_config` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a round_robin_lb_config map")]
pub struct SlowStartHolderSpec {
    pub slow_start_config: Option<SlowStartSpec>,
}

/// `least_request_lb_config` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a least_request_lb_config map")]
pub struct LeastRequestLbConfigSpec {
    /// Hosts sampled per pick; only 2 (Envoy's default) is supported.
    pub choice_count: Option<u32>,
    pub slow_start_config: Option<SlowStartSpec>,
}

/// `slow_start_config`: a host that comes back takes a growing share over a window.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a slow_start_config map")]
pub struct SlowStartSpec {
    /// How long the ramp lasts (required).
    pub slow_start_window: Option<Dur>,
    /// The ramp's curve, weight × (t / window)^(1 / aggression) (default 1.0: linear;
    /// `{default_value: N}` as Envoy's runtime value, or a number).
    pub aggression: Option<serde_json::Value>,
    /// The least share of its weight a host starts with (default 10).
    pub min_weight_percent: Option<PercentSpec>,
}

/// `common_lb_config` on a cluster.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a common_lb_config map")]
pub struct CommonLbConfigSpec {
    /// Below this percentage of healthy endpoints, traffic goes to all of them (default 50;
    /// `{value: 50}` as Envoy's `Percent`, or a number).
    pub healthy_panic_threshold: Option<PercentSpec>,
}

/// A percentage: a number, or Envoy's `{value: N}`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "a percentage: a number or {value: N}")]
pub enum PercentSpec {
    Number(f64),
    Map { value: f64 },
}

impl PercentSpec {
    pub fn value(&self) -> f64 {
        match self {
            PercentSpec::Number(v) | PercentSpec::Map { value: v } => *v,
        }
    }
}

/// `tls:` on a cluster: originate TLS to every endpoint.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a tls map")]
#[schemars(transform = super::json_schema::aliases(&[("verify", "validation_context"), ("alpn", "alpn_protocols")]))]
pub struct UpstreamTlsSpec {
    /// The name sent as SNI, and the name the certificate must be valid for (unless
    /// `verify.subject_alt_names` says otherwise). Default: none sent, the certificate checked
    /// against the endpoint's IP address.
    pub sni: Option<String>,
    /// How the upstream's certificate is checked (default: against the system's CA bundle).
    #[serde(alias = "validation_context")]
    pub verify: Option<UpstreamVerifySpec>,
    /// A certificate to present to upstreams that ask for one (mTLS).
    pub client_cert: Option<TlsCertificateSpec>,
    /// Protocols offered by ALPN (`http/1.1`; default none).
    #[serde(alias = "alpn_protocols")]
    pub alpn: Option<Vec<String>>,
    /// TLS versions and TLS 1.2 cipher suites, as on a listener.
    pub tls_params: Option<TlsParamsSpec>,
}

/// `verify:` on a cluster's `tls`.
#[derive(Debug, Deserialize, Default, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "a verify map")]
#[schemars(transform = super::json_schema::aliases(&[("ca", "trusted_ca")]))]
pub struct UpstreamVerifySpec {
    /// CA certificates the upstream's chain must lead to (default: the system bundle).
    #[serde(alias = "trusted_ca")]
    pub ca: Option<DataSourceSpec>,
    /// Accept a certificate valid for any of these DNS names (instead of the SNI name).
    pub subject_alt_names: Option<Vec<String>>,
    /// Do not check the upstream's certificate at all (default false). For tests only.
    pub insecure_skip_verify: Option<bool>,
}

/// `upstream_proxy_protocol: {version: v1 | v2}` on a cluster (Envoy's `ProxyProtocolConfig`).
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an upstream_proxy_protocol map")]
pub struct UpstreamProxyProtocolSpec {
    /// `v1` (the text line) or `v2` (binary); `V1`/`V2` as Envoy spells them are accepted too.
    /// Default `v1`, as Envoy's.
    pub version: Option<ProxyProtocolVersionSpec>,
}

/// A PROXY protocol version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocolVersionSpec {
    /// `v1` / `V1`: the text line.
    V1,
    /// `v2` / `V2`: the binary header.
    V2,
}

const PROXY_PROTOCOL_VERSIONS: &[&str] = &["v1", "v2"];

impl<'de> Deserialize<'de> for ProxyProtocolVersionSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = ProxyProtocolVersionSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("one of `v1`, `v2`")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<ProxyProtocolVersionSpec, E> {
                match s {
                    "v1" | "V1" => Ok(ProxyProtocolVersionSpec::V1),
                    "v2" | "V2" => Ok(ProxyProtocolVersionSpec::V2),
                    _ => Err(E::unknown_variant(s, PROXY_PROTOCOL_VERSIONS)),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// Load-balancing policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LbPolicySpec {
    /// Weighted round robin.
    RoundRobin,
    /// Fewest active requests among two random picks (weighted).
    LeastRequest,
    /// Weighted random.
    Random,
    /// Consistent hashing on a ring (Ketama): `ring_hash_lb_config`.
    RingHash,
    /// Consistent hashing with Maglev's lookup table: `maglev_lb_config`.
    Maglev,
}

const LB_POLICIES: &[&str] = &[
    "round_robin",
    "least_request",
    "random",
    "ring_hash",
    "maglev",
];

impl<'de> Deserialize<'de> for LbPolicySpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = LbPolicySpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "one of `round_robin`, `least_request`, `random`, `ring_hash`, `maglev`",
                )
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<LbPolicySpec, E> {
                // Envoy's enum spelling (`RING_HASH`) is accepted too.
                match s.to_ascii_lowercase().as_str() {
                    "round_robin" => Ok(LbPolicySpec::RoundRobin),
                    "ring_hash" => Ok(LbPolicySpec::RingHash),
                    "maglev" => Ok(LbPolicySpec::Maglev),
                    "least_request" => Ok(LbPolicySpec::LeastRequest),
                    "random" => Ok(LbPolicySpec::Random),
                    _ => Err(E::unknown_variant(s, LB_POLICIES)),
                }
            }
        }
        d.deserialize_str(V)
    }
}

/// An endpoint: `"IP:port"` or `{address: "IP:port", weight: N}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointSpec {
    /// `IP:port`, port 1..=65535. Host names are not resolved yet.
    pub address: String,
    /// Relative share of traffic, at least 1 (default 1).
    pub weight: Option<u32>,
    /// Written as a map (`{address: ...}`) rather than a bare string: errors about the address
    /// then point at the `address` key.
    pub map_form: bool,
    /// Priority level (0, the default, is the highest): traffic spills to level N+1 as level
    /// N's healthy share drops.
    pub priority: Option<u32>,
}

/// The map form of an endpoint.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, expecting = "an endpoint map")]
pub(super) struct EndpointMap {
    /// `IP:port`.
    address: String,
    /// Relative share of traffic.
    weight: Option<u32>,
    /// Priority level.
    priority: Option<u32>,
}

impl<'de> Deserialize<'de> for EndpointSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> de::Visitor<'de> for V {
            type Value = EndpointSpec;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an endpoint \"IP:port\" or {address, weight}")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<EndpointSpec, E> {
                Ok(EndpointSpec {
                    address: s.to_owned(),
                    weight: None,
                    map_form: false,
                    priority: None,
                })
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<EndpointSpec, A::Error> {
                let m = EndpointMap::deserialize(MapAccessDeserializer::new(map))?;
                Ok(EndpointSpec {
                    address: m.address,
                    weight: m.weight,
                    map_form: true,
                    priority: m.priority,
                })
            }
        }
        d.deserialize_any(V)
    }
}
