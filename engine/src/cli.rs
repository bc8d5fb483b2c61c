//! The command line: `ringway [run] -c FILE`, `ringway validate -c FILE`, `ringway schema`,
//! `--workers`, `--cpu-affinity`, `--log-level`, `--version`. Exit codes: 0 ok, 1 invalid
//! config, 2 could not start.

use std::{io::Write, path::PathBuf, process::ExitCode, sync::Arc};

use clap::{Args, Parser, Subcommand};

use crate::{config, runtime};

#[derive(Debug, Parser)]
#[command(
    name = "ringway",
    version,
    about = "A thread-per-core io_uring L4/L7 proxy",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub run: RunArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the proxy (the default).
    Run(RunArgs),
    /// Check a config file: print a one-line summary, or every error with its place.
    Validate {
        /// Config file (.yaml, .yml or .json).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        #[command(flatten)]
        dialect: DialectArgs,
    },
    /// Print a config file in ringway's own format (an Envoy v3 bootstrap translated), as
    /// YAML; Envoy fields ringway does not support are listed with their place.
    Convert {
        /// Config file (.yaml, .yml or .json).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        #[command(flatten)]
        dialect: DialectArgs,
    },
    /// Which listener, filter chain, virtual host, route, cluster and HTTP filters a request
    /// would take (exit 0; 3 when nothing matches; 1 for an invalid config).
    Route {
        /// Config file (.yaml, .yml or .json).
        #[arg(short = 'c', long = "config")]
        config: PathBuf,
        /// The request's Host.
        #[arg(long, default_value = "")]
        host: String,
        /// The request's path (and query).
        #[arg(long, default_value = "/")]
        path: String,
        #[arg(long, default_value = "GET")]
        method: String,
        /// A request header, `Name: value` (repeatable).
        #[arg(long = "header", value_name = "NAME:VALUE")]
        headers: Vec<String>,
        /// The listener, by name (default: the first HTTP one).
        #[arg(long)]
        listener: Option<String>,
        /// The listener by port, and the destination port chains match on.
        #[arg(long)]
        port: Option<u16>,
        /// The TLS server name (SNI) the client would send.
        #[arg(long)]
        sni: Option<String>,
    },
    /// Print the config file's JSON Schema (for editors; config/ringway.schema.json is a copy).
    Schema,
}

/// Which language the config file is in.
#[derive(Debug, Args, Default, Clone, Copy)]
pub struct DialectArgs {
    /// `auto` (an Envoy v3 bootstrap when the file has Envoy's top-level keys:
    /// `static_resources`, `dynamic_resources`, or an `admin.address` map), `ringway` or `envoy`.
    #[arg(long = "format", value_name = "auto|ringway|envoy", default_value = "auto", value_parser = parse_dialect)]
    pub dialect: config::Dialect,
    /// Envoy fields ringway does not support are left out with a warning instead of refused.
    #[arg(long)]
    pub allow_unsupported: bool,
}

impl DialectArgs {
    fn options(self) -> config::LoadOptions {
        config::LoadOptions {
            dialect: self.dialect,
            allow_unsupported: self.allow_unsupported,
        }
    }
}

fn parse_dialect(s: &str) -> Result<config::Dialect, String> {
    s.parse()
}

#[derive(Debug, Args, Default)]
pub struct RunArgs {
    /// Config file (.yaml, .yml or .json).
    #[arg(short = 'c', long = "config")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub dialect: DialectArgs,
    /// Worker threads (one per core); overrides `workers` in the config.
    #[arg(long)]
    pub workers: Option<usize>,
    /// Where workers run: `auto` (one pinned per core), `none` (not pinned) or CPU ids such as
    /// `0,2`; overrides `cpu_affinity` in the config.
    #[arg(long, value_name = "auto|none|CPUS", value_parser = config::cpus::parse_flag)]
    pub cpu_affinity: Option<config::CpuAffinity>,
    /// Log level: error, warn, info, debug, trace (or a tracing filter such as `ringway_engine=debug`).
    #[arg(long, default_value = "info", env = "RINGWAY_LOG")]
    pub log_level: String,
    /// Binary upgrade: take the listening sockets of the ringway that serves `--upgrade-socket`
    /// at PATH, serve on them, then tell it to drain and exit.
    #[arg(long, value_name = "PATH")]
    pub upgrade_from: Option<PathBuf>,
    /// Listen at PATH (a Unix socket) for a successor started with `--upgrade-from PATH`.
    #[arg(long, value_name = "PATH")]
    pub upgrade_socket: Option<PathBuf>,
    /// I/O driver: `auto` (io_uring, or epoll with a warning where io_uring is refused),
    /// `io_uring` (refuse to start without it) or `epoll`; overrides `io_driver` in the config
    /// and `RINGWAY_IO_DRIVER`.
    #[arg(long, value_name = "auto|io_uring|epoll", value_parser = parse_io_driver)]
    pub io_driver: Option<config::IoDriverMode>,
}

