//! `strata load`: load images from an OCI layout dir, an oci-archive or a `docker save` archive.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::store_root::open_store;
use crate::image::import::{Importer, Loaded};
use crate::image::progress::{Progress, ProgressMode};
use crate::image::store::undo_on_error;

/// Arguments of `strata load`.
#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    /// The archive (docker save, oci-archive; may be gzip/zstd compressed) or OCI layout dir.
    #[arg(short = 'i', long = "input", value_name = "FILE|DIR")]
    input: Option<PathBuf>,
    /// Same as --input.
    #[arg(value_name = "FILE|DIR", conflicts_with = "input")]
    path: Option<PathBuf>,
    /// Print only the loaded images, no progress.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Progress lines: live on a terminal (auto), final lines only (plain), or none (quiet).
    #[arg(long, value_enum, default_value_t)]
    progress: ProgressMode,
}

/// Loads every image of the input into the store.
pub fn run(a: LoadArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let Some(path) = a.input.as_ref().or(a.path.as_ref()) else {
        bail!("strata load needs an archive or OCI layout: strata load -i FILE|DIR");
    };
    let store = open_store(root)?;
    let lock = store.write()?;
    let mode = if a.quiet { ProgressMode::Quiet } else { a.progress };
    let loaded = undo_on_error(&lock, Importer::new(&lock, Progress::new(mode)).load(path))
        .with_context(|| format!("loading {}", path.display()))?;
    print_loaded(&loaded);
    Ok(ExitCode::SUCCESS)
}

/// `Loaded image: NAME` per name, or `Loaded image ID: sha256:...` for an untagged image.
pub fn print_loaded(loaded: &[Loaded]) {
    for l in loaded {
        if l.names.is_empty() {
            println!("Loaded image ID: {}", l.id);
        }
        for n in &l.names {
            println!("Loaded image: {n}");
        }
    }
}
