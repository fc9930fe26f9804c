//! `strata save IMAGE... -o FILE`: images out of the store, as `docker save` / `podman save`
//! write them (`--format docker-archive|oci-archive|oci-dir`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::store_root::open_store;
use crate::image::export::{self, Format, Saved};
use crate::image::progress::{Progress, ProgressMode};
use crate::image::reference::Name;
use crate::image::store::Image;

/// Arguments of `strata save`.
#[derive(clap::Args, Debug)]
pub struct SaveArgs {
    /// Images: names (kept in the output) or ids (saved untagged).
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
    /// Where to write (a file; a directory for oci-dir).
    #[arg(short = 'o', long, value_name = "FILE")]
    output: PathBuf,
    /// What to write.
    #[arg(long, value_enum, default_value_t)]
    format: Format,
    /// Progress of the blobs copied: live on a terminal (auto), final lines (plain), none.
    #[arg(long, value_enum, default_value_t)]
    progress: ProgressMode,
}

/// Saves the images.
pub fn run(a: SaveArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let _lock = store.read()?;
    let mut picked: Vec<(Image, Vec<Name>)> = Vec::new();
    for r in &a.images {
        let img = store.resolve(r)?;
        let name = Name::parse(r).ok().filter(|n| img.names.contains(&n.to_string()));
        match picked.iter_mut().find(|(i, _)| i.descriptor.digest == img.descriptor.digest) {
            Some((_, names)) => names.extend(name),
            None => picked.push((img, name.into_iter().collect())),
        }
    }
    let saved: Vec<Saved<'_>> = picked.iter().map(|(image, names)| Saved { image, names: names.clone() }).collect();
    export::save(&store, &saved, a.format, &a.output, Progress::on_stderr(a.progress))
        .with_context(|| format!("saving to {}", a.output.display()))?;
    Ok(ExitCode::SUCCESS)
}
