//! Config text for the proxy under test.

use std::net::SocketAddr;

/// A minimal config: one listener on port 0, every path routed to `cluster_addr`.
pub fn simple_config(cluster_addr: SocketAddr) -> String {
    format!(
        r#"listeners:
  - name: main
    address: 127.0.0.1:0
    filter_chains:
      - filters:
          - http_connection_manager:
              stat_prefix: main
              virtual_hosts:
                - name: all
                  domains: ["*"]
                  routes:
                    - match: {{ prefix: / }}
                      route: {{ cluster: origin }}
clusters:
  - name: origin
    connect_timeout: 1s
    endpoints: ["{cluster_addr}"]
"#
    )
}

/// `simple_config` plus `admin: {address: 127.0.0.1:0}` and extra top-level keys.
pub fn admin_config(cluster_addr: SocketAddr, extra: &str) -> String {
    format!(
        "admin:\n  address: 127.0.0.1:0\n{extra}{}",
        simple_config(cluster_addr)
    )
}
