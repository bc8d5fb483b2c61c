//! The xDS client: one aggregated discovery service (ADS) stream to a control plane, over gRPC,
//! on a thread of its own (`ringway-xds`, a tokio current-thread runtime: never on a worker's
//! ring). It subscribes to clusters (CDS) and listeners (LDS), then to the endpoints (EDS) and
//! route configurations (RDS) those name, as Envoy does.
//!
//! ```text
//! control plane ─DiscoveryResponse─▶ decode (prost-reflect: protobuf -> Envoy's JSON form)
//!   ─▶ config::envoy (translate) ─▶ candidate Dynamic ─▶ config::load_composed (validate)
//!   ├─ invalid: NACK with the errors, the last good resources stay
//!   ├─ warming (EDS/RDS not there yet): ACK, kept; applied when complete, or at
//!   │  `initial_fetch_timeout` without what is missing
//!   └─ complete: Update ─▶ control thread (SIGUSR1) ─▶ new generation of workers, the same swap
//!      as a file reload ─▶ ACK (or NACK when the control thread could not apply it)
//! ```
//!
//! Both variants: state of the world (`api_type: GRPC`, each listener or cluster response is the
//! whole set) and incremental (`DELTA_GRPC`: what changed and what was removed, each resource
//! with its version, which a reconnect sends back as `initial_resource_versions`). A lost stream is reconnected with jittered exponential back-off (0.5 s doubling to 30 s);
//! the config in force keeps serving meanwhile. What the control plane sent last (by type:
//! version, resource names) is in [`Shared::status`], which `/config_dump` shows.
//!
//! Decoding needs the descriptor of every type a resource embeds (`typed_config`): the set in
//! `envoy-types.binpb` holds the five resource types and every extension the translator knows
//! (TLS transport sockets, tcp_proxy, the access loggers, ringway's HTTP filters, upstream HTTP
//! protocol options), Envoy's own descriptors from PyPI's `xds-protos`
//! (`scripts/xds-descriptors.py` writes it). A resource embedding any other type is refused by
//! NACK naming the type.

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
    time::Duration,
};

use prost_reflect::{DescriptorPool, DynamicMessage, SerializeOptions};
use rustls::pki_types::ServerName;
use serde_json::{json, Value};
use xds_api::pb::{
    envoy::{
        config::core::v3::Node as PbNode,
        service::discovery::v3::{
            aggregated_discovery_service_client::AggregatedDiscoveryServiceClient,
            DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
        },
    },
    google::{protobuf::Any, rpc::Status},
};

use crate::config::{self, compose::Dynamic, envoy, Config, ConfigErrors, Lines};

pub const LISTENER: &str = "type.googleapis.com/envoy.config.listener.v3.Listener";
pub const ROUTE: &str = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration";
pub const CLUSTER: &str = "type.googleapis.com/envoy.config.cluster.v3.Cluster";
pub const ENDPOINT: &str = "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment";
pub const SECRET: &str = "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret";

/// Back-off between connection attempts: doubling from this...
const BACKOFF_BASE: Duration = Duration::from_millis(500);
/// ...up to this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// How long the control thread may take to apply an update.
const APPLY_WAIT: Duration = Duration::from_secs(60);

/// A config for the control thread to put in force; the answer goes back on `reply`.
#[derive(Debug)]
pub struct Update {
    pub config: Arc<Config>,
    pub reply: flume::Sender<Result<String, String>>,
}

/// Counters (`config.xds.*` in the stats).
#[derive(Debug, Default)]
pub struct Stats {
    /// 1 while the stream is up (Envoy's `control_plane.connected_state`).
    pub connected: AtomicU64,
    pub connect_fail: AtomicU64,
    pub update_success: AtomicU64,
    pub update_rejected: AtomicU64,
}

/// Shared by the xDS thread and the control thread.
#[derive(Debug)]
pub struct Shared {
    /// The resources accepted (ACKed) last.
    dynamic: Mutex<Dynamic>,
    /// Per type URL: the version and names accepted last.
    status: Mutex<BTreeMap<&'static str, Value>>,
    /// The file's own document, to compose with.
    file: Mutex<(Arc<Value>, String)>,
    /// The composed document in force (set by the control thread after every switch): an
    /// update that composes to the same document is ACKed without a new generation.
    in_force: Mutex<Option<Arc<Value>>>,
    updates_tx: flume::Sender<Update>,
    updates_rx: flume::Receiver<Update>,
    pub stats: Stats,
    allow_unsupported: bool,
}

