//! Validation of a cluster's `tls:` (TLS origination): the trust roots and how the upstream's
//! certificate is checked, the client certificate, SNI, ALPN and TLS parameters, built into one
//! rustls `ClientConfig` at load. Workers copy it (`upstream::ClusterView`), each copy with its
//! own session cache; `io::tls::connect` runs the handshake with it.
//!
//! Verification: the chain must lead to `verify.ca` (default: the system's CA bundle, from
//! `SSL_CERT_FILE` or the usual Debian/RedHat paths) and the certificate must be valid for the
//! SNI name, or for one of `verify.subject_alt_names` when given (then the SNI name is only
//! sent), or, with neither, for the endpoint's IP address. `insecure_skip_verify` turns checking
//! off (handshake signatures are still verified).

use std::{path::Path, sync::Arc};

use rustls::{
    client::{
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
        ResolvesClientCert, WebPkiServerVerifier,
    },
    crypto::CryptoProvider,
    pki_types::{pem::PemObject, CertificateDer, ServerName, UnixTime},
    sign::CertifiedKey,
    CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

use super::{tls, Problems};
use crate::config::{
    model::UpstreamTls,
    path::DocPath,
    schema::{DataSourceSpec, UpstreamTlsSpec},
};

/// Where the system's CA bundle is looked for when `verify.ca` is not given.
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

pub(super) fn upstream(
    spec: &UpstreamTlsSpec,
    path: &DocPath,
    dir: Option<&Path>,
    http2: bool,
    auto: bool,
    problems: &mut Problems,
) -> Option<Arc<UpstreamTls>> {
    let params = spec.tls_params.as_ref();
    let provider = tls::provider(params, &path.key("tls_params"), problems);
    let versions = tls::versions(params, &path.key("tls_params"), problems);
    let sni = match &spec.sni {
        None => Some(None),
        Some(n) => match dns_name(n) {
            Ok(n) => Some(Some(n)),
            Err(e) => {
                problems.value(&path.key("sni"), e);
                None
            }
        },
    };
    let vpath = path.key("verify");
    let verify = spec.verify.as_ref();
    let insecure = verify.and_then(|v| v.insecure_skip_verify).unwrap_or(false);
    let roots = match (insecure, verify.and_then(|v| v.ca.as_ref())) {
        (true, _) => Some(None),
        (false, ca) => roots(ca, &vpath.key("ca"), dir, problems).map(Some),
    };
    let mut sans = Some(Vec::new());
    for (i, n) in verify
        .and_then(|v| v.subject_alt_names.as_ref())
        .into_iter()
        .flatten()
        .enumerate()
    {
        match dns_name(n) {
            Ok(n) => sans.as_mut().map_or((), |s| s.push(n)),
            Err(e) => {
                problems.value(&vpath.key("subject_alt_names").index(i), e);
                sans = None;
            }
        }
    }
    let client_cert = match &spec.client_cert {
        None => Some(None),
        Some(c) => tls::certificate(c, &path.key("client_cert"), dir, problems).map(Some),
    };
    let (provider, versions, sni, roots, sans, client_cert) =
        (provider?, versions?, sni?, roots?, sans?, client_cert?);
    let provider = Arc::new(provider);
    let verifier: Arc<dyn ServerCertVerifier> = match roots {
        None => Arc::new(NoVerify(Arc::clone(&provider))),
        Some(roots) => {
            match WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                Arc::clone(&provider),
            )
            .build()
            {
                Ok(v) if sans.is_empty() => v,
                Ok(v) => Arc::new(SanVerifier {
                    inner: v,
                    names: sans,
                }),
                Err(e) => {
                    problems.value(&vpath, format!("cannot verify upstreams with it: {e}"));
                    return None;
                }
            }
        }
    };
    let builder = match rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
    {
        Ok(b) => b,
        Err(e) => {
            problems.value(
                &path.key("tls_params"),
                format!("no usable TLS settings: {e}"),
            );
            return None;
        }
    };
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut client = match client_cert {
        None => builder.with_no_client_auth(),
        Some(key) => builder.with_client_cert_resolver(Arc::new(ClientCert(key))),
    };
    client.alpn_protocols = match &spec.alpn {
        Some(list) => list.iter().map(|p| p.clone().into_bytes()).collect(),
        // `auto` lets the server choose; an HTTP/2 cluster says so (servers that speak both
        // pick HTTP/1.1 without it).
        None if auto => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
        None if http2 => vec![b"h2".to_vec()],
        None => Vec::new(),
    };
    Some(Arc::new(UpstreamTls {
        client: Arc::new(client),
        sni,
    }))
}

/// A DNS name for SNI or a SAN check (an IP address is refused: SNI carries names only).
fn dns_name(n: &str) -> Result<ServerName<'static>, String> {
    match ServerName::try_from(n.to_owned()) {
        Ok(ServerName::DnsName(d)) => Ok(ServerName::DnsName(d)),
        Ok(_) => Err(format!(
            "{n:?} is an IP address: give a DNS name (without one, the certificate is checked \
             against the endpoint's address)"
        )),
        Err(e) => Err(format!("not a valid DNS name {n:?}: {e}")),
    }
}

/// `verify.ca`, or the system bundle.
fn roots(
    ca: Option<&DataSourceSpec>,
    path: &DocPath,
    dir: Option<&Path>,
    problems: &mut Problems,
) -> Option<RootCertStore> {
    let pem = match ca {
        Some(ca) => tls::data(ca, dir, path, problems)?,
        None => {
            let env = std::env::var("SSL_CERT_FILE").ok();
            let found = env
                .iter()
                .map(String::as_str)
                .chain(SYSTEM_BUNDLES.iter().copied())
                .find(|p| Path::new(p).exists());
            let read = found.map(|f| (f, std::fs::read(f)));
            match read {
                Some((_, Ok(b))) => b,
                Some((f, Err(e))) => {
                    problems.value(path, format!("cannot read the system CA bundle {f}: {e}"));
                    return None;
                }
                None => {
                    problems.value(
                        path,
                        format!(
                            "no CA bundle to verify upstreams with: give verify.ca \
                             ({{filename: ...}}), or install one ({})",
                            SYSTEM_BUNDLES.join(", ")
                        ),
                    );
                    return None;
                }
            }
        }
    };
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        match c {
            // A bundle may hold certificates webpki cannot use; they are skipped.
            Ok(c) => {
                let _ = roots.add(c);
            }
            Err(e) => {
                problems.value(path, format!("not a PEM certificate bundle: {e}"));
                return None;
            }
        }
    }
    if roots.is_empty() {
        problems.value(path, "no usable CA certificate found");
        return None;
    }
    Some(roots)
}

/// The client certificate, whatever the server asks.
#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The chain checked by webpki; the name: any of `names` (not the SNI name).
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<ServerName<'static>>,
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut wrong_name = None;
        for n in &self.names {
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, n, ocsp, now)
            {
                Ok(v) => return Ok(v),
                Err(
                    e @ rustls::Error::InvalidCertificate(
                        CertificateError::NotValidForName
                        | CertificateError::NotValidForNameContext { .. },
                    ),
                ) => wrong_name = Some(e),
                // Expired, unknown issuer, ...: the same for every name.
                Err(e) => return Err(e),
            }
        }
        Err(wrong_name.unwrap_or(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        )))
    }

    tls::signatures_by_inner!();
}

/// `insecure_skip_verify`: any certificate, but handshake signatures still checked.
#[derive(Debug)]
struct NoVerify(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
