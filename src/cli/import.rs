//! `strata import`: make a one-layer image from a rootfs tarball (plain, gzip or zstd).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::load::undo_on_error;
use super::store_root::open_store;
use crate::image::import::Importer;
use crate::image::progress::{Progress, ProgressMode};
use crate::image::reference::Name;

/// Arguments of `strata import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The tarball of a root filesystem.
    #[arg(value_name = "TARBALL")]
    tarball: PathBuf,
    /// Name for the image.
    #[arg(value_name = "REPOSITORY[:TAG]")]
    name: Option<String>,
    /// Progress lines: live on a terminal (auto), final lines only (plain), or none (quiet).
    #[arg(long, value_enum, default_value_t)]
    progress: ProgressMode,
}

/// Imports the tarball; prints the new image id.
pub fn run(a: ImportArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let name = a.name.as_deref().map(Name::parse).transpose()?;
    let store = open_store(root)?;
    let lock = store.write()?;
    let importer = Importer::new(&lock, Progress::new(a.progress));
    let loaded = undo_on_error(&lock, importer.import_rootfs(&a.tarball, name))
        .with_context(|| format!("importing {}", a.tarball.display()))?;
    println!("{}", loaded.id);
    Ok(ExitCode::SUCCESS)
}