impl Shared {
    pub fn new(file: Arc<Value>, source: String, allow_unsupported: bool) -> Shared {
        let (updates_tx, updates_rx) = flume::unbounded();
        Shared {
            dynamic: Mutex::new(Dynamic::default()),
            status: Mutex::new(BTreeMap::new()),
            file: Mutex::new((file, source)),
            in_force: Mutex::new(None),
            updates_tx,
            updates_rx,
            stats: Stats::default(),
            allow_unsupported,
        }
    }

    /// The config now in force (control thread, at start and after every switch).
    pub fn set_in_force(&self, cfg: &Config) {
        *lock(&self.in_force) = cfg.document.clone();
    }

    /// The first update, waited for at start (at most `timeout`).
    pub fn wait_update(&self, timeout: Duration) -> Option<Update> {
        self.updates_rx.recv_timeout(timeout).ok()
    }

    /// The next update the xDS thread asks to apply (control thread, on SIGUSR1).
    pub fn take_update(&self) -> Option<Update> {
        self.updates_rx.try_recv().ok()
    }

    /// A file reload: `loaded` (the file composed with nothing) composed again with the
    /// resources in force; the file's document is the one composed with from now on.
    pub fn recompose(&self, loaded: &Config) -> Result<Config, ConfigErrors> {
        let file = loaded
            .file_document
            .clone()
            .unwrap_or_else(|| Arc::new(Value::Null));
        *lock(&self.file) = (Arc::clone(&file), loaded.source.clone());
        let dynamic = lock(&self.dynamic).clone();
        config::load_composed(file, &dynamic, &loaded.source, &Lines::default())
    }

