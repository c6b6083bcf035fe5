//! Owns TLS settings: the roots a client trusts ([`TlsRoots`]: webpki-roots' Mozilla bundle,
//! plus an optional PEM CA file), the client configuration each worker builds from them
//! ([`TlsRoots::worker_connector`]: one rustls `ClientConfig` per worker, so its session cache
//! for resumption is never shared across cores), and a server's certificate and key
//! ([`server_tls`]).
//!
//! Why webpki-roots and not the system store (rustls-native-certs): the exchange runs in
//! minimal containers and on fresh Debian installs, which may lack `ca-certificates`; a root
//! set compiled in verifies public DSPs there too, and is updated with the crate. A private
//! CA (a DSP inside a company network, or the tests' own CA) is added with a CA file.
//!
//! Crypto: rustls with the `ring` provider (aws-lc-rs, rustls's default, needs cmake and a long
//! C build on every fresh machine).

use std::{io, path::Path, sync::Arc};

use monoio_rustls::{TlsAcceptor, TlsConnector};
use rustls::{
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName},
    ClientConfig, RootCertStore, ServerConfig,
};

/// TLS sessions remembered per worker for resumption (rustls's own default is 256 per
/// config; one config per worker makes this per worker).
pub const SESSIONS_PER_WORKER_MAX: usize = 256;

/// The certificate authorities a client trusts. Built once at start (it parses files), shared
/// by every worker (`Send + Sync`), turned into a per-worker connector on each worker.
#[derive(Debug, Clone)]
pub struct TlsRoots {
    roots: Arc<RootCertStore>,
}

impl TlsRoots {
    /// The compiled-in public roots (Mozilla's, from webpki-roots), plus every certificate in
    /// `ca_file` (PEM) when one is given. A CA file that cannot be read or holds no certificate
    /// is an error naming the file.
    pub fn load(ca_file: Option<&Path>) -> io::Result<Self> {
        let mut roots = RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = ca_file {
            let added = add_pem_roots(&mut roots, path)?;
            if added == 0 {
                return Err(invalid(path, "holds no certificate"));
            }
        }
        Ok(Self {
            roots: Arc::new(roots),
        })
    }

    /// Only the CA certificates in `ca_file` (no public roots): for tests and closed networks.
    pub fn only(ca_file: &Path) -> io::Result<Self> {
        let mut roots = RootCertStore::empty();
        if add_pem_roots(&mut roots, ca_file)? == 0 {
            return Err(invalid(ca_file, "holds no certificate"));
        }
        Ok(Self {
            roots: Arc::new(roots),
        })
    }

    /// A connector for one worker: its own `ClientConfig`, and so its own session cache.
    pub fn worker_connector(&self) -> WorkerTls {
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(self.roots.clone())
            .with_no_client_auth();
        config.resumption = rustls::client::Resumption::in_memory_sessions(SESSIONS_PER_WORKER_MAX);
        WorkerTls(TlsConnector::from(Arc::new(config)))
    }
}

/// One worker's TLS client config (cheap to clone: shared by that worker's pools, never sent
/// to another worker, so resumption sessions stay on the core that made them).
#[derive(Clone)]
pub struct WorkerTls(pub(crate) TlsConnector);

impl std::fmt::Debug for WorkerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WorkerTls")
    }
}

/// The crypto provider, named rather than left to rustls's process default (which fails when
/// a dependency turns on a second provider).
// rustls marks ring's provider deprecated because it lacks post-quantum key exchange; taken
// knowingly (see the module doc: aws-lc-rs costs a cmake and C build on every machine).
#[allow(deprecated)]
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// What a pool needs to open TLS connections to one upstream: the worker's connector and the
/// name checked in the certificate and sent as SNI.
#[derive(Clone)]
pub struct UpstreamTls {
    /// The worker's connector ([`TlsRoots::worker_connector`]).
    pub connector: WorkerTls,
    /// Certificate name and SNI ([`server_name`]).
    pub server_name: ServerName<'static>,
}

impl std::fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

fn invalid(path: &Path, what: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("{}: {what}", path.display()),
    )
}

fn add_pem_roots(roots: &mut RootCertStore, path: &Path) -> io::Result<usize> {
    let certs = read_certs(path)?;
    let (added, _ignored) = roots.add_parsable_certificates(certs);
    Ok(added)
}

fn read_certs(path: &Path) -> io::Result<Vec<CertificateDer<'static>>> {
    let pem = std::fs::read(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(path, &format!("bad PEM certificate: {e}")))
}

/// The name a client checks the certificate against and sends as SNI: a DNS name or an IP
/// literal (without brackets), as written in the DSP's URL.
pub fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host.to_string())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "not a valid TLS server name"))
}

/// A server's TLS settings (`Send + Sync`, cloned into every worker).
#[derive(Clone)]
pub struct ServerTls(pub TlsAcceptor);

impl std::fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServerTls")
    }
}

/// A server's TLS settings from a PEM certificate chain and a PEM private key.
pub fn server_tls(cert_file: &Path, key_file: &Path) -> io::Result<ServerTls> {
    let certs = read_certs(cert_file)?;
    if certs.is_empty() {
        return Err(invalid(cert_file, "holds no certificate"));
    }
    let key_pem = std::fs::read(key_file)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", key_file.display())))?;
    let key = PrivateKeyDer::from_pem_slice(&key_pem)
        .map_err(|e| invalid(key_file, &format!("bad PEM private key: {e}")))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid(cert_file, &format!("TLS versions: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| invalid(cert_file, &format!("certificate and key refused: {e}")))?;
    Ok(ServerTls(TlsAcceptor::from(Arc::new(config))))
}
