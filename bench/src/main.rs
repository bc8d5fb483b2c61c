//! The `ringway-bench` command line: `origin`, `load`, `transfer` and `compare` (see the crate
//! docs of `ringway_bench` for what each does).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use bytes::Bytes;
use clap::{Args, Parser, Subcommand};
use ringway_bench::load::{self, LoadConfig, Protocol};
use ringway_bench::origin::{self, OriginConfig};
use ringway_bench::report::{compare, hdr, plot};
use ringway_bench::rt::parse_duration;
use ringway_bench::transfer::{self, parse_size, Direction, TransferConfig};

#[derive(Parser)]
#[command(
    name = "ringway-bench",
    version,
    about = "Latency benchmarking (closed and open loop, HTTP/1.1 and HTTP/2) and a fast origin server"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Run the origin server (prints "origin listening on ADDR"; on SIGINT/SIGTERM prints
    /// "origin served N requests").
    Origin(OriginArgs),
    /// Generate load against a URL and report throughput and latency.
    Load(Box<LoadArgs>),
    /// Move large bodies (download or upload) and report GB/s; every byte count is checked.
    Transfer(TransferArgs),
    /// Print saved JSON reports side by side (with ratios) and plot them together.
    Compare(CompareArgs),
}

#[derive(Args)]
#[command(group(clap::ArgGroup::new("direction").required(true).args(["download", "upload"])))]
struct TransferArgs {
    /// Target URL (http://). Its root uses the bench origin's paths: /bytes/SIZE?cl=1 to
    /// download, /upload to upload; any other path is used as given.
    url: String,
    /// GET a body of this size (e.g. 1GiB, 64MiB, 1G, 1000000) and discard it as it arrives.
    #[arg(long, value_parser = parse_size)]
    download: Option<u64>,
    /// POST a generated body of this size (Content-Length framed unless --chunked), streamed
    /// from one reusable buffer.
    #[arg(long, value_parser = parse_size)]
    upload: Option<u64>,
    /// Transfers at once.
    #[arg(short = 'c', long, default_value_t = 1)]
    connections: usize,
    /// Worker threads (default: one per allowed core, at most one per transfer).
    #[arg(short = 't', long)]
    workers: Option<usize>,
    /// Chunked framing: the upload's own, or (download at the URL's root) asks the origin for a
    /// chunked body.
    #[arg(long)]
    chunked: bool,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Longest one transfer may take, connect to last byte.
    #[arg(long, default_value = "120s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Name of this run in reports.
    #[arg(long)]
    label: Option<String>,
}

#[derive(Args)]
struct OriginArgs {
    /// Address to listen on (port 0 picks a free port).
    #[arg(long, default_value = "127.0.0.1:9000")]
    listen: SocketAddr,
    /// Worker threads, one per core (default: every allowed core).
    #[arg(long)]
    workers: Option<usize>,
    /// Size of the fixed response body in bytes.
    #[arg(long, default_value_t = 128)]
    body_size: usize,
    /// Wait this long before every response (e.g. 2ms).
    #[arg(long, value_parser = parse_duration)]
    delay: Option<Duration>,
    /// Status of the fixed response.
    #[arg(long, default_value_t = 200)]
    status: u16,
    /// Also accept HTTP/2 with prior knowledge (h2c) on the same port.
    #[arg(long)]
    h2c: bool,
    /// Serve TLS with this certificate chain (PEM); needs --tls-key. ALPN offers h2 and http/1.1.
    #[arg(long)]
    tls_cert: Option<PathBuf>,
    /// Private key (PEM) for --tls-cert.
    #[arg(long)]
    tls_key: Option<PathBuf>,
}

#[derive(Args)]
struct LoadArgs {
    /// Target URL (http:// or https://).
    url: String,
    /// Connections in total.
    #[arg(short = 'c', long, default_value_t = 64)]
    connections: usize,
    /// Measured duration (e.g. 10s, 1m).
    #[arg(short = 'd', long, default_value = "10s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before measuring (requests sent, not counted).
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    warmup: Duration,
    /// Constant rate in requests/s over all connections (open loop, coordinated-omission
    /// corrected). Without it: closed loop.
    #[arg(short = 'R', long)]
    rate: Option<f64>,
    /// Worker threads (default: one per allowed core).
    #[arg(short = 't', long)]
    workers: Option<usize>,
    /// HTTP/1.1 (the default).
    #[arg(long, conflicts_with = "http2")]
    http1: bool,
    /// HTTP/2 (h2 over TLS via ALPN, or h2c with prior knowledge for http://).
    #[arg(long)]
    http2: bool,
    /// Concurrent streams per HTTP/2 connection.
    #[arg(long, default_value_t = 16)]
    streams: usize,
    /// Request method.
    #[arg(short = 'X', long, default_value = "GET")]
    method: String,
    /// Extra request header, 'Name: value' (repeatable).
    #[arg(short = 'H', long = "header")]
    headers: Vec<String>,
    /// Send this file as the request body.
    #[arg(long)]
    body: Option<PathBuf>,
    /// Do not verify the server's certificate.
    #[arg(short = 'k', long)]
    insecure: bool,
    /// CA bundle (PEM) to verify the server with.
    #[arg(long)]
    cacert: Option<PathBuf>,
    /// Per-request timeout.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    timeout: Duration,
    /// Write the report as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Draw the percentile curve to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Write the HdrHistogram percentile distribution (text, ms) to this file.
    #[arg(long)]
    hdr: Option<PathBuf>,
    /// Name of this run in reports and plots.
    #[arg(long)]
    label: Option<String>,
    /// Do not print the percentile distribution.
    #[arg(long)]
    no_distribution: bool,
    /// Open a new TCP connection for every request (sent with `Connection: close`; the client
    /// waits for the server's close). -c is then the number of concurrent request slots.
    /// HTTP/1.1 only.
    #[arg(long, conflicts_with = "http2")]
    new_connection_per_request: bool,
    /// https: resume TLS sessions on new connections (TLS 1.3 tickets, TLS 1.2 session IDs or
    /// tickets). Off by default, so that every new connection pays a full handshake.
    #[arg(long)]
    tls_resume: bool,
    /// https: offer only this TLS version (1.2 or 1.3; default both).
    #[arg(long, value_parser = ["1.2", "1.3"])]
    tls_version: Option<String>,
}

