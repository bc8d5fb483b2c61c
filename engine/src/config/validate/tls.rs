//! Validation of `tls:` on a filter chain: every certificate and key is read, parsed and checked
//! against each other at load (a bad file is a config error naming the field, never a failed
//! handshake later), versions and cipher suites are resolved to rustls's, and the result is one
//! `rustls::ServerConfig` per chain (`DownstreamTls`), which workers copy with their own
//! session cache.
//!
//! Certificate choice ([`Resolver`]): among the chain's certificates, those valid for the
//! client's SNI name (all of them when none is, or when the client sent no name), and of those
//! the first whose key type the client can verify (so an ECDSA and an RSA certificate for the
//! same name serve each client the one it supports). An X.509 v1 certificate, which webpki
//! cannot read, is matched to its key by [`crate::x509::spki`] and names no host.
//!
//! Client certificates (mTLS): webpki's verifier against `trusted_ca`, wrapped by
//! [`SanMatching`] when `match_typed_subject_alt_names` is set (the leaf's DNS or URI SANs must
//! match one entry; checked once per handshake that presents a certificate).

use std::{
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use ringway_filters::http::cors::StringMatcher;
use rustls::{
    crypto::{aws_lc_rs, CryptoProvider},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    server::{
        danger::{ClientCertVerified, ClientCertVerifier},
        ClientHello, ResolvesServerCert, WebPkiClientVerifier,
    },
    sign::CertifiedKey,
    CertificateError, DistinguishedName, RootCertStore, SupportedCipherSuite,
};

use super::Problems;
use crate::config::{
    model::{CodecType, DownstreamTls},
    path::DocPath,
    schema::{
        DataSourceSpec, FilterChainSpec, TlsCertificateSpec, TlsParamsSpec, TlsSpec,
        ValidationContextSpec,
    },
};

/// `transport_socket_connect_timeout`'s default.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

pub(super) fn downstream(
    spec: &TlsSpec,
    chain: &FilterChainSpec,
    path: &DocPath,
    http: Option<CodecType>,
    dir: Option<&Path>,
    problems: &mut Problems,
) -> Option<Arc<DownstreamTls>> {
    let common = spec.common_tls_context.as_ref();
    let flat_used = spec.tls_certificates.is_some()
        || spec.alpn_protocols.is_some()
        || spec.tls_params.is_some()
        || spec.validation_context.is_some();
    if common.is_some() && flat_used {
        problems.key(
            &path.key("common_tls_context"),
            "give tls_certificates, alpn_protocols, tls_params and validation_context either \
             inside common_tls_context or directly under tls, not both",
        );
        return None;
    }
    let (certs, alpn, params, validation, at) = match common {
        Some(c) => (
            c.tls_certificates.as_ref(),
            c.alpn_protocols.as_ref(),
            c.tls_params.as_ref(),
            c.validation_context.as_ref(),
            path.key("common_tls_context"),
        ),
        None => (
            spec.tls_certificates.as_ref(),
            spec.alpn_protocols.as_ref(),
            spec.tls_params.as_ref(),
            spec.validation_context.as_ref(),
            path.clone(),
        ),
    };
    // What compose left here has not come from the control plane.
    let sds = match common {
        Some(c) => c.tls_certificate_sds_secret_configs.as_ref(),
        None => spec.tls_certificate_sds_secret_configs.as_ref(),
    };
    if let Some(list) = sds {
        let names: Vec<&str> = list.iter().map(|s| s.name.as_str()).collect();
        problems.value(
            &at.key("tls_certificate_sds_secret_configs"),
            format!(
                "secret(s) {names:?} not received: certificates by SDS come from the control \
                 plane (`xds`)"
            ),
        );
        return None;
    }
    let keys = certificates(certs, &at.key("tls_certificates"), dir, problems);
    let provider = provider(params, &at.key("tls_params"), problems);
    let versions = versions(params, &at.key("tls_params"), problems);
    let alpn = alpn_protocols(alpn, &at.key("alpn_protocols"), http, problems);
    let require = problems.or(
        spec.require_client_certificate,
        &path.key("require_client_certificate"),
        false,
    );
    if require && validation.is_none() {
        problems.value(
            &path.key("require_client_certificate"),
            "require_client_certificate needs a validation_context with a trusted_ca to verify \
             client certificates against",
        );
    }
    let (keys, provider, versions, alpn) = (keys?, provider?, versions?, alpn?);
    let provider = Arc::new(provider);
    let builder = match rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&versions)
    {
        Ok(b) => b,
        Err(e) => {
            problems.value(
                &at.key("tls_params"),
                format!("no usable TLS settings: {e}"),
            );
            return None;
        }
    };
    let builder = match validation {
        None => builder.with_no_client_auth(),
        Some(v) => {
            let vpath = at.key("validation_context");
            let verifier = client_verifier(v, &vpath, require, &provider, dir, problems)?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut server = builder.with_cert_resolver(Arc::new(Resolver { keys }));
    server.alpn_protocols = alpn;
    if !spec.disable_stateless_session_resumption.unwrap_or(false) {
        match aws_lc_rs::Ticketer::new() {
            Ok(t) => server.ticketer = t,
            Err(e) => problems.value(path, format!("cannot set up session tickets: {e}")),
        }
    }
    let handshake_timeout = problems.or(
        chain.transport_socket_connect_timeout.map(|d| d.0),
        &path.parent().key("transport_socket_connect_timeout"),
        HANDSHAKE_TIMEOUT,
    );
    Some(Arc::new(DownstreamTls {
        server: Arc::new(server),
        handshake_timeout,
    }))
}

/// The bytes of a `DataSource` (`filename`, relative to `base` when given, or
/// `inline_string`).
pub(super) fn data(
    spec: &DataSourceSpec,
    base: Option<&Path>,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<Vec<u8>> {
    match (&spec.filename, &spec.inline_string) {
        (Some(f), None) => match std::fs::read(base.map_or(PathBuf::from(f), |b| b.join(f))) {
            Ok(b) => Some(b),
            Err(e) => {
                problems.value(&path.key("filename"), format!("cannot read {f:?}: {e}"));
                None
            }
        },
        (None, Some(s)) => Some(s.clone().into_bytes()),
        _ => {
            problems.value(path, "give exactly one of filename or inline_string");
            None
        }
    }
}

fn certificates(
    specs: Option<&Vec<TlsCertificateSpec>>,
    path: &DocPath,
    dir: Option<&Path>,
    problems: &mut Problems,
) -> Option<Vec<Arc<CertifiedKey>>> {
    let Some(specs) = specs.filter(|s| !s.is_empty()) else {
        problems.value(
            path,
            "at least one certificate is needed: tls_certificates: [{certificate_chain: \
             {filename: ...}, private_key: {filename: ...}}]",
        );
        return None;
    };
    let keys: Vec<_> = specs
        .iter()
        .enumerate()
        .filter_map(|(i, c)| certificate(c, &path.index(i), dir, problems))
        .collect();
    (keys.len() == specs.len()).then_some(keys)
}

/// One certificate with its key (and OCSP staple), read and checked: the key must match.
pub(super) fn certificate(
    c: &TlsCertificateSpec,
    at: &DocPath,
    dir: Option<&Path>,
    problems: &mut Problems,
) -> Option<Arc<CertifiedKey>> {
    let provider = aws_lc_rs::default_provider();
    {
        let (cpath, kpath) = (at.key("certificate_chain"), at.key("private_key"));
        let chain = data(&c.certificate_chain, dir, &cpath, problems).and_then(|pem| {
            let certs: Result<Vec<CertificateDer<'static>>, _> =
                CertificateDer::pem_slice_iter(&pem).collect();
            match certs {
                Ok(c) if !c.is_empty() => Some(c),
                Ok(_) => {
                    problems.value(&cpath, "no PEM certificate found");
                    None
                }
                Err(e) => {
                    problems.value(&cpath, format!("not a PEM certificate chain: {e}"));
                    None
                }
            }
        });
        let key = data(&c.private_key, dir, &kpath, problems).and_then(|pem| {
            match PrivateKeyDer::from_pem_slice(&pem) {
                Ok(k) => match provider.key_provider.load_private_key(k) {
                    Ok(k) => Some(k),
                    Err(e) => {
                        problems.value(&kpath, format!("unusable private key: {e}"));
                        None
                    }
                },
                Err(e) => {
                    problems.value(&kpath, format!("not a PEM private key: {e}"));
                    None
                }
            }
        });
        let ocsp = c
            .ocsp_staple
            .as_ref()
            .map(|o| data(o, dir, &at.key("ocsp_staple"), problems));
        let (chain, key) = (chain?, key?);
        let mut ck = CertifiedKey::new(chain, key);
        if let Err(e) = ck.keys_match().or_else(|e| v1_keys_match(&ck).ok_or(e)) {
            problems.value(
                &kpath,
                format!("the private key does not match the certificate: {e}"),
            );
            return None;
        }
        if let Some(Some(o)) = ocsp {
            ck.ocsp = Some(o);
        }
        Some(Arc::new(ck))
    }
}

fn version(text: &str) -> Result<&'static rustls::SupportedProtocolVersion, String> {
    match text {
        "TLSv1_2" | "TLS_AUTO" => Ok(&rustls::version::TLS12),
        "TLSv1_3" => Ok(&rustls::version::TLS13),
        "TLSv1_0" | "TLSv1_1" => Err(format!(
            "{text} is not supported (ringway speaks TLS 1.2 and 1.3): use TLSv1_2 or TLSv1_3"
        )),
        _ => Err(format!(
            "unknown TLS version {text:?}: expected TLSv1_2 or TLSv1_3"
        )),
    }
}

pub(super) fn versions(
    params: Option<&TlsParamsSpec>,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<Vec<&'static rustls::SupportedProtocolVersion>> {
    let pick = |key: &str, v: Option<&String>, default, problems: &mut Problems| match v {
        None => Some(default),
        Some(t) => match version(t) {
            Ok(v) => Some(v),
            Err(e) => {
                problems.value(&path.key(key), e);
                None
            }
        },
    };
    let min = pick(
        "tls_minimum_protocol_version",
        params.and_then(|p| p.tls_minimum_protocol_version.as_ref()),
        &rustls::version::TLS12,
        problems,
    );
    let max = pick(
        "tls_maximum_protocol_version",
        params.and_then(|p| p.tls_maximum_protocol_version.as_ref()),
        &rustls::version::TLS13,
        problems,
    );
    let (min, max) = (min?, max?);
    let rank = |v: &rustls::SupportedProtocolVersion| u16::from(v.version);
    if rank(min) > rank(max) {
        problems.value(
            &path.key("tls_minimum_protocol_version"),
            "tls_minimum_protocol_version is above tls_maximum_protocol_version",
        );
        return None;
    }
    Some(
        [&rustls::version::TLS12, &rustls::version::TLS13]
            .into_iter()
            .filter(|v| rank(v) >= rank(min) && rank(v) <= rank(max))
            .collect(),
    )
}

/// The aws-lc-rs provider, its TLS 1.2 suites narrowed to `cipher_suites` when given.
pub(super) fn provider(
    params: Option<&TlsParamsSpec>,
    path: &DocPath,
    problems: &mut Problems,
) -> Option<CryptoProvider> {
    let mut p = aws_lc_rs::default_provider();
    let Some(names) = params.and_then(|p| p.cipher_suites.as_ref()) else {
        return Some(p);
    };
    let all = p.cipher_suites.clone();
    let name_of = |s: &SupportedCipherSuite| s.suite().as_str().unwrap_or("").to_owned();
    let mut chosen: Vec<SupportedCipherSuite> = Vec::new();
    let mut ok = true;
    for (i, n) in names.iter().enumerate() {
        let iana = openssl_to_iana(n).unwrap_or(n.as_str());
        match all.iter().find(|s| name_of(s) == iana) {
            Some(s) if matches!(s, SupportedCipherSuite::Tls12(_)) => chosen.push(*s),
            Some(_) => {} // TLS 1.3 suites are always on (as in Envoy).
            None => {
                ok = false;
                let known: Vec<String> = all
                    .iter()
                    .filter(|s| matches!(s, SupportedCipherSuite::Tls12(_)))
                    .map(name_of)
                    .collect();
                problems.value(
                    &path.key("cipher_suites").index(i),
                    format!(
                        "unknown or unsupported cipher suite {n:?} (TLS 1.2 suites ringway has: {})",
                        known.join(", ")
                    ),
                );
            }
        }
    }
    if !ok {
        return None;
    }
    p.cipher_suites = all
        .into_iter()
        .filter(|s| matches!(s, SupportedCipherSuite::Tls13(_)) || chosen.contains(s))
        .collect();
    Some(p)
}

/// Envoy's (OpenSSL's) names of the TLS 1.2 suites rustls has.
fn openssl_to_iana(name: &str) -> Option<&'static str> {
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-RSA-AES128-GCM-SHA256" => "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
        "ECDHE-ECDSA-AES256-GCM-SHA384" => "TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-RSA-AES256-GCM-SHA384" => "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384",
        "ECDHE-ECDSA-CHACHA20-POLY1305" => "TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256",
        "ECDHE-RSA-CHACHA20-POLY1305" => "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256",
        _ => return None,
    })
}

