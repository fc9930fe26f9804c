//! `strata prune`: delete untagged images (with `--all`, every image no mount uses), records of
//! image mounts that are gone, and every blob and layer nothing reaches.

use std::path::Path;
use std::process::ExitCode;

use super::store_root::{human_size, open_store};
use crate::image::store;

/// Arguments of `strata prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Delete every image that no mount uses, not only untagged ones.
    #[arg(short = 'a', long)]
    all: bool,
}

/// Prunes and prints what went.
pub fn run(a: PruneArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let lock = store.write()?;
    lock.drop_stale_mounts()?;
    let in_use: Vec<_> = store.mounts()?.into_iter().map(|(_, r)| r.manifest).collect();
    let mut index = store.index()?;
    let mut deleted = Vec::new();
    for img in store.images()? {
        if (a.all || img.names.is_empty()) && !in_use.contains(&img.descriptor.digest) {
            store::remove_image(&mut index, &img.descriptor.digest);
            deleted.push(img.id().clone());
        }
    }
    lock.save_index(&index)?;
    let report = lock.gc()?;
    if !deleted.is_empty() || !report.layers.is_empty() {
        println!("Deleted Images:");
        deleted.iter().for_each(|d| println!("deleted: {d}"));
        report.layers.iter().for_each(|l| println!("deleted: sha256:{l}"));
        println!();
    }
    println!("Total reclaimed space: {}", human_size(report.bytes));
    Ok(ExitCode::SUCCESS)
}
