//! Certificates made for a test with rcgen: a self-signed CA ([`TestCa`]) and server
//! certificates it signs for the names given, written as PEM files into a scratch directory
//! removed on drop. Nothing is shipped or reused between runs.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, Certificate, CertificateParams, DnType, IsCa, KeyPair};

/// A test CA and the directory its files go to.
pub struct TestCa {
    dir: PathBuf,
    cert: Certificate,
    key: KeyPair,
    /// The CA certificate, PEM (what a client trusts, e.g. `--dsp-ca-file`).
    pub ca_file: PathBuf,
}

/// A server certificate and its key, as PEM files.
#[derive(Debug, Clone)]
pub struct ServerCert {
    /// Certificate chain file (the leaf).
    pub cert_file: PathBuf,
    /// Private key file.
    pub key_file: PathBuf,
}

impl TestCa {
    /// A new CA named `name`, its files under a fresh directory in the system temp dir.
    pub fn new(name: &str) -> TestCa {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("rtb-tls-{name}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rtb test CA {name}"));
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, cert.pem()).unwrap();
        TestCa {
            dir,
            cert,
            key,
            ca_file,
        }
    }

    /// A server certificate for `names` (DNS names or IP literals), signed by this CA, written
    /// as `{file}.pem` and `{file}.key`.
    pub fn server_cert(&self, file: &str, names: &[&str]) -> ServerCert {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("rtb test server {file}"));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let cert_file = self.dir.join(format!("{file}.pem"));
        let key_file = self.dir.join(format!("{file}.key"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        ServerCert {
            cert_file,
            key_file,
        }
    }

    /// The directory holding the files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").field("dir", &self.dir).finish()
    }
}

impl Drop for TestCa {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl ServerCert {
    /// The two files as strings, for command-line flags.
    pub fn args(&self) -> [String; 4] {
        [
            "--tls-cert".into(),
            self.cert_file.display().to_string(),
            "--tls-key".into(),
            self.key_file.display().to_string(),
        ]
    }
}
