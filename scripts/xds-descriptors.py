#!/usr/bin/env python3
"""Writes the protobuf descriptors the xDS client decodes resources with (a maintainer's tool).

  pip install xds-protos && python3 scripts/xds-descriptors.py engine/src/xds/envoy-types.binpb

A resource from a control plane arrives as protobuf bytes in an `Any`; the client turns it into
Envoy's JSON form with prost-reflect, which needs the descriptor of every type the resource may
embed: the five resource types and every extension ringway translates (TLS transport sockets,
tcp_proxy, the access loggers, the HTTP filters ringway has, upstream HTTP protocol options,
tls_inspector). The descriptors come from PyPI's `xds-protos`, the generated code of Envoy's
data-plane-api, so they are Envoy's own: nothing here is written by hand. The set holds those
files and everything they import, source info left out (about 190 KB).

Add a module to EXTENSIONS when the translator (engine/src/config/envoy.rs) learns a type, then
run this again and commit the new file.
"""

import importlib
import sys

from google.protobuf import descriptor_pb2

RESOURCES = [
    "envoy.config.listener.v3.listener_pb2",
    "envoy.config.route.v3.route_pb2",
    "envoy.config.cluster.v3.cluster_pb2",
    "envoy.config.endpoint.v3.endpoint_pb2",
    "envoy.extensions.transport_sockets.tls.v3.secret_pb2",
]

EXTENSIONS = [
    "envoy.extensions.transport_sockets.tls.v3.tls_pb2",
    "envoy.extensions.filters.listener.tls_inspector.v3.tls_inspector_pb2",
    "envoy.extensions.filters.network.http_connection_manager.v3.http_connection_manager_pb2",
    "envoy.extensions.filters.network.tcp_proxy.v3.tcp_proxy_pb2",
    "envoy.extensions.access_loggers.file.v3.file_pb2",
    "envoy.extensions.access_loggers.stream.v3.stream_pb2",
    "envoy.extensions.upstreams.http.v3.http_protocol_options_pb2",
    "envoy.extensions.filters.http.router.v3.router_pb2",
    "envoy.extensions.filters.http.header_mutation.v3.header_mutation_pb2",
    "envoy.extensions.filters.http.cors.v3.cors_pb2",
    "envoy.extensions.filters.http.local_ratelimit.v3.local_rate_limit_pb2",
    "envoy.extensions.filters.http.fault.v3.fault_pb2",
    "envoy.extensions.filters.http.buffer.v3.buffer_pb2",
    "envoy.extensions.filters.http.compressor.v3.compressor_pb2",
    "envoy.extensions.filters.http.decompressor.v3.decompressor_pb2",
    "envoy.extensions.filters.http.cache.v3.cache_pb2",
    "envoy.extensions.filters.http.grpc_stats.v3.config_pb2",
    "envoy.extensions.filters.http.grpc_web.v3.grpc_web_pb2",
    "envoy.extensions.compression.gzip.compressor.v3.gzip_pb2",
    "envoy.extensions.compression.gzip.decompressor.v3.gzip_pb2",
    "envoy.extensions.http.cache.simple_http_cache.v3.config_pb2",
]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    files = {}

    def add(fd):
        if fd.name in files:
            return
        for dep in fd.dependencies:
            add(dep)
        proto = descriptor_pb2.FileDescriptorProto()
        fd.CopyToProto(proto)
        files[fd.name] = proto

    for name in RESOURCES + EXTENSIONS:
        add(importlib.import_module(name).DESCRIPTOR)
    data = descriptor_pb2.FileDescriptorSet(file=list(files.values())).SerializeToString()
    with open(sys.argv[1], "wb") as f:
        f.write(data)
    print(f"{sys.argv[1]}: {len(files)} files, {len(data)} bytes")


if __name__ == "__main__":
    main()
