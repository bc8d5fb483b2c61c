//! Validation of a `tcp_proxy` network filter: a stat prefix, a cluster that exists, an idle
//! timeout (`0s` disables it), at least one connect attempt, and its access logs.

use super::{ClusterNames, Problems};
use crate::config::{defaults, model::TcpProxy, path::DocPath, schema::TcpProxySpec};

pub(super) fn tcp_proxy(
    spec: &TcpProxySpec,
    listener_name: &str,
    path: &DocPath,
    clusters: &ClusterNames,
    problems: &mut Problems,
) -> Option<TcpProxy> {
    let stat_prefix = match &spec.stat_prefix {
        Some(p) if p.is_empty() => {
            problems.value(&path.key("stat_prefix"), "stat_prefix must not be empty");
            p.clone()
        }
        Some(p) => p.clone(),
        None => {
            problems.filled(&path.key("stat_prefix"), &listener_name);
            listener_name.to_owned()
        }
    };
    let cluster = match clusters.ids.get(&spec.cluster) {
        Some(&id) => Some(id),
        None => {
            if !clusters.broken.contains(&spec.cluster) {
                problems.value(
                    &path.key("cluster"),
                    format!(
                        "unknown cluster {:?} (not defined under clusters){}",
                        spec.cluster,
                        crate::config::suggest::hint(
                            &spec.cluster,
                            clusters.ids.keys().map(String::as_str)
                        )
                    ),
                );
            }
            None
        }
    };
    let max_connect_attempts = problems.or(
        spec.max_connect_attempts,
        &path.key("max_connect_attempts"),
        defaults::TCP_PROXY_MAX_CONNECT_ATTEMPTS,
    );
    if max_connect_attempts == 0 {
        problems.value(
            &path.key("max_connect_attempts"),
            "max_connect_attempts must be at least 1",
        );
    }
    let idle_timeout = Some(problems.or(
        spec.idle_timeout.map(|d| d.0),
        &path.key("idle_timeout"),
        defaults::TCP_PROXY_IDLE_TIMEOUT,
    ))
    .filter(|d| !d.is_zero());
    let access_log =
        super::access_log::access_logs(&spec.access_log, &path.key("access_log"), problems);
    Some(TcpProxy {
        tls: None,
        stat_prefix,
        cluster: cluster?,
        cluster_name: spec.cluster.clone(),
        idle_timeout,
        max_connect_attempts,
        access_log,
    })
}
