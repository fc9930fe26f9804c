//! `strata pull NAME[:TAG|@DIGEST]`: an image from a registry into the store, as `docker pull`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::registry_args::{RegistryArgs, TransferArgs};
use super::store_root::open_store;
use crate::registry::platform::PlatformSpec;
use crate::registry::pull::{LazyOptions, PullOptions, Puller};
use crate::registry::reference::Reference;

/// Arguments of `strata pull`.
#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// The image: `[HOST[:PORT]/]PATH[:TAG|@DIGEST]` (`busybox` is docker.io/library/busybox:latest).
    #[arg(value_name = "NAME[:TAG|@DIGEST]")]
    name: String,
    /// The platform to pull from a multi-platform image [default: this machine's].
    #[arg(long, value_name = "OS/ARCH[/VARIANT]", value_parser = PlatformSpec::parse)]
    platform: Option<PlatformSpec>,
    /// Every tag of the repository.
    #[arg(short = 'a', long)]
    all_tags: bool,
    /// Layers downloaded at once.
    #[arg(long, value_name = "N", default_value_t = 3)]
    max_concurrent_downloads: usize,
    /// Read only the table of contents of eStargz layers (usable at once, files fetched on
    /// first use, the rest in the background while mounted; `--lazy=only`: nothing in the
    /// background). Other layers are pulled whole.
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "only")]
    lazy: Option<LazyArg>,
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// `--lazy` and `--lazy=only`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LazyArg {
    /// Files on first use, the rest in the background.
    On,
    /// Files on first use only.
    Only,
}

/// Pulls the image (or every tag) and prints its full reference last.
pub fn run(a: PullArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let reference = Reference::parse(&a.name)?;
    if a.all_tags && (reference.digest.is_some() || a.name.rsplit('/').next().is_some_and(|l| l.contains(':'))) {
        anyhow::bail!("tag can't be used with --all-tags/-a");
    }
    let creds = a.transfer.creds()?;
    let client = a.registry.connect(&reference.registry, creds)?;
    let store = open_store(root)?;
    let board = a.transfer.board();
    let opts = PullOptions {
        platform: a.platform.clone().unwrap_or_else(PlatformSpec::host),
        max_concurrent: a.max_concurrent_downloads,
        lazy: a.lazy.map(|l| LazyOptions {
            background: l == LazyArg::On,
            tls: a.registry.tls(),
            authfile: a.registry.authfile.authfile.clone(),
        }),
    };
    let puller = Puller { client: &client, store: &store, board: &board, opts: &opts };
    let references = if a.all_tags {
        let mut tags = client
            .tags(&reference.repository)
            .with_context(|| format!("listing the tags of {}", reference.familiar_repository()))?;
        tags.sort();
        tags.into_iter().map(|t| reference.with_tag(&t)).collect()
    } else {
        vec![reference]
    };
    for r in &references {
        puller.pull(r).with_context(|| format!("pulling {}", r.familiar()))?;
    }
    if a.all_tags {
        println!("{}", references[0].full_repository());
    } else {
        println!("{}", references[0]);
    }
    Ok(ExitCode::SUCCESS)
}

/// With `--lazy` on `run` or `mount`: an image not in the store is pulled lazily first (with
/// the default registry settings: plain HTTP on loopback only, credentials from the usual
/// files).
pub fn lazy_if_missing(root: &Path, image: &str, lazy: LazyArg) -> anyhow::Result<()> {
    let store = open_store(root)?;
    if store.resolve(image).is_ok() {
        return Ok(());
    }
    let reference = Reference::parse(image)?;
    let registry = RegistryArgs::default_for_lazy();
    let client = registry.connect(&reference.registry, None)?;
    // As docker run: a line on stderr; stdout stays the command's.
    eprintln!("Unable to find image '{}' locally; pulling its tables of contents", reference.familiar());
    let board = crate::registry::progress::Board::new(crate::image::progress::ProgressMode::Quiet);
    let opts = PullOptions {
        platform: PlatformSpec::host(),
        max_concurrent: 3,
        lazy: Some(LazyOptions { background: lazy == LazyArg::On, tls: registry.tls(), authfile: None }),
    };
    let puller = Puller { client: &client, store: &store, board: &board, opts: &opts };
    puller.pull(&reference).with_context(|| format!("pulling {}", reference.familiar()))?;
    Ok(())
}
