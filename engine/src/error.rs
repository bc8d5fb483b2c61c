//! Errors of the request path as data, and the one place that maps an error to the local reply a
//! client gets (status and `x-ringway-reason`).

/// Where a failure came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Downstream,
    Upstream,
    Internal,
}

/// Why the proxy answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocalReason {
    /// No virtual host or route matched.
    #[error("no route matched")]
    NoRoute,
    /// The cluster has no endpoint to send to.
    #[error("no healthy upstream")]
    NoHealthyUpstream,
    /// Connecting to the upstream failed or timed out.
    #[error("upstream connect failure")]
    ConnectFailure,
    /// The TLS handshake with the upstream failed (its certificate refused, no TLS spoken, or
    /// it did not finish within the cluster's `connect_timeout`).
    #[error("upstream TLS handshake failure")]
    UpstreamTlsFailure,
    /// The upstream did not answer in time.
    #[error("upstream timeout")]
    UpstreamTimeout,
    /// The upstream closed or reset before a response.
    #[error("upstream reset before response")]
    UpstreamReset,
    /// The upstream's response could not be parsed.
    #[error("upstream protocol error")]
    UpstreamProtocolError,
    /// A circuit breaker of the cluster is open (`max_requests`, `max_pending_requests`).
    #[error("upstream overflow")]
    Overflow,
    /// The request head did not arrive within `request_headers_timeout`.
    #[error("request headers timeout")]
    RequestHeadersTimeout,
    /// The request body made no progress for `request_body_timeout`.
    #[error("request body timeout")]
    RequestBodyTimeout,
    /// A filter needed the whole request body and it was larger than allowed (`buffer`).
    #[error("request body too large")]
    RequestTooLarge,
    /// No filter chain matched a connection (the listener-filter stage closes it; never an
    /// HTTP reply).
    #[error("no filter chain matched")]
    NoFilterChainMatch,
}

impl LocalReason {
    /// Status and `x-ringway-reason` value.
    pub fn reply(self) -> (u16, &'static str) {
        match self {
            LocalReason::NoRoute => (404, "no_route"),
            LocalReason::NoHealthyUpstream => (503, "no_healthy_upstream"),
            LocalReason::ConnectFailure => (503, "connect_failure"),
            LocalReason::UpstreamTlsFailure => (503, "upstream_tls_failure"),
            LocalReason::UpstreamTimeout => (504, "upstream_timeout"),
            LocalReason::UpstreamReset => (502, "upstream_reset"),
            LocalReason::UpstreamProtocolError => (502, "upstream_protocol_error"),
            LocalReason::Overflow => (503, "upstream_overflow"),
            LocalReason::RequestHeadersTimeout => (408, "request_headers_timeout"),
            LocalReason::RequestBodyTimeout => (408, "request_body_timeout"),
            LocalReason::RequestTooLarge => (413, "request_payload_too_large"),
            // Envoy's details for it; the status is never sent (the connection is closed).
            LocalReason::NoFilterChainMatch => (0, "filter_chain_not_found"),
        }
    }

    pub fn source(self) -> Source {
        match self {
            LocalReason::NoRoute | LocalReason::NoFilterChainMatch => Source::Internal,
            LocalReason::RequestHeadersTimeout
            | LocalReason::RequestBodyTimeout
            | LocalReason::RequestTooLarge => Source::Downstream,
            _ => Source::Upstream,
        }
    }

    /// Whether a request that failed this way may be sent again (idempotent, replayable).
    pub fn retryable(self) -> bool {
        matches!(self, LocalReason::UpstreamReset)
    }
}

/// Body text of a local reply for a status.
pub fn status_text(status: u16) -> &'static str {
    match status {
        400 => "bad request\n",
        404 => "no route\n",
        408 => "request timeout\n",
        414 => "uri too long\n",
        431 => "request header fields too large\n",
        501 => "not implemented\n",
        502 => "bad gateway\n",
        503 => "service unavailable\n",
        504 => "gateway timeout\n",
        505 => "http version not supported\n",
        _ => "",
    }
}
