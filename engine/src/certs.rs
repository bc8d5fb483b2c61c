//! Certificate reload, on the control side: SIGHUP or the admin's `POST /certs/reload` reads
//! the config file again, checks every TLS chain's certificates and keys as a start would
//! (a missing or unparsable file, or a key that does not match its certificate, refuses the
//! whole reload with the errors, naming the field and the file's line; the running
//! certificates stay), and sends each worker the new server configs
//! (`Control::ReloadCerts`), which it swaps in for new handshakes (`listener::tls::reload`).
//! Established connections keep the session they have: nothing is dropped.
//!
//! Only the TLS settings of the chains are applied; the rest of the file is checked but not
//! applied (that needs a restart), and the chains must be the same in number and order. The
//! chains' settings are matched by identity: the worker's TLS step remembers which `Arc` it was
//! built from or last updated to, and this side keeps the current ones alive.

use std::{
    path::PathBuf,
    sync::{Arc, Mutex},
};

use crate::{
    config::{Config, DownstreamTls},
    control::{CertUpdate, Control},
};

/// The TLS settings of every chain, in config order (listeners, then each one's chains and
/// its default chain).
fn tls_chains(cfg: &Config) -> Vec<Arc<DownstreamTls>> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        match &l.select {
            Some(sel) => {
                out.extend(sel.chains.iter().filter_map(|c| c.network.tls().cloned()));
                out.extend(sel.default.as_ref().and_then(|d| d.tls().cloned()));
            }
            None => out.extend(l.network.tls().cloned()),
        }
    }
    out
}

/// Reloads certificates from the config file; shared by the control thread and the admin.
pub struct CertReloader {
    path: Option<PathBuf>,
    current: Mutex<Vec<Arc<DownstreamTls>>>,
    controls: Vec<flume::Sender<Control>>,
}

impl std::fmt::Debug for CertReloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CertReloader")
    }
}

impl CertReloader {
    /// `path`: the config file the process was started with (`None`: reloads are refused).
    pub fn new(cfg: &Config, path: Option<PathBuf>, controls: Vec<flume::Sender<Control>>) -> Self {
        CertReloader {
            path,
            current: Mutex::new(tls_chains(cfg)),
            controls,
        }
    }

    /// Read the file again and send its certificates to every worker. `Ok`: a summary; `Err`:
    /// why nothing changed.
    pub fn reload(&self) -> Result<String, String> {
        let Some(path) = &self.path else {
            return Err("no config file to reload certificates from".into());
        };
        let cfg = crate::config::load(path)
            .map_err(|e| format!("{}: the running certificates stay\n{e}", path.display()))?;
        let new = tls_chains(&cfg);
        let mut current = self.current.lock().unwrap_or_else(|p| p.into_inner());
        if new.len() != current.len() {
            return Err(format!(
                "{}: {} TLS chains now, {} running: certificates are reloaded in place, a \
                 change of chains needs a restart; the running certificates stay",
                path.display(),
                new.len(),
                current.len()
            ));
        }
        let chains = current
            .iter()
            .zip(&new)
            .map(|(old, new)| {
                (
                    Arc::as_ptr(old) as usize,
                    Arc::as_ptr(new) as usize,
                    Arc::clone(&new.server),
                )
            })
            .collect();
        let update = Arc::new(CertUpdate { chains });
        for c in &self.controls {
            let _ = c.send(Control::ReloadCerts(Arc::clone(&update)));
        }
        let n = new.len();
        *current = new;
        Ok(format!(
            "reloaded the certificates of {n} TLS chain(s) from {}",
            path.display()
        ))
    }
}