fn parse_io_driver(s: &str) -> Result<config::IoDriverMode, String> {
    s.parse()
}

/// Set up logging to stderr; the returned handle changes the filter at run time (the admin
/// server's `POST /logging`).
fn init_logs(level: &str) -> Option<crate::admin::LogReload> {
    use tracing_subscriber::{layer::SubscriberExt, util::SubscriberInitExt};
    let filter = tracing_subscriber::EnvFilter::try_new(level)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let (filter, handle) = tracing_subscriber::reload::Layer::new(filter);
    // Colours only on a terminal: a log redirected to a file gets no escape codes.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt = tracing_subscriber::fmt::layer()
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .with_target(false);
    tracing_subscriber::registry()
        .with(filter)
        .with(fmt)
        .try_init()
        .ok()?;
    Some(crate::admin::LogReload::new(move |level: &str| {
        let f = tracing_subscriber::EnvFilter::try_new(level).map_err(|e| e.to_string())?;
        handle.reload(f).map_err(|e| e.to_string())
    }))
}

/// Entry point of the `ringway` binary.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Validate { config, dialect }) => validate(&config, &dialect.options()),
        Some(Command::Convert { config, dialect }) => convert(&config, &dialect.options()),
        Some(Command::Route {
            config,
            host,
            path,
            method,
            headers,
            listener,
            port,
            sni,
        }) => crate::route_cmd::run(
            &config,
            &crate::route_cmd::Probe {
                host,
                path,
                method,
                headers: headers
                    .iter()
                    .map(|h| match h.split_once(':') {
                        Some((k, v)) => (k.trim().to_string(), v.trim().to_string()),
                        None => (h.trim().to_string(), String::new()),
                    })
                    .collect(),
                listener,
                port,
                sni,
            },
        ),
        Some(Command::Schema) => {
            print!("{}", config::json_schema::generate());
            ExitCode::SUCCESS
        }
        Some(Command::Run(args)) => run(args),
        None => run(cli.run),
    }
}

/// `ringway convert`: the translated document on stdout; unsupported fields (left out with
/// `--allow-unsupported`) as comments at its top; errors on stderr, exit 1.
fn convert(path: &std::path::Path, opts: &config::LoadOptions) -> ExitCode {
    let translated = match config::translate(path, opts) {
        Ok(t) => t,
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::from(1);
        }
    };
    let mut out = String::new();
    if translated.from_envoy {
        out.push_str(&format!(
            "# ringway config translated from the Envoy bootstrap {}\n",
            path.display()
        ));
    }
    for w in &translated.warnings.errors {
        out.push_str(&format!("# left out: {w}\n"));
    }
    out.push_str(&config::emit::to_yaml(&translated.document));
    print!("{out}");
    ExitCode::SUCCESS
}

fn validate(path: &std::path::Path, opts: &config::LoadOptions) -> ExitCode {
    match config::load_with(path, opts) {
        Ok(cfg) => {
            println!("{}: ok: {}", path.display(), cfg.summary());
            ExitCode::SUCCESS
        }
        Err(errs) => {
            eprintln!("{errs}");
            ExitCode::from(1)
        }
    }
}

fn run(args: RunArgs) -> ExitCode {
    // First of all, before the logger or anything that can start a thread: block the shutdown
    // signals, so every thread inherits the mask and only the control thread's `sigwait` takes
    // them (a SIGTERM while starting, or a second one while draining, must not end the process
    // by its default action). `runtime::run` waits for them.
    let _ = crate::signals::Signals::block();
    let log_reload = init_logs(&args.log_level);
    let Some(path) = args.config else {
        eprintln!("ringway: no config file given (use -c FILE; `ringway --help` for more)");
        return ExitCode::from(2);
    };
    if args.workers == Some(0) {
        eprintln!("ringway: --workers must be at least 1");
        return ExitCode::from(2);
    }
    let load = args.dialect.options();
    let cfg = match config::load_with(&path, &load) {
        Ok(c) => Arc::new(c),
        Err(errs) => {
            eprintln!("{errs}");
            return ExitCode::from(1);
        }
    };
    let opts = runtime::RunOptions {
        workers: args.workers,
        cpu_affinity: args.cpu_affinity,
        log_reload,
        config_path: Some(path.clone()),
        load,
        upgrade_from: args.upgrade_from,
        upgrade_socket: args.upgrade_socket,
        io_driver: args.io_driver,
    };
    let res = runtime::run(cfg, &opts, |name, addr| {
        // Machine-readable: tests and scripts read the bound address (port 0 picks one).
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ringway: listener {name} bound to {addr}");
        let _ = out.flush();
    });
    match res {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ringway: {e}");
            ExitCode::from(2)
        }
    }
}
