//! `listener_filters`, `filter_chain_match` and `default_filter_chain`: the accepted spellings,
//! the normalised model, and each error with its path and line (fixtures edit BASE).

use super::{assert_errors, edit, ok};
use crate::config::{Cidr, SourceType, TransportProtocol};

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
            "listeners[0].listener_filters[2].proxy_protocol.version: unknown key, expected `allow_requests_without_proxy_protocol` (line 4)",
            "listeners[0].listener_filters[1]: this listener filter is already in the list (line 4)",
            "listeners[0].filter_chains[0].filter_chain_match.server_names[0]: invalid server name \"bad name\": expected a host name (`www.example.com`) or a wildcard (`*.example.com`) (line 7)",
            "listeners[0].filter_chains[0].filter_chain_match.server_names[1]: invalid server name \"*.\": expected a host name (`www.example.com`) or a wildcard (`*.example.com`) (line 7)",
            "listeners[0].filter_chains[0].filter_chain_match.source_prefix_ranges[0]: prefix length 33 is longer than the address (32 bits) (line 8)",
            "listeners[0].filter_chains[0].filter_chain_match.source_prefix_ranges[1]: invalid address \"nowhere\": expected an IPv4 or IPv6 address (line 8)",
            "listeners[0].filter_chains[0].filter_chain_match.destination_port: destination_port must be 1..=65535 (line 9)",
        ],
    );
}

#[test]
fn destination_ranges_source_type_ports_and_optional_proxy_protocol() {
    let c = ok(&edit(
        "    filter_chains:\n      - filters:\n",
        "    listener_filters:
      - proxy_protocol: { allow_requests_without_proxy_protocol: true }
    access_log:
      - path: stdout
    filter_chains:
      - filter_chain_match:
          prefix_ranges: [\"192.0.2.7/24\", 10.0.0.1]
          source_type: SAME_IP_OR_LOOPBACK
          source_ports: [443, 80, 443]
        filters:\n",
    ));
    let sel = c.listeners[0].select.as_ref().expect("chain matching");
    assert!(sel.proxy_protocol && sel.allow_without_proxy_protocol);
    assert_eq!(sel.access_log.len(), 1);
    let m = &sel.chains[0].matcher;
    assert_eq!(
        m.prefix_ranges,
        [
            Cidr {
                addr: "10.0.0.1".parse().unwrap(),
                len: 32
            },
            Cidr {
                addr: "192.0.2.0".parse().unwrap(),
                len: 24
            },
        ]
    );
    assert_eq!(m.source_type, SourceType::SameIpOrLoopback);
    assert_eq!(m.source_ports, [80, 443]);
    assert!(m.needs_destination_ip());
    // The default: closed without a header.
    let c = ok(&edit(
        "    filter_chains:\n",
        "    listener_filters: [proxy_protocol]\n    filter_chains:\n",
    ));
    let sel = c.listeners[0].select.as_ref().expect("chain matching");
    assert!(!sel.allow_without_proxy_protocol);
    assert!(!sel.chains[0].matcher.needs_destination_ip());
    assert_errors(
        &edit(
            "    filter_chains:\n      - filters:\n",
            "    listener_filters:
      - proxy_protocol: { allow_requests_without_proxy_protocol: maybe }
    filter_chains:
      - filter_chain_match:
          prefix_ranges: [10.0.0.0/8, 10.0.0.300/32, \"::1/129\"]
          source_type: INTERNAL
          source_ports: [80, 0]
        filters:\n",
        ),
        &[
            "listeners[0].listener_filters[0].proxy_protocol.allow_requests_without_proxy_protocol: invalid type: string \"maybe\", expected a boolean (line 5)",
            "listeners[0].filter_chains[0].filter_chain_match.prefix_ranges[1]: invalid address \"10.0.0.300\": expected an IPv4 or IPv6 address (line 8)",
            "listeners[0].filter_chains[0].filter_chain_match.prefix_ranges[2]: prefix length 129 is longer than the address (128 bits) (line 8)",
            "listeners[0].filter_chains[0].filter_chain_match.source_type: unknown source_type \"INTERNAL\": expected `ANY`, `SAME_IP_OR_LOOPBACK` or `EXTERNAL` (line 9)",
            "listeners[0].filter_chains[0].filter_chain_match.source_ports[1]: a source port is 1..=65535 (line 10)",
        ],
    );
}