    /// What came from the control plane: by type, the version and the resource names.
    pub fn status(&self) -> Value {
        let status = lock(&self.status);
        json!({
            "connected": self.stats.connected.load(Ordering::Relaxed) == 1,
            "resources": status.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<serde_json::Map<_, _>>(),
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Starts the client for `cfg.xds` on its own thread.
pub fn start(cfg: &Config, shared: Arc<Shared>) -> Result<(), String> {
    let Some(x) = &cfg.xds else {
        return Ok(());
    };
    let cluster = &cfg.clusters[x.cluster];
    // TLS to the control plane: the cluster's own client config, offering only `h2`.
    let tls = cluster.tls.as_ref().map(|t| {
        let mut client = (*t.client).clone();
        client.alpn_protocols = vec![b"h2".to_vec()];
        (Arc::new(client), t.sni.clone())
    });
    let client = Client {
        shared,
        node: PbNode {
            id: cfg.node.id.clone(),
            cluster: cfg.node.cluster.clone(),
            user_agent_name: "ringway".to_owned(),
            ..Default::default()
        },
        endpoints: cluster.endpoints.iter().map(|e| e.address).collect(),
        connect_timeout: cluster.connect_timeout,
        tls,
        lds: x.lds,
        cds: x.cds,
        delta: x.delta,
        fetch_timeout: x.initial_fetch_timeout,
        types: BTreeMap::new(),
        initial: std::cell::Cell::new(true),
    };
    crate::background::spawn_background("ringway-xds", move || {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!(error = %e, "xds: cannot start the client's runtime");
                return;
            }
        };
        rt.block_on(client.run());
    })
    .map(|_| ())
    .map_err(|e| format!("cannot start the xds thread: {e}"))
}

/// Per type URL: what is subscribed, accepted and answered.
#[derive(Debug, Default, Clone)]
struct TypeState {
    /// Resource names asked for (empty: all, for listeners and clusters).
    names: BTreeSet<String>,
    /// The version accepted last (state of the world: the response's; incremental: the
    /// response's `system_version_info`, for the status only).
    version: String,
    /// The nonce of the last response.
    nonce: String,
    /// Incremental: the version of each resource held (sent again after a reconnect).
    versions: BTreeMap<String, String>,
}

struct Client {
    shared: Arc<Shared>,
    node: PbNode,
    endpoints: Vec<std::net::SocketAddr>,
    connect_timeout: Duration,
    /// TLS to the control plane: the client config and the server name (`None`: its address).
    tls: Option<TlsSettings>,
    lds: bool,
    cds: bool,
    delta: bool,
    fetch_timeout: Duration,
    types: BTreeMap<&'static str, TypeState>,
    /// Until the first update is in force, it waits for a response of every type subscribed
    /// to by wildcard (clusters and listeners), as Envoy's initialisation does.
    initial: std::cell::Cell<bool>,
}

/// The request side of a stream, either variant.
enum Tx {
    Sotw(tokio::sync::mpsc::UnboundedSender<DiscoveryRequest>),
    Delta(tokio::sync::mpsc::UnboundedSender<DeltaDiscoveryRequest>),
}

/// The stream's responses, of the variant it speaks.
enum Inbound {
    Sotw(tonic::Streaming<DiscoveryResponse>),
    Delta(tonic::Streaming<DeltaDiscoveryResponse>),
}

impl Inbound {
    /// The next response (`Some(None)`: one of a type not asked for), or `None` at the end.
    async fn next(&mut self) -> Result<Option<Option<Response>>, tonic::Status> {
        match self {
            Inbound::Sotw(s) => s.message().await.map(|m| m.map(sotw_response)),
            Inbound::Delta(d) => d.message().await.map(|m| m.map(delta_response)),
        }
    }
}

/// A response of either variant, in one shape.
struct Response {
    ty: &'static str,
    /// `version_info` (state of the world) or `system_version_info` (incremental).
    version: String,
    nonce: String,
    /// The resources, with their names and versions where the variant gives them.
    resources: Vec<(Option<String>, Option<String>, Any)>,
    /// Incremental: names removed.
    removed: Vec<String>,
}

fn type_of(url: &str) -> Option<&'static str> {
    [LISTENER, ROUTE, CLUSTER, ENDPOINT, SECRET]
        .into_iter()
        .find(|t| *t == url)
}

impl Client {
    async fn run(mut self) {
        let mut failures: u32 = 0;
        let mut next = 0usize;
        let seed = u64::from(std::process::id()) ^ now_nanos();
        let rng = crate::rng::Rng::new(seed);
        loop {
            let addr = self.endpoints[next % self.endpoints.len().max(1)];
            next += 1;
            match self.session(addr).await {
                Ok(()) => failures = 0,
                Err(e) => {
                    self.shared
                        .stats
                        .connect_fail
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(control_plane = %addr, error = %e, "xds: stream to the control plane lost; the config in force keeps serving");
                }
            }
            self.shared.stats.connected.store(0, Ordering::Relaxed);
            failures = failures.saturating_add(1);
            let cap = BACKOFF_BASE
                .saturating_mul(1 << failures.min(16))
                .min(BACKOFF_MAX);
            // Jittered over the upper half: many proxies do not come back in step.
            let half = cap.as_millis() as u64 / 2;
            let wait = Duration::from_millis(half + rng.below(half.max(1)));
            tokio::time::sleep(wait).await;
        }
    }

