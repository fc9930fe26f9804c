//! The flags every verb that talks to a registry takes (`--tls-verify`, `--cert-dir`,
//! `--authfile`, `--creds`), and the connection they make.

use std::path::PathBuf;

use anyhow::Context;

use crate::image::progress::ProgressMode;
use crate::registry::client::Client;
use crate::registry::credentials::{Auth, Credentials};
use crate::registry::progress::Board;
use crate::registry::reference::api_host;
use crate::registry::tls::TlsOptions;

/// Connection flags.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Verify the registry's TLS certificate (false: skip verification and allow plain HTTP).
    #[arg(long, value_name = "BOOL", default_value_t = true, action = clap::ArgAction::Set,
          num_args = 0..=1, default_missing_value = "true", require_equals = true)]
    pub tls_verify: bool,
    /// A directory with the registry's CA certificates (*.crt) and client certificate
    /// (NAME.cert, NAME.key) [default: /etc/containers/certs.d/HOST, /etc/docker/certs.d/HOST].
    #[arg(long, value_name = "DIR")]
    pub cert_dir: Option<PathBuf>,
    #[command(flatten)]
    pub authfile: AuthfileArgs,
}

/// Where credentials are kept.
#[derive(clap::Args, Debug, Clone)]
pub struct AuthfileArgs {
    /// The credentials file to read and write [default: $REGISTRY_AUTH_FILE, podman's auth.json,
    /// docker's config.json].
    #[arg(long, value_name = "FILE", env = "REGISTRY_AUTH_FILE")]
    pub authfile: Option<PathBuf>,
}

impl AuthfileArgs {
    /// The credentials files asked for.
    pub fn credentials(&self) -> Credentials {
        match &self.authfile {
            Some(f) => Credentials::with_files(vec![f.clone()]),
            None => Credentials::from_env(),
        }
    }
}

impl RegistryArgs {
    /// The defaults (what no flag asks for).
    pub fn default_for_lazy() -> RegistryArgs {
        RegistryArgs { tls_verify: true, cert_dir: None, authfile: AuthfileArgs { authfile: None } }
    }

    /// The TLS settings asked for.
    pub fn tls(&self) -> TlsOptions {
        TlsOptions { verify: self.tls_verify, cert_dir: self.cert_dir.clone() }
    }

    /// Connects to `registry` with the credentials stored for it (or `creds`).
    pub fn connect(&self, registry: &str, creds: Option<Auth>) -> anyhow::Result<Client> {
        let creds = match creds {
            Some(c) => Some(c),
            None => self.authfile.credentials().get(registry)?,
        };
        Client::connect(api_host(registry), &self.tls(), creds).with_context(|| format!("registry {registry}"))
    }
}

/// `USER:PASSWORD` as given to `--creds` (the password may hold colons).
pub fn parse_creds(s: &str) -> anyhow::Result<Auth> {
    match s.split_once(':') {
        Some((u, p)) if !u.is_empty() => Ok(Auth { username: u.to_string(), password: p.to_string() }),
        _ => anyhow::bail!("--creds takes USER:PASSWORD"),
    }
}

/// Output and one-off credentials of `pull` and `push`.
#[derive(clap::Args, Debug, Clone)]
pub struct TransferArgs {
    /// Print only the result (the reference pulled, the digest line pushed), no progress.
    #[arg(short = 'q', long)]
    pub quiet: bool,
    /// Progress lines: live on a terminal (auto), final lines only (plain), or none (quiet).
    #[arg(long, value_enum, default_value_t)]
    pub progress: ProgressMode,
    /// Credentials for this command only.
    #[arg(long, value_name = "USER:PASSWORD")]
    pub creds: Option<String>,
}

impl TransferArgs {
    /// The progress board asked for.
    pub fn board(&self) -> Board {
        Board::new(if self.quiet { ProgressMode::Quiet } else { self.progress })
    }

    /// `--creds`, parsed.
    pub fn creds(&self) -> anyhow::Result<Option<Auth>> {
        self.creds.as_deref().map(parse_creds).transpose()
    }
}
