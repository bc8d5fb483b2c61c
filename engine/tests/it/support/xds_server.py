"""A real xDS control plane for the tests: Envoy's aggregated discovery service (ADS, state of
the world) over gRPC, built from Envoy's own protos (PyPI's xds-protos, grpcio).

Usage: python3 xds_server.py SNAPSHOT_FILE LOG_FILE
  Prints "xds listening on PORT" once serving on 127.0.0.1 (XDS_LISTEN=ADDR to choose; with
  XDS_TLS_CERT and XDS_TLS_KEY, PEM files, over TLS).
  SNAPSHOT_FILE: JSON {"version": "1", "clusters": [...], "endpoints": [...], "listeners": [...],
  "routes": [...], "secrets": [...]}, each resource in Envoy's JSON form (as in an Envoy YAML file; "@type" on
  typed_config). The file is read again whenever it changes (write it to a temporary name and
  rename it over): every open stream gets the new version of each type it subscribed to.
  LOG_FILE: one JSON line per request received: type_url, version_info, response_nonce,
  resource_names, error_detail (the NACK's message, or null), node_id.
"""

import hashlib
import json
import os
import queue
import sys
import threading
import time
from concurrent import futures

import grpc
from google.protobuf import any_pb2, json_format

# Every type a resource may embed must be imported for json_format to resolve "@type".
from envoy.config.cluster.v3 import cluster_pb2
from envoy.config.endpoint.v3 import endpoint_pb2
from envoy.config.listener.v3 import listener_pb2
from envoy.config.route.v3 import route_pb2
from envoy.extensions.filters.http.router.v3 import router_pb2  # noqa: F401
from envoy.extensions.filters.network.http_connection_manager.v3 import (  # noqa: F401
    http_connection_manager_pb2,
)
from envoy.extensions.filters.network.tcp_proxy.v3 import tcp_proxy_pb2  # noqa: F401
from envoy.extensions.access_loggers.file.v3 import file_pb2  # noqa: F401
from envoy.extensions.filters.http.header_mutation.v3 import header_mutation_pb2  # noqa: F401
from envoy.extensions.filters.http.lua.v3 import lua_pb2  # noqa: F401  (one ringway lacks)
from envoy.extensions.transport_sockets.tls.v3 import secret_pb2, tls_pb2  # noqa: F401
from envoy.service.discovery.v3 import ads_pb2_grpc, discovery_pb2

TYPES = {
    "type.googleapis.com/envoy.config.cluster.v3.Cluster": ("clusters", cluster_pb2.Cluster, "name"),
    "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment": (
        "endpoints",
        endpoint_pb2.ClusterLoadAssignment,
        "cluster_name",
    ),
    "type.googleapis.com/envoy.config.listener.v3.Listener": ("listeners", listener_pb2.Listener, "name"),
    "type.googleapis.com/envoy.config.route.v3.RouteConfiguration": (
        "routes",
        route_pb2.RouteConfiguration,
        "name",
    ),
    "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret": (
        "secrets",
        secret_pb2.Secret,
        "name",
    ),
}

SNAPSHOT, LOG = sys.argv[1], sys.argv[2]
# How often each stream looks at the snapshot file (scripts/xds-bench.py sets it lower).
POLL = float(os.environ.get("XDS_POLL", "0.05"))
log_lock = threading.Lock()


def load():
    while True:
        try:
            with open(SNAPSHOT) as f:
                return json.load(f)
        except (OSError, ValueError):
            time.sleep(0.02)


def log(entry):
    with log_lock:
        with open(LOG, "a") as f:
            f.write(json.dumps(entry) + "\n")


def for_node(snap, key, r, node):
    """A listener gets the port `listener_ports` names for this node (two proxies on one host)."""
    ports = snap.get("listener_ports") or {}
    if key == "listeners" and node in ports:
        r = json.loads(json.dumps(r))
        r["address"]["socket_address"]["port_value"] = ports[node]
    return r


def stream_events(request_iterator, context, snap):
    """One stream's requests as they arrive and, between them, every new version of the snapshot
    file (a dict); ends with the stream. `snap` is the version the stream started with."""
    events = queue.Queue()

    def reader():
        try:
            for req in request_iterator:
                events.put(req)
        except Exception:  # the stream ended
            pass
        events.put(None)

    threading.Thread(target=reader, daemon=True).start()
    version = snap.get("version")
    mtime = os.stat(SNAPSHOT).st_mtime_ns
    while context.is_active():
        try:
            req = events.get(timeout=POLL)
        except queue.Empty:
            req = False
        if req is None:
            return
        if req:
            yield req
        try:
            m = os.stat(SNAPSHOT).st_mtime_ns
        except OSError:
            continue
        if m != mtime:
            mtime = m
            new = load()
            if new.get("version") != version:
                version = new.get("version")
                yield new


