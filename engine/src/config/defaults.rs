//! Every default and limit of the config file, in one place. The schema leaves an omitted key as
//! `None`; `validate()` fills it from here, and docs/configuration.md quotes these values.

use std::time::Duration;

use super::model::LbPolicy;

/// `drain_timeout`: how long shutdown waits for in-flight requests.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// `park_idle_after`: long enough that a client pausing between requests keeps its task, short
/// enough that a mostly-idle crowd of connections costs almost nothing.
pub const PARK_IDLE_AFTER: Duration = Duration::from_secs(2);
/// `stats_flush_interval`: how often workers ship histograms to the aggregator.
pub const STATS_FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Highest `workers` count accepted (a typo guard, not a tuning knob).
pub const MAX_WORKERS: u64 = 1024;

/// `tracing.sample_rate`: every new trace is sampled (Envoy's and OpenTelemetry's default).
pub const TRACE_SAMPLE_RATE: f64 = 1.0;
/// `tracing.service_name`.
pub const TRACE_SERVICE_NAME: &str = "ringway";
/// `tracing.flush_interval`: spans are exported at least this often.
pub const TRACE_FLUSH_INTERVAL: Duration = Duration::from_secs(1);
/// `tracing.max_batch`: most spans in one export request.
pub const TRACE_MAX_BATCH: usize = 512;
/// Range of `tracing.max_batch`.
pub const TRACE_MAX_BATCH_RANGE: std::ops::RangeInclusive<usize> = 1..=10_000;
/// `tracing.collector.path` for `otlp_json`.
pub const OTLP_PATH: &str = "/v1/traces";
/// `tracing.collector.path` for `zipkin_json`.
pub const ZIPKIN_PATH: &str = "/api/v2/spans";
/// `tracing.collector.timeout`: one export request, connect included.
pub const TRACE_COLLECTOR_TIMEOUT: Duration = Duration::from_secs(5);

/// Listener `backlog`: the accept queue length.
pub const BACKLOG: u32 = 1024;

/// `max_request_headers_kb`: largest request head accepted, KiB.
pub const MAX_REQUEST_HEADERS_KB: u32 = 60;
/// Range of `max_request_headers_kb`.
pub const MAX_REQUEST_HEADERS_KB_RANGE: std::ops::RangeInclusive<u32> = 1..=96;
/// Longest request-target, bytes (capped at the head limit).
pub const MAX_URI_BYTES: usize = 8 * 1024;
/// `request_headers_timeout`: time for a whole request head once its first byte arrived.
pub const REQUEST_HEADERS_TIMEOUT: Duration = Duration::from_secs(10);
/// Connection manager `idle_timeout`: idle keep-alive downstream connections are closed.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// `request_body_timeout`: a request body making no progress this long is abandoned.
pub const REQUEST_BODY_TIMEOUT: Duration = Duration::from_secs(30);
/// `stream_idle_timeout`: an upgraded tunnel with no bytes either way is closed (Envoy's
/// default); `0s` disables it.
pub const STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);
/// `generate_request_id`: add `x-request-id` when the request has none.
pub const GENERATE_REQUEST_ID: bool = true;

/// `http2_protocol_options.max_concurrent_streams` (Envoy's recommendation for an edge proxy).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 100;
/// `http2_protocol_options.initial_stream_window_size`: what a client may send on one stream
/// ahead of the proxy forwarding it, so what the proxy buffers per stream at most (Envoy's edge
/// recommendation, 64 KiB).
pub const H2_STREAM_WINDOW: u32 = 65536;
/// `http2_protocol_options.initial_connection_window_size` (Envoy's edge recommendation, 1 MiB).
pub const H2_CONNECTION_WINDOW: u32 = 1024 * 1024;

/// `tcp_proxy.idle_timeout`: a connection with no byte either way is closed (Envoy's default);
/// `0s` disables it.
pub const TCP_PROXY_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);
/// `tcp_proxy.max_connect_attempts`: endpoints tried before a connection is given up.
pub const TCP_PROXY_MAX_CONNECT_ATTEMPTS: u32 = 1;

/// Route `timeout`: whole-request upstream timeout (Envoy's default); `0s` disables it.
pub const ROUTE_TIMEOUT: Duration = Duration::from_secs(15);
/// Redirect `response_code`.
pub const REDIRECT_RESPONSE_CODE: u16 = 301;
/// Redirect codes accepted.
pub const REDIRECT_RESPONSE_CODES: [u16; 5] = [301, 302, 303, 307, 308];
/// Range of `direct_response.status`.
pub const DIRECT_RESPONSE_STATUS_RANGE: std::ops::RangeInclusive<u16> = 200..=599;

/// Cluster `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Cluster `lb_policy`.
pub const LB_POLICY: LbPolicy = LbPolicy::RoundRobin;
/// Cluster `max_idle_per_endpoint`: idle keep-alive connections kept per endpoint per worker.
/// As many as the streams an HTTP/2 client side has in flight (10 clients x 100 streams): with
/// fewer, the connections beyond it are closed after each response and opened again, which
/// doubled the CPU per request of an HTTP/2 load (docs/benchmarks.md, "HTTP/2"). An idle
/// connection holds no buffer (its read is posted without one); Envoy keeps every connection.
pub const MAX_IDLE_PER_ENDPOINT: usize = 1024;
/// Cluster `idle_timeout`: idle upstream connections are closed after this.
pub const CLUSTER_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Endpoint `weight`.
pub const ENDPOINT_WEIGHT: u32 = 1;

/// How long listener filters wait for what they need (`listener_filters_timeout`, Envoy's 15s).
pub const LISTENER_FILTERS_TIMEOUT: Duration = Duration::from_secs(15);

/// Most filter chains on one listener (chain selection keeps its candidates in a 64-bit set).
pub const MAX_FILTER_CHAINS: usize = 64;
/// `xds.initial_fetch_timeout`: Envoy's.
pub const XDS_INITIAL_FETCH_TIMEOUT: Duration = Duration::from_secs(15);