    /// One stream: connect, subscribe, answer responses until it ends. `Ok` when the stream
    /// had served (the back-off starts over).
    async fn session(&mut self, addr: std::net::SocketAddr) -> Result<(), String> {
        let endpoint = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .map_err(|e| e.to_string())?
            .connect_timeout(self.connect_timeout)
            .tcp_nodelay(true);
        let channel = match &self.tls {
            None => endpoint.connect().await,
            Some((config, sni)) => {
                let name = sni
                    .clone()
                    .unwrap_or_else(|| ServerName::IpAddress(addr.ip().into()));
                endpoint
                    .connect_with_connector(TlsConnect {
                        addr,
                        config: Arc::clone(config),
                        name,
                    })
                    .await
            }
        }
        .map_err(|e| format!("connect: {e}"))?;
        let mut client = AggregatedDiscoveryServiceClient::new(channel);
        if self.cds {
            self.types.entry(CLUSTER).or_default();
        }
        if self.lds {
            self.types.entry(LISTENER).or_default();
        }
        {
            let file = Arc::clone(&lock(&self.shared.file).0);
            let names = lock(&self.shared.dynamic).sds_names(&file);
            if !names.is_empty() {
                self.types.entry(SECRET).or_default().names = names;
            }
        }
        for st in self.types.values_mut() {
            st.nonce.clear();
        }
        // The first requests go out with the stream: every type subscribed, with the versions
        // accepted before (a reconnect resumes where it was).
        let first: Vec<&'static str> = [CLUSTER, ENDPOINT, LISTENER, ROUTE, SECRET]
            .into_iter()
            .filter(|t| self.types.contains_key(t))
            .collect();
        let (tx, mut inbound) = if self.delta {
            let (t, rx) = tokio::sync::mpsc::unbounded_channel::<DeltaDiscoveryRequest>();
            for ty in &first {
                let st = &self.types[ty];
                let _ = t.send(DeltaDiscoveryRequest {
                    node: Some(self.node.clone()),
                    type_url: (*ty).to_owned(),
                    resource_names_subscribe: st.names.iter().cloned().collect(),
                    initial_resource_versions: st
                        .versions
                        .iter()
                        .map(|(k, v)| (k.clone(), v.clone()))
                        .collect(),
                    ..Default::default()
                });
            }
            let outbound = outbound(rx);
            let inbound = client
                .delta_aggregated_resources(outbound)
                .await
                .map_err(|e| format!("stream: {e}"))?
                .into_inner();
            (Tx::Delta(t), Inbound::Delta(inbound))
        } else {
            let (t, rx) = tokio::sync::mpsc::unbounded_channel::<DiscoveryRequest>();
            for ty in &first {
                let _ = t.send(self.request(ty, &self.types[ty], None));
            }
            let outbound = outbound(rx);
            let inbound = client
                .stream_aggregated_resources(outbound)
                .await
                .map_err(|e| format!("stream: {e}"))?
                .into_inner();
            (Tx::Sotw(t), Inbound::Sotw(inbound))
        };
        self.shared.stats.connected.store(1, Ordering::Relaxed);
        tracing::info!(control_plane = %addr, delta = self.delta, "xds: stream to the control plane up");
        let mut served = false;
        // A warming composition waits at most `initial_fetch_timeout`.
        let mut apply_at: Option<tokio::time::Instant> = None;
        loop {
            let deadline = apply_at;
            let msg = tokio::select! {
                m = inbound.next() => m,
                () = async {
                    match deadline {
                        Some(d) => tokio::time::sleep_until(d).await,
                        None => std::future::pending().await,
                    }
                } => {
                    apply_at = None;
                    let dynamic = lock(&self.shared.dynamic).clone();
                    if let Err(e) = self.compose_and_apply(&dynamic, true).await {
                        tracing::error!("xds: applying without the resources still missing failed: {e}");
                    }
                    continue;
                }
            };
            let resp = match msg {
                Ok(Some(Some(r))) => r,
                Ok(Some(None)) => continue,
                Ok(None) if served => return Ok(()),
                Ok(None) => return Err("the control plane closed the stream".to_owned()),
                Err(status) if served => {
                    tracing::warn!(status = %status, "xds: stream ended");
                    return Ok(());
                }
                Err(status) => return Err(status.to_string()),
            };
            served = true;
            if let Some(wait) = self.handle(resp, &tx).await {
                if apply_at.is_none() {
                    apply_at = Some(tokio::time::Instant::now() + wait);
                }
            } else if self.complete() {
                apply_at = None;
            }
        }
    }

    fn request(&self, ty: &str, st: &TypeState, error: Option<String>) -> DiscoveryRequest {
        DiscoveryRequest {
            version_info: st.version.clone(),
            node: Some(self.node.clone()),
            resource_names: st.names.iter().cloned().collect(),
            type_url: ty.to_owned(),
            response_nonce: st.nonce.clone(),
            error_detail: error.map(status),
            ..Default::default()
        }
    }

