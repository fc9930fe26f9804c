//! `strata push NAME[:TAG] [DEST]`: an image from the store into a registry, as `docker push`
//! (and podman's optional destination).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::registry_args::{RegistryArgs, TransferArgs};
use super::store_root::open_store;
use crate::image::source::Compression;
use crate::image::store::write_atomic;
use crate::registry::push::{PushOptions, Pusher};
use crate::registry::reference::Reference;

/// How layers are compressed for the registry.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum PushCompression {
    /// gzip (what every tool reads).
    Gzip,
    /// zstd (smaller and faster; OCI 1.1 readers).
    Zstd,
    /// Plain tar.
    None,
    /// eStargz (gzip that can also be pulled lazily; see `strata convert --estargz`).
    Estargz,
}

/// Arguments of `strata push`.
#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// The image in the store; also where it goes unless DEST is given.
    #[arg(value_name = "NAME[:TAG]")]
    name: String,
    /// Where to push it (`[docker://]HOST/PATH[:TAG]`).
    #[arg(value_name = "DEST")]
    dest: Option<String>,
    /// Compress layers so for the registry [default: as stored, plain tars as gzip].
    #[arg(long, value_enum, value_name = "gzip|zstd|none|estargz")]
    compression: Option<PushCompression>,
    /// Write the pushed manifest's digest to FILE.
    #[arg(long, value_name = "FILE")]
    digestfile: Option<PathBuf>,
    /// Layers uploaded at once.
    #[arg(long, value_name = "N", default_value_t = 5)]
    max_concurrent_uploads: usize,
    #[command(flatten)]
    transfer: TransferArgs,
    #[command(flatten)]
    registry: RegistryArgs,
}

/// Pushes and prints docker's `TAG: digest: sha256:… size: N`.
pub fn run(a: PushArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    // The image as the store names it (`busybox` is `busybox:latest`), or an id.
    let local = match Reference::parse(&a.name) {
        Ok(r) if store.resolve(&r.familiar()).is_ok() => r.familiar(),
        _ => a.name.clone(),
    };
    let img = store.resolve(&local)?;
    let local = if matches!(a.compression, Some(PushCompression::Estargz)) {
        // Converted into the store (untagged: `prune` removes it), then pushed as it is.
        let lock = store.write()?;
        let converted = crate::image::store::undo_on_error(&lock, crate::image::convert::to_estargz(&lock, &img, &[]))?;
        let mut index = store.index()?;
        crate::image::store::add_untagged(&mut index, &converted.descriptor);
        lock.save_index(&index)?;
        store.load_image(&converted.descriptor)?.id().to_string()
    } else {
        local
    };
    let dest = Reference::parse(match &a.dest {
        Some(d) => destination(d)?,
        None => &a.name,
    })?;
    let creds = a.transfer.creds()?;
    let client = a.registry.connect(&dest.registry, creds)?;
    let board = a.transfer.board();
    let opts = PushOptions {
        compression: a
            .compression
            .map(|c| match c {
                PushCompression::Gzip => Compression::Gzip,
                PushCompression::Zstd => Compression::Zstd,
                PushCompression::None => Compression::None,
                PushCompression::Estargz => Compression::Gzip,
            })
            .filter(|_| !matches!(a.compression, Some(PushCompression::Estargz))),
        max_concurrent: a.max_concurrent_uploads,
    };
    let pusher = Pusher { client: &client, store: &store, board: &board, opts: &opts };
    let pushed = pusher.push(&local, &dest).with_context(|| format!("pushing {}", dest.familiar()))?;
    let tag = dest.tag.clone().unwrap_or_else(|| pushed.digest.to_string());
    println!("{tag}: digest: {} size: {}", pushed.digest, pushed.size);
    if let Some(f) = &a.digestfile {
        write_atomic(f, pushed.digest.to_string().as_bytes())
            .with_context(|| format!("--digestfile {}", f.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// A destination as podman takes it: a reference, or `docker://` and a reference.
fn destination(d: &str) -> anyhow::Result<&str> {
    if let Some(r) = d.strip_prefix("docker://") {
        return Ok(r);
    }
    if let Some((transport, _)) = d.split_once(':')
        && matches!(
            transport,
            "oci" | "oci-archive" | "docker-archive" | "dir" | "containers-storage" | "docker-daemon"
        )
    {
        anyhow::bail!("push to {transport}: is not supported; use `strata save` for archives and layouts");
    }
    Ok(d)
}