#[derive(Args)]
struct CompareArgs {
    /// JSON reports written by `load --json`.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Draw all percentile curves to this SVG file.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Chart title.
    #[arg(long)]
    title: Option<String>,
}

fn main() {
    let cli = Cli::parse();
    let res = match cli.cmd {
        Cmd::Origin(a) => run_origin(a),
        Cmd::Load(a) => run_load(*a),
        Cmd::Transfer(a) => run_transfer(a),
        Cmd::Compare(a) => compare::run(&a.files, a.plot.as_deref(), a.title.as_deref()),
    };
    if let Err(e) = res {
        eprintln!("ringway-bench: {e:#}");
        std::process::exit(1);
    }
}

fn run_origin(a: OriginArgs) -> anyhow::Result<()> {
    let workers = a
        .workers
        .unwrap_or_else(|| ringway_bench::rt::allowed_cores().len().max(1));
    origin::run(OriginConfig {
        listen: a.listen,
        workers,
        body_size: a.body_size,
        delay: a.delay,
        status: a.status,
        h2c: a.h2c,
        tls_cert: a.tls_cert,
        tls_key: a.tls_key,
    })
}

/// `Name: value` arguments as pairs.
fn parse_headers(list: &[String]) -> anyhow::Result<Vec<(String, String)>> {
    let mut headers = Vec::new();
    for h in list {
        let Some((k, v)) = h.split_once(':') else {
            bail!("header '{h}' is not 'Name: value'")
        };
        let k = k.trim();
        if k.is_empty() || !k.bytes().all(|b| b.is_ascii_graphic() && b != b':') {
            bail!("bad header name in '{h}'");
        }
        headers.push((k.to_string(), v.trim().to_string()));
    }
    Ok(headers)
}

fn run_transfer(a: TransferArgs) -> anyhow::Result<()> {
    let (direction, size) = match (a.download, a.upload) {
        (Some(n), None) => (Direction::Download, n),
        (None, Some(n)) => (Direction::Upload, n),
        _ => bail!("give one of --download SIZE or --upload SIZE"),
    };
    let cfg = TransferConfig {
        url: a.url.clone(),
        direction,
        size,
        transfers: a.connections,
        workers: a.workers,
        chunked: a.chunked,
        headers: parse_headers(&a.headers)?,
        timeout: a.timeout,
        label: a.label.clone(),
    };
    let report = transfer::run(&cfg)?;
    print!("{}", report.summary());
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("write {}", p.display()))?;
    }
    if !report.errors.is_empty() {
        bail!(
            "{} of {} transfers failed",
            report.errors.len(),
            report.transfers
        );
    }
    Ok(())
}

fn run_load(a: LoadArgs) -> anyhow::Result<()> {
    let headers = parse_headers(&a.headers)?;
    let body = match &a.body {
        Some(p) => Some(Bytes::from(
            std::fs::read(p).with_context(|| format!("read body {}", p.display()))?,
        )),
        None => None,
    };
    let cfg = LoadConfig {
        url: a.url.clone(),
        connections: a.connections,
        duration: a.duration,
        warmup: a.warmup,
        rate: a.rate,
        workers: a.workers,
        protocol: if a.http2 {
            Protocol::Http2 { streams: a.streams }
        } else {
            Protocol::Http1
        },
        method: a.method.clone(),
        headers,
        body,
        insecure: a.insecure,
        cacert: a.cacert.clone(),
        timeout: a.timeout,
        label: a.label.clone(),
        new_connection_per_request: a.new_connection_per_request,
        tls_resume: a.tls_resume,
        tls_version: a.tls_version.clone(),
    };
    let _ = a.http1;
    let (report, stats) = load::run(&cfg)?;
    print!("{}", report.summary());
    let dist = hdr::distribution_text(&stats.hist);
    if !a.no_distribution && stats.requests > 0 {
        println!("\n  Detailed percentile spectrum (HdrHistogram, ms):");
        print!("{dist}");
    }
    if let Some(p) = &a.hdr {
        std::fs::write(p, &dist).with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(p) = &a.json {
        std::fs::write(p, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("write {}", p.display()))?;
    }
    if let Some(p) = &a.plot {
        let s = plot::Series {
            label: &report.label,
            points: &report.distribution,
        };
        let title = format!("{} ({} loop)", report.url, report.mode);
        std::fs::write(p, plot::svg(&title, &[s]))
            .with_context(|| format!("write {}", p.display()))?;
    }
    if report.requests == 0 {
        bail!("no request completed ({} errors)", report.errors.total);
    }
    Ok(())
}
