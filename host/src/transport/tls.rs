//! Optional TLS (rustls) for `daemon:` links that leave the machine.
//!
//! The server presents a certificate (`--tls-cert`, `--tls-key`); the client
//! trusts the CA given by `--tls-ca`. Token authentication still runs inside
//! the TLS channel.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};

use super::stream::LinkStream;
use super::{TlsError, TransportError};

fn tls_error(
    what: &'static str,
    path: &Path,
    error: impl Into<Box<dyn std::error::Error + Send + Sync>>,
) -> TransportError {
    TransportError::Tls(TlsError::File {
        what,
        path: path.to_owned(),
        source: Some(error.into()),
    })
}

fn tls_empty(what: &'static str, path: &Path) -> TransportError {
    TransportError::Tls(TlsError::File {
        what,
        path: path.to_owned(),
        source: None,
    })
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The server's TLS settings from PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TransportError> {
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_error("cannot read", cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_error("bad certificate in", cert, e))?;
    if chain.is_empty() {
        return Err(tls_empty("no certificate in", cert));
    }
    let key =
        PrivateKeyDer::from_pem_file(key).map_err(|e| tls_error("cannot read the key", key, e))?;
    let config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(TlsError::Config)?;
    Ok(Arc::new(config))
}

/// The client's TLS settings: trust the CA certificates in `ca`.
pub fn client_config(ca: &Path) -> Result<Arc<rustls::ClientConfig>, TransportError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut pinned = Vec::new();
    for cert in CertificateDer::pem_file_iter(ca).map_err(|e| tls_error("cannot read", ca, e))? {
        let cert = cert.map_err(|e| tls_error("bad certificate in", ca, e))?;
        pinned.push(cert.clone());
        roots
            .add(cert)
            .map_err(|e| tls_error("unusable certificate in", ca, e))?;
    }
    if roots.is_empty() {
        return Err(tls_empty("no certificate in", ca));
    }
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| tls_error("unusable certificates in", ca, e))?;
    let verifier = TrustedCertificates { pinned, webpki };
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(TlsError::Config)?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The CA file's certificates as roots, as usual; and each of them trusted
/// as itself: a self-signed server certificate given as `--tls-ca` is often
/// marked as a CA, which WebPKI refuses to see as a server's own
/// (`CaUsedAsEndEntity`). The exact certificate is accepted then, still only
/// for the names it is valid for and while it is valid.
#[derive(Debug)]
struct TrustedCertificates {
    pinned: Vec<CertificateDer<'static>>,
    webpki: Arc<WebPkiServerVerifier>,
}

impl ServerCertVerifier for TrustedCertificates {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::CertificateError as E;
        let error = match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Ok(verified) => return Ok(verified),
            Err(error) => error,
        };
        // WebPKI checks a certificate's dates before its CA flag, so an expired
        // one is refused as expired here; names it checks only once a chain is
        // found, so a pinned certificate's are checked below.
        let dates = matches!(
            error,
            rustls::Error::InvalidCertificate(
                E::Expired
                    | E::ExpiredContext { .. }
                    | E::NotValidYet
                    | E::NotValidYetContext { .. }
            )
        );
        let pinned = self
            .pinned
            .iter()
            .any(|c| c.as_ref() == end_entity.as_ref());
        if dates || !pinned {
            return Err(error);
        }
        rustls::client::verify_server_name(
            &rustls::server::ParsedCertificate::try_from(end_entity)?,
            server_name,
        )?;
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// A blocking server-side TLS stream for a session thread.
pub(crate) struct TlsServerStream(rustls::StreamOwned<rustls::ServerConnection, TcpStream>);

impl TlsServerStream {
    pub(crate) fn new(
        config: Arc<rustls::ServerConfig>,
        socket: TcpStream,
    ) -> Result<Self, TransportError> {
        let connection = rustls::ServerConnection::new(config).map_err(TlsError::Config)?;
        Ok(TlsServerStream(rustls::StreamOwned::new(
            connection, socket,
        )))
    }
}

impl Read for TlsServerStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsServerStream {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

// SAFETY: the default `read_uninit` (zeroing first) is kept.
unsafe impl LinkStream for TlsServerStream {
    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.0.sock.as_fd()
    }

    fn buffered(&mut self) -> bool {
        // Decrypted bytes may wait in rustls while the socket has nothing new.
        self.0
            .conn
            .process_new_packets()
            .map(|state| state.plaintext_bytes_to_read() > 0)
            .unwrap_or(true)
    }
}
