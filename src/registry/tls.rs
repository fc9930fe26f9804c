//! TLS settings for one registry host, the way docker and podman find them: a certs dir per host
//! (`/etc/containers/certs.d/HOST:PORT/`, `/etc/docker/certs.d/HOST:PORT/`, or `--cert-dir DIR`)
//! holding CA certificates (`*.crt`) and a client certificate (`NAME.cert` with `NAME.key`); the
//! system's CA bundle is trusted besides. `--tls-verify=false` turns verification off.

use std::fs;
use std::path::{Path, PathBuf};

use ureq::tls::{Certificate, ClientCert, PrivateKey, RootCerts, TlsConfig};

use super::error::{RegistryError, Result};

/// The system CA bundle (Debian's `ca-certificates`).
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// How to verify a registry's certificate.
#[derive(Clone, Debug)]
pub struct TlsOptions {
    /// Verify the certificate (and refuse plain HTTP except on loopback).
    pub verify: bool,
    /// A certs dir to use instead of the per-host defaults.
    pub cert_dir: Option<PathBuf>,
}

impl Default for TlsOptions {
    fn default() -> Self {
        TlsOptions { verify: true, cert_dir: None }
    }
}

/// The dirs searched for `host`'s certificates.
fn cert_dirs(opts: &TlsOptions, host: &str) -> Vec<PathBuf> {
    if let Some(d) = &opts.cert_dir {
        return vec![d.clone()];
    }
    let mut dirs = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        dirs.push(Path::new(&home).join(".config/containers/certs.d").join(host));
    }
    dirs.push(Path::new("/etc/containers/certs.d").join(host));
    dirs.push(Path::new("/etc/docker/certs.d").join(host));
    dirs
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> RegistryError + '_ {
    move |source| RegistryError::Io { path: path.display().to_string(), source }
}

fn pem_certs(path: &Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = fs::read(path).map_err(io_err(path))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item {
            Ok(ureq::tls::PemItem::Certificate(c)) => out.push(c),
            Ok(_) => {}
            Err(e) => {
                return Err(RegistryError::Io {
                    path: path.display().to_string(),
                    source: std::io::Error::other(format!("not a PEM certificate file: {e}")),
                });
            }
        }
    }
    Ok(out)
}

/// Builds the TLS config for `host` (host[:port]).
pub fn config(opts: &TlsOptions, host: &str) -> Result<TlsConfig> {
    let mut builder = TlsConfig::builder();
    if !opts.verify {
        return Ok(builder.disable_verification(true).build());
    }
    let mut cas = Vec::new();
    let mut client = None;
    for dir in cert_dirs(opts, host) {
        let Ok(entries) = fs::read_dir(&dir) else {
            if opts.cert_dir.is_some() {
                return Err(RegistryError::Io {
                    path: dir.display().to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::NotFound, "cert dir not found"),
                });
            }
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        files.sort();
        for f in &files {
            match f.extension().and_then(|e| e.to_str()) {
                Some("crt") => cas.extend(pem_certs(f)?),
                Some("cert") if client.is_none() => client = Some(client_cert(f)?),
                _ => {}
            }
        }
    }
    if !cas.is_empty() {
        if Path::new(SYSTEM_BUNDLE).exists() {
            cas.extend(pem_certs(Path::new(SYSTEM_BUNDLE))?);
        }
        builder = builder.root_certs(RootCerts::new_with_certs(&cas));
    }
    Ok(builder.client_cert(client).build())
}

/// `NAME.cert` and its `NAME.key`.
fn client_cert(cert: &Path) -> Result<ClientCert> {
    let chain = pem_certs(cert)?;
    let key_path = cert.with_extension("key");
    let key_pem = fs::read(&key_path).map_err(io_err(&key_path))?;
    let key = PrivateKey::from_pem(&key_pem).map_err(|e| RegistryError::Io {
        path: key_path.display().to_string(),
        source: std::io::Error::other(format!("not a PEM private key: {e}")),
    })?;
    Ok(ClientCert::new_with_certs(&chain, key))
}

/// Whether plain HTTP may be tried for `host`: with `--tls-verify=false`, or on loopback (as
/// docker treats 127.0.0.0/8 and `localhost` as insecure registries).
pub fn http_allowed(opts: &TlsOptions, host: &str) -> bool {
    if !opts.verify {
        return true;
    }
    let name = match host.rsplit_once(':') {
        Some((n, p)) if p.bytes().all(|b| b.is_ascii_digit()) => n,
        _ => host,
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_on_loopback_or_when_asked() {
        let verify = TlsOptions::default();
        assert!(http_allowed(&verify, "127.0.0.1:5000"));
        assert!(http_allowed(&verify, "localhost:5000"));
        assert!(http_allowed(&verify, "[::1]:5000"));
        assert!(!http_allowed(&verify, "registry.example:5000"));
        assert!(!http_allowed(&verify, "10.0.0.1"));
        assert!(http_allowed(&TlsOptions { verify: false, cert_dir: None }, "registry.example"));
    }

    #[test]
    fn a_missing_cert_dir_is_named() {
        let opts = TlsOptions { verify: true, cert_dir: Some("/nonexistent/certs".into()) };
        let e = config(&opts, "h:1").err().unwrap().to_string();
        assert!(e.contains("/nonexistent/certs"), "{e}");
    }
}
