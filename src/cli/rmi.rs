//! `strata rmi IMAGE...`: untag images, and delete those left without a name, with every blob
//! and layer no other image uses.

use std::path::Path;
use std::process::ExitCode;

use anyhow::bail;

use super::store_root::open_store;
use crate::image::reference::Name;
use crate::image::store::{self, Image, Store, WriteLock};

/// Arguments of `strata rmi`.
#[derive(clap::Args, Debug)]
pub struct RmiArgs {
    /// Remove an image given by id even if several names point to it.
    #[arg(short = 'f', long)]
    force: bool,
    /// Images: names or ids.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// Removes each image, then what nothing reaches any more.
pub fn run(a: RmiArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let lock = store.write()?;
    lock.drop_stale_mounts()?;
    for r in &a.images {
        remove(&store, &lock, r, a.force)?;
    }
    let report = lock.gc()?;
    for layer in report.layers {
        println!("Deleted: sha256:{layer}");
    }
    Ok(ExitCode::SUCCESS)
}

fn remove(store: &Store, lock: &WriteLock<'_>, reference: &str, force: bool) -> anyhow::Result<()> {
    let img = store.resolve(reference)?;
    let mut index = store.index()?;
    let by_name = Name::parse(reference).ok().map(|n| n.to_string()).filter(|n| img.names.contains(n));
    let names = match by_name {
        Some(n) => vec![n],
        None if img.names.len() > 1 && !force => bail!(
            "unable to delete {} (must be forced): image is referenced in multiple repositories ({})",
            img.id().short(),
            img.names.join(", ")
        ),
        None => img.names.clone(),
    };
    let last = names.len() == img.names.len();
    if last {
        check_unused(store, &img)?;
    }
    for n in &names {
        store::remove_name(&mut index, n);
        println!("Untagged: {n}");
    }
    if last {
        store::remove_image(&mut index, &img.descriptor.digest);
        println!("Deleted: {}", img.id());
    }
    lock.save_index(&index)?;
    Ok(())
}

/// An image mounted with `strata image mount` cannot be deleted.
pub fn check_unused(store: &Store, img: &Image) -> anyhow::Result<()> {
    if let Some((_, rec)) = store.mounts()?.into_iter().find(|(_, r)| r.manifest == img.descriptor.digest) {
        bail!(
            "image {} is in use by the mount on {} (strata image umount it first)",
            img.id().short(),
            rec.mountpoint.display()
        );
    }
    Ok(())
}