fn alpn_protocols(
    list: Option<&Vec<String>>,
    path: &DocPath,
    http: Option<CodecType>,
    problems: &mut Problems,
) -> Option<Vec<Vec<u8>>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, p) in list.into_iter().flatten().enumerate() {
        let speaks = match http {
            None => true,
            Some(c) => p == "http/1.1" || p == "http/1.0" || (p == "h2" && c.h2()),
        };
        if !speaks {
            let offer = match http {
                Some(CodecType::Http1) => {
                    "its codec_type is http1: offer \"http/1.1\" (or set codec_type: auto to \
                     offer \"h2\" too)"
                }
                _ => "offer \"h2\" and/or \"http/1.1\"",
            };
            problems.value(
                &path.index(i),
                format!("{p:?} cannot be offered on this http_connection_manager chain: {offer}"),
            );
            ok = false;
        }
        out.push(p.clone().into_bytes());
    }
    ok.then_some(out)
}

fn client_verifier(
    v: &ValidationContextSpec,
    path: &DocPath,
    require: bool,
    provider: &Arc<CryptoProvider>,
    dir: Option<&Path>,
    problems: &mut Problems,
) -> Option<Arc<dyn ClientCertVerifier>> {
    let capath = path.key("trusted_ca");
    let pem = data(&v.trusted_ca, dir, &capath, problems)?;
    let mut roots = RootCertStore::empty();
    for c in CertificateDer::pem_slice_iter(&pem) {
        match c {
            Ok(c) => {
                if let Err(e) = roots.add(c) {
                    problems.value(&capath, format!("not a usable CA certificate: {e}"));
                    return None;
                }
            }
            Err(e) => {
                problems.value(&capath, format!("not a PEM certificate: {e}"));
                return None;
            }
        }
    }
    if roots.is_empty() {
        problems.value(&capath, "no PEM certificate found");
        return None;
    }
    let b = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(provider));
    let b = if require {
        b
    } else {
        b.allow_unauthenticated()
    };
    let sans = v
        .match_typed_subject_alt_names
        .as_deref()
        .unwrap_or_default();
    let sans_path = path.key("match_typed_subject_alt_names");
    let mut matchers = Vec::with_capacity(sans.len());
    for (i, san) in sans.iter().enumerate() {
        let at = sans_path.index(i);
        let dns = match san.san_type.as_str() {
            "DNS" => true,
            "URI" => false,
            "EMAIL" | "IP_ADDRESS" | "OTHER_NAME" => {
                problems.value(
                    &at.key("san_type"),
                    format!("{} SANs are not matched yet: use DNS or URI", san.san_type),
                );
                continue;
            }
            other => {
                problems.value(
                    &at.key("san_type"),
                    format!("unknown san_type {other:?}: DNS or URI"),
                );
                continue;
            }
        };
        match StringMatcher::new(&san.matcher, "") {
            Ok(m) => matchers.push((dns, m)),
            Err(p) => super::filters::report(problems, &at.key("matcher"), vec![p]),
        }
    }
    let inner = match b.build() {
        Ok(v) => v,
        Err(e) => {
            problems.value(&capath, format!("cannot verify clients with it: {e}"));
            return None;
        }
    };
    if sans.is_empty() {
        return Some(inner);
    }
    (matchers.len() == sans.len())
        .then(|| Arc::new(SanMatching { inner, matchers }) as Arc<dyn ClientCertVerifier>)
}