class Ads(ads_pb2_grpc.AggregatedDiscoveryServiceServicer):
    def StreamAggregatedResources(self, request_iterator, context):
        subscribed = {}  # type_url -> resource names (empty: all)
        sent = {}  # type_url -> (version, names) last sent
        nonce = [0]
        node = [""]
        snap = load()

        def response(type_url):
            key, cls, name_key = TYPES[type_url]
            names = subscribed[type_url]
            resources = []
            for r in snap.get(key, []):
                if names and r.get(name_key) not in names:
                    continue
                msg = json_format.ParseDict(for_node(snap, key, r, node[0]), cls())
                a = any_pb2.Any()
                a.Pack(msg)
                resources.append(a)
            nonce[0] += 1
            sent[type_url] = (snap["version"], tuple(sorted(names)))
            return discovery_pb2.DiscoveryResponse(
                version_info=snap["version"],
                resources=resources,
                type_url=type_url,
                nonce=str(nonce[0]),
            )

        for req in stream_events(request_iterator, context, snap):
            if isinstance(req, dict):  # a new version of the snapshot
                snap = req
                for t in TYPES:
                    if t in subscribed:
                        yield response(t)
                continue
            if req.node.id:
                node[0] = req.node.id
            log(
                {
                    "type_url": req.type_url,
                    "version_info": req.version_info,
                    "response_nonce": req.response_nonce,
                    "resource_names": list(req.resource_names),
                    "error_detail": req.error_detail.message if req.HasField("error_detail") else None,
                    "node_id": req.node.id,
                }
            )
            if req.type_url in TYPES:
                subscribed[req.type_url] = list(req.resource_names)
                want = (snap["version"], tuple(sorted(req.resource_names)))
                if sent.get(req.type_url) != want:
                    yield response(req.type_url)


    def DeltaAggregatedResources(self, request_iterator, context):
        subs = {}  # type_url -> set of names, or None (all)
        have = {}  # type_url -> {name: version} the client holds
        nonce = [0]
        node = [""]
        snap = load()

        def changes(t, first=False):
            key, cls, name_key = TYPES[t]
            want = subs[t]
            current = {
                r.get(name_key): for_node(snap, key, r, node[0])
                for r in snap.get(key, [])
                if want is None or r.get(name_key) in want
            }
            versions = {
                n: hashlib.sha256(json.dumps(r, sort_keys=True).encode()).hexdigest()[:12]
                for n, r in current.items()
            }
            held = have[t]
            updated = [n for n in current if held.get(n) != versions[n]]
            removed = [n for n in held if n not in current]
            # A first subscription is always answered, empty or not: the client's start waits
            # for one response of each type it asked for.
            if not updated and not removed and not first:
                return None
            resources = []
            for n in updated:
                a = any_pb2.Any()
                a.Pack(json_format.ParseDict(current[n], cls()))
                resources.append(discovery_pb2.Resource(name=n, version=versions[n], resource=a))
                held[n] = versions[n]
            for n in removed:
                del held[n]
            nonce[0] += 1
            return discovery_pb2.DeltaDiscoveryResponse(
                system_version_info=snap["version"],
                resources=resources,
                type_url=t,
                removed_resources=removed,
                nonce=str(nonce[0]),
            )

        for req in stream_events(request_iterator, context, snap):
            if isinstance(req, dict):  # a new version of the snapshot
                snap = req
                for t in list(subs):
                    resp = changes(t)
                    if resp is not None:
                        yield resp
                continue
            if req.node.id:
                node[0] = req.node.id
            t = req.type_url
            log(
                {
                    "type_url": t,
                    "version_info": None,
                    "response_nonce": req.response_nonce,
                    "resource_names": list(req.resource_names_subscribe),
                    "unsubscribe": list(req.resource_names_unsubscribe),
                    "initial_resource_versions": dict(req.initial_resource_versions),
                    "error_detail": req.error_detail.message if req.HasField("error_detail") else None,
                    "node_id": req.node.id,
                }
            )
            if t in TYPES:
                changed = False
                first = t not in subs
                if t not in subs:
                    names = set(req.resource_names_subscribe)
                    wildcard = t.endswith(("Listener", "Cluster")) and (not names or "*" in names)
                    subs[t] = None if wildcard else names
                    have[t] = dict(req.initial_resource_versions)
                    changed = True
                elif req.resource_names_subscribe or req.resource_names_unsubscribe:
                    if subs[t] is not None:
                        subs[t] |= set(req.resource_names_subscribe)
                        subs[t] -= set(req.resource_names_unsubscribe)
                    for n in req.resource_names_unsubscribe:
                        have[t].pop(n, None)
                    changed = True
                if changed:
                    resp = changes(t, first)
                    if resp is not None:
                        yield resp


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    ads_pb2_grpc.add_AggregatedDiscoveryServiceServicer_to_server(Ads(), server)
    listen = os.environ.get("XDS_LISTEN", "127.0.0.1:0")
    if os.environ.get("XDS_TLS_CERT"):
        # gRPC over TLS: XDS_TLS_CERT and XDS_TLS_KEY, PEM files.
        with open(os.environ["XDS_TLS_CERT"], "rb") as c, open(os.environ["XDS_TLS_KEY"], "rb") as k:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(listen, creds)
    else:
        port = server.add_insecure_port(listen)
    server.start()
    print(f"xds listening on {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