    /// ACK (no error) or NACK the last response of `ty`.
    fn answer(&self, ty: &'static str, tx: &Tx, error: Option<String>) {
        let st = self.types.get(ty).cloned().unwrap_or_default();
        match tx {
            Tx::Sotw(t) => {
                let _ = t.send(self.request(ty, &st, error));
            }
            Tx::Delta(t) => {
                let _ = t.send(DeltaDiscoveryRequest {
                    type_url: ty.to_owned(),
                    response_nonce: st.nonce.clone(),
                    error_detail: error.map(status),
                    ..Default::default()
                });
            }
        }
    }

    /// Whether nothing the resources name is missing.
    fn complete(&self) -> bool {
        let d = lock(&self.shared.dynamic);
        let file = Arc::clone(&lock(&self.shared.file).0);
        d.eds_names().iter().all(|n| d.endpoints.contains_key(n))
            && d.rds_names().iter().all(|n| d.routes.contains_key(n))
            && d.sds_names(&file).iter().all(|n| d.secrets.contains_key(n))
    }

    /// One response: ACK or NACK it; returns how long to wait before applying a warming
    /// composition (`None`: applied, refused, or nothing to apply).
    async fn handle(&mut self, resp: Response, tx: &Tx) -> Option<Duration> {
        let started = std::time::Instant::now();
        let ty = resp.ty;
        self.types.entry(ty).or_default().nonce = resp.nonce.clone();
        let delta = self.delta;
        let anys: Vec<Any> = resp.resources.iter().map(|(_, _, a)| a.clone()).collect();
        let decoded = decode_all(ty, &anys, self.shared.allow_unsupported);
        let mut candidate = lock(&self.shared.dynamic).clone();
        let outcome = match decoded {
            Err(e) => Err(e),
            Ok(resources) => {
                let map = match ty {
                    LISTENER => &mut candidate.listeners,
                    ROUTE => &mut candidate.routes,
                    CLUSTER => &mut candidate.clusters,
                    SECRET => &mut candidate.secrets,
                    _ => &mut candidate.endpoints,
                };
                // State of the world: a listener or cluster response is the whole set (one
                // missing is removed); route and endpoint responses hold those they name.
                // Incremental: what changed, and the names removed.
                if !delta && (ty == LISTENER || ty == CLUSTER) {
                    map.clear();
                }
                for name in &resp.removed {
                    map.remove(name);
                }
                let mut names = Vec::new();
                for ((name, value), (given, _, _)) in resources.into_iter().zip(&resp.resources) {
                    let name = given.clone().filter(|g| !g.is_empty()).unwrap_or(name);
                    names.push(name.clone());
                    map.insert(name, value);
                }
                // Endpoints, routes and secrets no longer named by anything are dropped.
                let file = Arc::clone(&lock(&self.shared.file).0);
                let (eds, rds) = (candidate.eds_names(), candidate.rds_names());
                let sds = candidate.sds_names(&file);
                candidate.endpoints.retain(|k, _| eds.contains(k));
                candidate.routes.retain(|k, _| rds.contains(k));
                candidate.secrets.retain(|k, _| sds.contains(k));
                self.compose_and_apply(&candidate, false)
                    .await
                    .map(|w| (w, names))
            }
        };
        match outcome {
            Err(e) => {
                self.shared
                    .stats
                    .update_rejected
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(type_url = ty, version = %resp.version, "xds: update refused (NACK); the last good config stays:\n{e}");
                self.answer(ty, tx, Some(e));
                None
            }
            Ok((warming, _)) => {
                let st = self.types.entry(ty).or_default();
                st.version = resp.version.clone();
                for name in &resp.removed {
                    st.versions.remove(name);
                }
                for (name, version, _) in &resp.resources {
                    if let (Some(n), Some(v)) = (name, version) {
                        st.versions.insert(n.clone(), v.clone());
                    }
                }
                self.shared
                    .stats
                    .update_success
                    .fetch_add(1, Ordering::Relaxed);
                tracing::info!(
                    type_url = ty,
                    version = %resp.version,
                    resources = resp.resources.len(),
                    warming,
                    took_ms = started.elapsed().as_secs_f64() * 1000.0,
                    "xds: update accepted (ACK)"
                );
                let held = match ty {
                    LISTENER => candidate.listeners.keys(),
                    ROUTE => candidate.routes.keys(),
                    CLUSTER => candidate.clusters.keys(),
                    SECRET => candidate.secrets.keys(),
                    _ => candidate.endpoints.keys(),
                }
                .cloned()
                .collect::<Vec<_>>();
                lock(&self.shared.status)
                    .insert(ty, json!({ "version_info": resp.version, "names": held }));
                let (eds, rds) = (candidate.eds_names(), candidate.rds_names());
                let sds = candidate.sds_names(&lock(&self.shared.file).0);
                *lock(&self.shared.dynamic) = candidate;
                self.answer(ty, tx, None);
                // The endpoints, routes and secrets the new resources name.
                self.resubscribe(ENDPOINT, eds, tx);
                self.resubscribe(ROUTE, rds, tx);
                self.resubscribe(SECRET, sds, tx);
                warming.then_some(self.fetch_timeout)
            }
        }
    }