/// The handshake-signature checks of a certificate verifier that wraps another (`self.inner`),
/// inside an `impl ServerCertVerifier` or `impl ClientCertVerifier` block: rustls has no common
/// trait for the two.
macro_rules! signatures_by_inner {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls12_signature(message, cert, dss)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &rustls::pki_types::CertificateDer<'_>,
            dss: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            self.inner.verify_tls13_signature(message, cert, dss)
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.inner.supported_verify_schemes()
        }
    };
}
pub(super) use signatures_by_inner;

/// A client certificate verified by webpki whose DNS or URI SANs must also match one of
/// `matchers` (`(dns, matcher)`; Envoy's `match_typed_subject_alt_names`). The certificate is
/// parsed once more per handshake that presents one, after the chain checks out.
#[derive(Debug)]
struct SanMatching {
    inner: Arc<dyn ClientCertVerifier>,
    matchers: Vec<(bool, StringMatcher)>,
}

impl ClientCertVerifier for SanMatching {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let verified = self
            .inner
            .verify_client_cert(end_entity, intermediates, now)?;
        let cert = crate::x509::PeerCert::parse(end_entity);
        let matched = cert.is_some_and(|c| {
            self.matchers.iter().any(|(dns, m)| {
                let sans = if *dns { &c.dns_sans } else { &c.uri_sans };
                sans.iter().any(|s| m.matches(s.as_bytes()))
            })
        });
        match matched {
            true => Ok(verified),
            false => Err(rustls::Error::InvalidCertificate(
                CertificateError::ApplicationVerificationFailure,
            )),
        }
    }

    signatures_by_inner!();
}

