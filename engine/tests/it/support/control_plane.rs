//! The xDS control plane the tests run (`xds_server.py`: Envoy's ADS service from Envoy's own
//! protos, Python grpcio) as a child process: started on a snapshot file, pushed new
//! snapshots, and read back for what the proxy asked (its requests' log).

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use serde_json::Value;

use super::line_reader;

const SERVER: &str = include_str!("xds_server.py");

/// The control plane process; stopped when dropped.
pub struct ControlPlane {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl ControlPlane {
    /// Serves `snapshot` from `dir` on `port` (0: any).
    pub fn start(dir: &Path, snapshot: &Value, port: u16) -> ControlPlane {
        ControlPlane::start_env(dir, snapshot, port, &[])
    }

    /// The same, with environment variables for the server (`XDS_TLS_CERT`, ...).
    pub fn start_env(
        dir: &Path,
        snapshot: &Value,
        port: u16,
        env: &[(&str, PathBuf)],
    ) -> ControlPlane {
        let script = dir.join("xds_server.py");
        std::fs::write(&script, SERVER).expect("write server");
        write_snapshot(dir, snapshot);
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(dir.join("snapshot.json"))
            .arg(dir.join("requests.log"))
            .env("XDS_LISTEN", format!("127.0.0.1:{port}"))
            .envs(env.iter().map(|(k, v)| (*k, v.as_os_str())))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("python3 with grpcio and xds-protos (run scripts/test.sh)");
        let lines = line_reader(child.stdout.take().expect("stdout"));
        let line = lines
            .recv_timeout(Duration::from_secs(30))
            .expect("the control plane printed its port");
        let port: u16 = line
            .trim()
            .strip_prefix("xds listening on ")
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("control plane said {line:?}"));
        ControlPlane {
            child,
            port,
            dir: dir.to_path_buf(),
        }
    }

    /// Replaces the snapshot (written aside, renamed over: the server never reads half).
    pub fn push(&self, snapshot: &Value) {
        write_snapshot(&self.dir, snapshot);
    }

    /// Every request the proxy sent, in order.
    pub fn requests(&self) -> Vec<Value> {
        std::fs::read_to_string(self.dir.join("requests.log"))
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect()
    }

    pub fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop();
    }
}

fn write_snapshot(dir: &Path, snapshot: &Value) {
    let tmp = dir.join("snapshot.json.tmp");
    std::fs::write(&tmp, snapshot.to_string()).expect("write snapshot");
    std::fs::rename(&tmp, dir.join("snapshot.json")).expect("rename snapshot");
}

/// A port free on 127.0.0.1 a moment ago (for configs that must name theirs up front).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
