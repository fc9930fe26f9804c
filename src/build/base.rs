//! The image a `FROM` (or `COPY --from=IMAGE`) names when it is not a stage: taken from the
//! store, or pulled from its registry when the store does not have it — or every time with
//! `--pull` — as docker's classic builder does, with `strata pull`'s code and output
//! (`latest: Pulling from …`, one line per layer, `Digest:`, `Status:`).

use std::io::IsTerminal;
use std::path::PathBuf;

use crate::image::progress::ProgressMode;
use crate::image::store::{Image, Store};
use crate::registry::client::Client;
use crate::registry::credentials::Credentials;
use crate::registry::platform::PlatformSpec;
use crate::registry::progress::Board;
use crate::registry::pull::{PullOptions, Puller};
use crate::registry::reference::{Reference, api_host};
use crate::registry::tls::TlsOptions;

/// How base images are fetched.
#[derive(Debug, Clone, Default)]
pub struct PullPolicy {
    /// `--pull`: pull even when the store has the image.
    pub always: bool,
    /// `--tls-verify`, `--cert-dir`.
    pub tls: TlsOptions,
    /// `--authfile` (default: podman's and docker's files).
    pub authfile: Option<PathBuf>,
}

/// The image `name` (as written in the Dockerfile) for `platform` (`FROM --platform`; the
/// host's by default): the store's, or pulled. An error is one line naming the image.
pub fn resolve(
    store: &Store,
    name: &str,
    platform: Option<&str>,
    policy: &PullPolicy,
    quiet: bool,
) -> Result<Image, String> {
    if !policy.always
        && let Some(img) = local(store, name)
    {
        return Ok(img);
    }
    let reference = Reference::parse(name).map_err(|e| e.to_string())?;
    let platform = match platform {
        Some(p) => PlatformSpec::parse(p)?,
        None => PlatformSpec::host(),
    };
    let creds = match &policy.authfile {
        Some(f) => Credentials::with_files(vec![f.clone()]),
        None => Credentials::from_env(),
    };
    let pulling = |e: &dyn std::fmt::Display| format!("pulling {}: {e}", reference.familiar());
    let auth = creds.get(&reference.registry).map_err(|e| pulling(&e))?;
    let client = Client::connect(api_host(&reference.registry), &policy.tls, auth).map_err(|e| pulling(&e))?;
    let mode = if quiet {
        ProgressMode::Quiet
    } else if std::io::stdout().is_terminal() {
        ProgressMode::Auto
    } else {
        ProgressMode::Plain
    };
    let board = Board::new(mode);
    let opts = PullOptions { platform, max_concurrent: 3, lazy: None };
    let puller = Puller { client: &client, store, board: &board, opts: &opts };
    let pulled = puller.pull(&reference).map_err(|e| pulling(&e))?;
    let _lock = store.read().map_err(|e| e.to_string())?;
    let images = store.images().map_err(|e| e.to_string())?;
    images.into_iter().find(|i| *i.id() == pulled.id).ok_or_else(|| pulling(&"not in the store after the pull"))
}

/// The store's image for `name`: as written, or under the short name a pull gives it
/// (`docker.io/library/busybox` is `busybox:latest`).
fn local(store: &Store, name: &str) -> Option<Image> {
    let _lock = store.read().ok()?;
    store.resolve(name).ok().or_else(|| {
        let short = Reference::parse(name).ok()?.store_name()?.ok()?;
        store.resolve(&short.to_string()).ok()
    })
}