/// Picks the certificate for a ClientHello (see the module docs).
#[derive(Debug)]
struct Resolver {
    keys: Vec<Arc<CertifiedKey>>,
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let named: Vec<&Arc<CertifiedKey>> = match hello.server_name() {
            Some(name) => self.keys.iter().filter(|k| valid_for(k, name)).collect(),
            None => Vec::new(),
        };
        let pool: Vec<&Arc<CertifiedKey>> = if named.is_empty() {
            self.keys.iter().collect()
        } else {
            named
        };
        let schemes = hello.signature_schemes();
        pool.iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .or(pool.first())
            .map(|k| Arc::clone(k))
    }
}

/// `Some` when the end-entity certificate is one webpki cannot read (an X.509 v1 certificate)
/// whose public key is the private key's own: served as Envoy serves it (it names no host, so
/// it serves every name, as a listener's only certificate does).
fn v1_keys_match(ck: &CertifiedKey) -> Option<()> {
    let cert = ck.end_entity_cert().ok()?;
    let key = ck.key.public_key()?;
    (crate::x509::spki(cert)? == key.as_ref()).then_some(())
}

/// Whether a certificate's names cover `name` (its SANs, `*.` wildcards included).
fn valid_for(key: &CertifiedKey, name: &str) -> bool {
    let (Some(der), Ok(sn)) = (key.cert.first(), ServerName::try_from(name)) else {
        return false;
    };
    webpki::EndEntityCert::try_from(der)
        .is_ok_and(|c| c.verify_is_valid_for_subject_name(&sn).is_ok())
}