    fn resubscribe(&mut self, ty: &'static str, names: BTreeSet<String>, tx: &Tx) {
        let st = self.types.entry(ty).or_default();
        if st.names == names {
            return;
        }
        let added: Vec<String> = names.difference(&st.names).cloned().collect();
        let removed: Vec<String> = st.names.difference(&names).cloned().collect();
        st.names = names;
        for r in &removed {
            st.versions.remove(r);
        }
        match tx {
            Tx::Sotw(t) => {
                let st = st.clone();
                let _ = t.send(self.request(ty, &st, None));
            }
            Tx::Delta(t) => {
                let _ = t.send(DeltaDiscoveryRequest {
                    type_url: ty.to_owned(),
                    resource_names_subscribe: added,
                    resource_names_unsubscribe: removed,
                    ..Default::default()
                });
            }
        }
    }

    /// Validates `dynamic` composed with the file; when nothing is warming (or `force`), has
    /// the control thread put it in force. `Ok(true)`: valid but warming, not applied yet.
    async fn compose_and_apply(&self, dynamic: &Dynamic, force: bool) -> Result<bool, String> {
        let (file, source) = lock(&self.shared.file).clone();
        let cfg = config::load_composed(Arc::clone(&file), dynamic, &source, &Lines::default())
            .map_err(|e| named(&e, &config::compose::compose(&file, dynamic).0))?;
        let warming = cfg.warming.clone();
        let answered = |ty| self.types.get(ty).is_some_and(|st| !st.nonce.is_empty());
        let first_pending = self.initial.get()
            && ((self.cds && !answered(CLUSTER)) || (self.lds && !answered(LISTENER)));
        if !force && first_pending {
            return Ok(true);
        }
        if !force && (!warming.clusters.is_empty() || !warming.listeners.is_empty()) {
            tracing::info!(clusters = ?warming.clusters, listeners = ?warming.listeners, "xds: waiting for endpoints and routes before applying");
            return Ok(true);
        }
        // Nothing changed (a new version of the same resources, or a type whose resources
        // compose to what runs): no new generation.
        if cfg.document.is_some() && *lock(&self.shared.in_force) == cfg.document {
            return Ok(false);
        }
        let (reply, answer) = flume::bounded(1);
        self.shared
            .updates_tx
            .send(Update {
                config: Arc::new(cfg),
                reply,
            })
            .map_err(|_| "the control thread is gone".to_owned())?;
        // SAFETY: kill(2) on our own pid; only the control thread takes SIGUSR1.
        unsafe { libc::kill(libc::getpid(), libc::SIGUSR1) };
        match tokio::time::timeout(APPLY_WAIT, answer.recv_async()).await {
            Ok(Ok(Ok(msg))) => {
                tracing::info!("xds: {msg}");
                self.initial.set(false);
                Ok(false)
            }
            Ok(Ok(Err(e))) => Err(e),
            Ok(Err(_)) => Err("the control thread dropped the update".to_owned()),
            Err(_) => Err(format!(
                "the control thread did not apply the update within {APPLY_WAIT:?}"
            )),
        }
    }
}

/// The errors of a composed document, one per line, each under the name of the listener or
/// cluster it is in (`cluster "a": connect_timeout must be more than zero`) rather than its
/// index in the composition.
fn named(errors: &ConfigErrors, doc: &Value) -> String {
    errors
        .errors
        .iter()
        .map(|e| {
            for (list, what) in [("listeners", "listener"), ("clusters", "cluster")] {
                let Some(rest) = e.path.strip_prefix(list).and_then(|r| r.strip_prefix('[')) else {
                    continue;
                };
                let Some((index, tail)) = rest.split_once(']') else {
                    continue;
                };
                let name = index
                    .parse::<usize>()
                    .ok()
                    .and_then(|i| doc.get(list)?.get(i)?.get("name")?.as_str());
                if let Some(name) = name {
                    let tail = tail.trim_start_matches('.');
                    return match tail.is_empty() {
                        true => format!("{what} {name:?}: {}", e.message),
                        false => format!("{what} {name:?}: {tail}: {}", e.message),
                    };
                }
            }
            e.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

type TlsSettings = (Arc<rustls::ClientConfig>, Option<ServerName<'static>>);

/// tonic's connector for TLS to the control plane: TCP, then the cluster's rustls client
/// config (tokio-rustls), HTTP/2 by ALPN.
#[derive(Clone)]
struct TlsConnect {
    addr: std::net::SocketAddr,
    config: Arc<rustls::ClientConfig>,
    name: ServerName<'static>,
}

type TlsIo = hyper_util::rt::TokioIo<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

impl tower_service::Service<http::Uri> for TlsConnect {
    type Response = TlsIo;
    type Error = std::io::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<TlsIo, std::io::Error>> + Send>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), std::io::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, _: http::Uri) -> Self::Future {
        let me = self.clone();
        Box::pin(async move {
            let tcp = tokio::net::TcpStream::connect(me.addr).await?;
            tcp.set_nodelay(true)?;
            let tls = tokio_rustls::TlsConnector::from(me.config)
                .connect(me.name, tcp)
                .await?;
            Ok(hyper_util::rt::TokioIo::new(tls))
        })
    }
}

/// A NACK's detail: INVALID_ARGUMENT, as Envoy's.
fn status(message: String) -> Status {
    Status {
        code: 3,
        message,
        details: Vec::new(),
    }
}

/// The requests a stream sends, as the stream tonic takes.
fn outbound<T>(rx: tokio::sync::mpsc::UnboundedReceiver<T>) -> impl futures_util::Stream<Item = T> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|r| (r, rx)) })
}

