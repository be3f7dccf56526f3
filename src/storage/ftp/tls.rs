//! The rustls (ring) client configuration for FTPS: the server's certificate is checked
//! against the system's CAs (rustls-platform-verifier) plus the ones in `--ftp-certfile`;
//! `--ftp-keyfile` with `--ftp-certfile` presents a client certificate instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

use crate::error::{Error, Result};

/// How an FTPS connection is secured.
#[derive(Clone, Debug, Default)]
pub struct TlsOptions {
    /// Extra trusted CA (or server) certificates, PEM: `--ftp-certfile` alone.
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key, PEM: `--ftp-certfile` with `--ftp-keyfile`.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The client configurations for `opts`: TLS 1.2, and TLS 1.3 for a server that has no 1.2.
///
/// FTPS servers (vsftpd's `require_ssl_reuse`, ProFTPD, FileZilla Server) refuse a data
/// connection that does not resume its control connection's TLS session. A TLS 1.3 ticket
/// resumes one connection only, and vsftpd issues one usable ticket per control connection,
/// so its second transfer fails; a TLS 1.2 session resumes any number of times. TLS 1.2 here
/// is rustls': forward-secret AEAD suites only.
pub(super) fn client_configs(opts: &TlsOptions) -> Result<[Arc<ClientConfig>; 2]> {
    Ok([
        client_config(opts, &[&rustls::version::TLS12])?,
        client_config(opts, &[&rustls::version::TLS13])?,
    ])
}

fn client_config(
    opts: &TlsOptions,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Result<Arc<ClientConfig>> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let extra = match &opts.ca_file {
        Some(path) => read_certs(path, "--ftp-certfile")?,
        None => Vec::new(),
    };
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra, Arc::clone(&provider))
            .map_err(|e| {
                Error::usage(format!(
                    "cannot set up FTPS certificate checks: {e}; install the system's CA \
                     certificates (ca-certificates) or give the server's CA with --ftp-certfile"
                ))
            })?;
    let builder = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .map_err(|e| Error::storage(format!("cannot set up TLS: {e}")))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let config = match &opts.client_cert {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = read_certs(cert, "--ftp-certfile")?;
            let key = read_key(key)?;
            builder.with_client_auth_cert(chain, key).map_err(|e| {
                Error::usage(format!(
                    "the client certificate --ftp-certfile {} does not go with --ftp-keyfile: {e}",
                    cert.display()
                ))
            })?
        }
    };
    Ok(Arc::new(config))
}

fn read_certs(path: &Path, option: &str) -> Result<Vec<CertificateDer<'static>>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("cannot read {option} {}", path.display()), e))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::usage(format!("{option} {} is not a PEM certificate file: {e}", path.display()))
        })?;
    if certs.is_empty() {
        return Err(Error::usage(format!(
            "{option} {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    let bytes = std::fs::read(path)
        .map_err(|e| Error::io(format!("cannot read --ftp-keyfile {}", path.display()), e))?;
    // The key's bytes never reach a message: only the file's name does.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|_| {
        Error::usage(format!(
            "--ftp-keyfile {} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)",
            path.display()
        ))
    })
}

/// Whether an I/O error is rustls refusing the server's certificate, and why.
pub(super) fn untrusted(e: &std::io::Error) -> Option<String> {
    let inner = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match inner {
        rustls::Error::InvalidCertificate(why) => Some(format!("{why:?}")),
        _ => None,
    }
}

/// Whether the server refused the offered TLS version (it has no TLS 1.2).
pub(super) fn version_refused(e: &std::io::Error) -> bool {
    use rustls::{AlertDescription, Error as Tls};
    let Some(inner) = e.get_ref().and_then(|i| i.downcast_ref::<Tls>()) else { return false };
    matches!(
        inner,
        Tls::AlertReceived(AlertDescription::ProtocolVersion) | Tls::PeerIncompatible(_)
    )
}
