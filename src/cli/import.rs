//! `strata import`: make a one-layer image from a rootfs tarball (plain, gzip or zstd).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::store_root::open_store;
use crate::image::import::Importer;
use crate::image::progress::{Progress, ProgressMode};
use crate::image::reference::Name;
use crate::image::store::undo_on_error;

/// Arguments of `strata import`.
#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The tarball of a root filesystem ('-': standard input).
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
    let origin = a.tarball.display().to_string();
    let stdin_copy = if origin == "-" { Some(copy_stdin(&store.tmp_dir())?) } else { None };
    let path = stdin_copy.as_ref().map(|t| t.path()).unwrap_or(&a.tarball);
    let loaded = undo_on_error(&lock, importer.import_rootfs(path, &origin, name))
        .with_context(|| format!("importing {origin}"))?;
    println!("{}", loaded.id);
    Ok(ExitCode::SUCCESS)
}

/// Standard input, copied into the store's `tmp/` (removed when dropped).
fn copy_stdin(tmp_dir: &Path) -> anyhow::Result<tempfile::NamedTempFile> {
    let mut tmp = tempfile::Builder::new().prefix("stdin-").tempfile_in(tmp_dir).context("creating a temp file")?;
    std::io::copy(&mut std::io::stdin().lock(), &mut tmp).context("reading standard input")?;
    Ok(tmp)
}