/// A response's type, or `None` (logged) for one the client did not ask for.
fn response_type(url: &str) -> Option<&'static str> {
    let ty = type_of(url);
    if ty.is_none() {
        tracing::warn!(type_url = %url, "xds: a response of a type not asked for, ignored");
    }
    ty
}

fn sotw_response(r: DiscoveryResponse) -> Option<Response> {
    let ty = response_type(&r.type_url)?;
    Some(Response {
        ty,
        version: r.version_info,
        nonce: r.nonce,
        resources: r.resources.into_iter().map(|a| (None, None, a)).collect(),
        removed: Vec::new(),
    })
}

fn delta_response(r: DeltaDiscoveryResponse) -> Option<Response> {
    let ty = response_type(&r.type_url)?;
    Some(Response {
        ty,
        version: r.system_version_info,
        nonce: r.nonce,
        resources: r
            .resources
            .into_iter()
            .filter_map(|res| res.resource.map(|a| (Some(res.name), Some(res.version), a)))
            .collect(),
        removed: r.removed_resources,
    })
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// Envoy's descriptors of the resources and the extensions ringway translates (module docs).
static ENVOY_TYPES: &[u8] = include_bytes!("envoy-types.binpb");

fn pool() -> Option<&'static DescriptorPool> {
    static POOL: OnceLock<Option<DescriptorPool>> = OnceLock::new();
    POOL.get_or_init(|| DescriptorPool::decode(ENVOY_TYPES).ok())
        .as_ref()
}

