//! TLS configuration (rustls with the `aws-lc-rs` provider, as the engine's) for the load generator's `https://`
//! targets and the origin's optional TLS listener. The bytes themselves flow through
//! [`crate::io::PollIo`]; this module only builds configs.
//!
//! Trust: `--cacert FILE` (PEM) if given, else the system bundle (`SSL_CERT_FILE`, or the usual
//! Debian/RedHat paths); `--insecure` skips certificate checks (signatures are still verified,
//! so the handshake costs what a real one costs).

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A client config offering `alpn` (e.g. `h2` or `http/1.1`), resuming sessions if `resume`,
/// offering only `version` ("1.2" or "1.3") if given.
pub fn client_config(
    insecure: bool,
    cacert: Option<&Path>,
    alpn: &[&[u8]],
    resume: bool,
    version: Option<&str>,
) -> anyhow::Result<Arc<ClientConfig>> {
    let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
        None => rustls::DEFAULT_VERSIONS,
        Some("1.2") => &[&rustls::version::TLS12],
        Some("1.3") => &[&rustls::version::TLS13],
        Some(v) => bail!("unknown TLS version {v} (1.2 or 1.3)"),
    };
    let builder =
        ClientConfig::builder_with_provider(provider()).with_protocol_versions(versions)?;
    let mut cfg = if insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerify(provider())))
            .with_no_client_auth()
    } else {
        let mut roots = RootCertStore::empty();
        let env = std::env::var("SSL_CERT_FILE").ok();
        let path = match (cacert, env.as_deref()) {
            (Some(p), _) => p.to_path_buf(),
            (None, Some(p)) => p.into(),
            (None, None) => match SYSTEM_BUNDLES.iter().find(|p| Path::new(p).exists()) {
                Some(p) => p.into(),
                None => bail!("no CA bundle found; pass --cacert FILE or --insecure"),
            },
        };
        for cert in CertificateDer::pem_file_iter(&path)
            .with_context(|| format!("read {}", path.display()))?
        {
            let _ = roots.add(cert.with_context(|| format!("parse {}", path.display()))?);
        }
        if roots.is_empty() {
            bail!("no usable certificate in {}", path.display());
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    if !resume {
        cfg.resumption = rustls::client::Resumption::disabled();
    }
    Ok(Arc::new(cfg))
}

/// A server config from PEM files, offering `alpn` in order of preference.
pub fn server_config(cert: &Path, key: &Path, alpn: &[&[u8]]) -> anyhow::Result<Arc<ServerConfig>> {
    let certs = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse {}", cert.display()))?;
    let key =
        PrivateKeyDer::from_pem_file(key).with_context(|| format!("read key {}", key.display()))?;
    let mut cfg = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(cfg))
}

/// The SNI / verification name for a URL host (a DNS name or an IP literal).
pub fn server_name(host: &str) -> anyhow::Result<ServerName<'static>> {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(h.to_string())
        .map_err(|e| anyhow::anyhow!("bad TLS server name '{host}': {e}"))
}

/// Accepts any certificate (`--insecure`) but still checks handshake signatures.
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
