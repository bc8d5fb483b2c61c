//! `listener_filters`, `filter_chain_match` and `default_filter_chain`: the accepted spellings,
//! the normalised model, and each error with its path and line (fixtures edit BASE).

use super::{assert_errors, edit, ok};
use crate::config::{Cidr, TransportProtocol};

#[test]
fn listener_filter_spellings_and_chain_match_model() {
    let c = ok(&edit(
        "    filter_chains:\n      - filters:\n",
        "    listener_filters:
      - tls_inspector
      - { name: envoy.filters.listener.proxy_protocol }
    listener_filters_timeout: 2s
    filter_chains:
      - filter_chain_match:
          server_names: [WWW.Example.TEST, \"*.example.test\", www.example.test]
          transport_protocol: tls
          application_protocols: [h2]
          source_prefix_ranges: [10.1.2.3/8, { address_prefix: \"::1\" }]
          destination_port: 443
        filters:\n",
    ));
    let sel = c.listeners[0].select.as_ref().expect("chain matching");
    assert!(sel.tls_inspector && sel.proxy_protocol);
    assert_eq!(sel.timeout, Some(std::time::Duration::from_secs(2)));
    let m = &sel.chains[0].matcher;
    assert_eq!(m.server_names, ["*.example.test", "www.example.test"]);
    assert_eq!(m.transport_protocol, Some(TransportProtocol::Tls));
    assert_eq!(m.destination_port, Some(443));
    assert_eq!(
        m.source_prefix_ranges,
        [
            Cidr {
                addr: "10.0.0.0".parse().unwrap(),
                len: 8
            },
            Cidr {
                addr: "::1".parse().unwrap(),
                len: 128
            }
        ]
    );
    // One chain, no match, no listener filters: no per-connection stage.
    assert!(ok(super::BASE).listeners[0].select.is_none());
    // `proxy_protocol: {}` alone turns it on.
    let c = ok(&edit(
        "    filter_chains:\n",
        "    listener_filters: [proxy_protocol: {}]\n    filter_chains:\n",
    ));
    assert!(c.listeners[0]
        .select
        .as_ref()
        .is_some_and(|s| s.proxy_protocol));
}

#[test]
fn listener_filter_and_chain_match_errors_name_field_and_line() {
    assert_errors(
        &edit(
            "    filter_chains:\n      - filters:\n",
            "    listener_filters: [tls_inspector, tls_inspector, { proxy_protocol: { version: 2 } }]
    filter_chains:
      - filter_chain_match:
          server_names: [\"bad name\", \"*.\"]
          source_prefix_ranges: [10.0.0.0/33, nowhere]
          destination_port: 0
        filters:\n",
        ),
        &[
            // Neither filter has settings yet.
            "listeners[0].listener_filters[2].proxy_protocol.version: unknown key, there are no fields (line 4)",
            "listeners[0].listener_filters[1]: this listener filter is already in the list (line 4)",
            "listeners[0].filter_chains[0].filter_chain_match.server_names[0]: invalid server name \"bad name\": expected a host name (`www.example.com`) or a wildcard (`*.example.com`) (line 7)",
            "listeners[0].filter_chains[0].filter_chain_match.server_names[1]: invalid server name \"*.\": expected a host name (`www.example.com`) or a wildcard (`*.example.com`) (line 7)",
            "listeners[0].filter_chains[0].filter_chain_match.source_prefix_ranges[0]: prefix length 33 is longer than the address (32 bits) (line 8)",
            "listeners[0].filter_chains[0].filter_chain_match.source_prefix_ranges[1]: invalid address \"nowhere\": expected an IPv4 or IPv6 address (line 8)",
            "listeners[0].filter_chains[0].filter_chain_match.destination_port: destination_port must be 1..=65535 (line 9)",
        ],
    );
}