/// A resource in Envoy's JSON form (proto field names, enums by name, `Any`s expanded).
pub fn to_json(any: &Any) -> Result<Value, String> {
    let name = any.type_url.rsplit('/').next().unwrap_or_default();
    let pool = pool().ok_or("the xDS descriptor set did not load")?;
    let desc = pool
        .get_message_by_name(name)
        .ok_or_else(|| format!("unknown type {name}"))?;
    let msg = DynamicMessage::decode(desc, any.value.as_slice()).map_err(|e| e.to_string())?;
    let opts = SerializeOptions::new()
        .use_proto_field_name(true)
        .skip_default_fields(true);
    msg.serialize_with_options(serde_json::value::Serializer, &opts)
        .map_err(|e| {
            let e = e.to_string();
            if e.contains("message") && e.contains("not found") || e.contains("unknown") {
                format!("{e}: an embedded type ringway does not translate")
            } else {
                e
            }
        })
}

/// Decodes and translates every resource of a response: `(name, ringway value)`, or every
/// problem found, one per line.
fn decode_all(
    ty: &str,
    resources: &[Any],
    allow_unsupported: bool,
) -> Result<Vec<(String, Value)>, String> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for (i, any) in resources.iter().enumerate() {
        if any.type_url != ty {
            errors.push(format!(
                "resources[{i}]: a {} in a response of {ty}",
                any.type_url
            ));
            continue;
        }
        let json = match to_json(any) {
            Ok(j) => j,
            Err(e) => {
                errors.push(format!("resources[{i}]: {e}"));
                continue;
            }
        };
        let name_key = if ty == ENDPOINT {
            "cluster_name"
        } else {
            "name"
        };
        let name = json
            .get(name_key)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let label = format!("{} {name:?}", short(ty));
        let (value, problems) = envoy::translate_resource(ty, &json, &label);
        match problems {
            Some(p)
                if !(allow_unsupported
                    && p.errors.iter().all(|e| e.message == envoy::UNSUPPORTED)) =>
            {
                for e in &p.errors {
                    errors.push(format!("{label}: {e}"));
                }
            }
            Some(p) => {
                for e in &p.errors {
                    tracing::warn!("xds: {label}: {e} (left out: --allow-unsupported)");
                }
                out.push((name, value));
            }
            None => out.push((name, value)),
        }
    }
    match errors.is_empty() {
        true => Ok(out),
        false => Err(errors.join("\n")),
    }
}

fn short(ty: &str) -> &'static str {
    match ty {
        LISTENER => "listener",
        ROUTE => "route configuration",
        CLUSTER => "cluster",
        SECRET => "secret",
        _ => "cluster load assignment",
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;
    use xds_api::pb::envoy::config::listener::v3::{filter, Filter, FilterChain, Listener};

    use super::*;

    /// A listener whose one network filter embeds `typed`.
    fn listener_with(typed: Any) -> Any {
        let l = Listener {
            name: "l".into(),
            filter_chains: vec![FilterChain {
                filters: vec![Filter {
                    name: "f".into(),
                    config_type: Some(filter::ConfigType::TypedConfig(typed)),
                }],
                ..Default::default()
            }],
            ..Default::default()
        };
        Any {
            type_url: LISTENER.into(),
            value: l.encode_to_vec(),
        }
    }

    #[test]
    fn embedded_extensions_decode_to_envoys_json() {
        // TcpProxy { stat_prefix: "t" (1), cluster: "c" (2) }, encoded by hand: the crate has
        // no type for it, which is why the descriptors are Envoy's own.
        let tcp = Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"
                .into(),
            value: vec![0x0a, 1, b't', 0x12, 1, b'c'],
        };
        let json = to_json(&listener_with(tcp)).unwrap();
        assert_eq!(
            json["filter_chains"][0]["filters"][0]["typed_config"],
            json!({"@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                   "stat_prefix": "t", "cluster": "c"})
        );
    }

    #[test]
    fn an_unknown_embedded_type_is_named() {
        let lua = Any {
            type_url: "type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua".into(),
            value: Vec::new(),
        };
        let e = to_json(&listener_with(lua)).unwrap_err();
        assert!(
            e.contains("envoy.extensions.filters.http.lua.v3.Lua")
                && e.contains("an embedded type ringway does not translate"),
            "{e}"
        );
        let top = Any {
            type_url: "type.googleapis.com/envoy.config.listener.v3.Nope".into(),
            value: Vec::new(),
        };
        assert_eq!(
            to_json(&top).unwrap_err(),
            "unknown type envoy.config.listener.v3.Nope"
        );
    }
}
