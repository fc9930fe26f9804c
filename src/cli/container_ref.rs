//! The container a user names on the command line, with its image and the image's layers
//! (for `strata diff` and `strata commit`).

use std::path::PathBuf;

use anyhow::{Context, anyhow, bail};

use crate::explain::container::{self, Record};
use crate::image::digest::Digest;
use crate::image::lower::Lowers;
use crate::image::spec::{Descriptor, MediaType};
use crate::image::store::{Image, Store};

/// A container opened for reading its changes.
pub struct Opened {
    /// Its record.
    pub record: Record,
    /// Its image.
    pub image: Image,
    /// The image's layers, top first.
    pub lowers: Lowers,
}

/// Opens the container `name` (name, id or unique id prefix) of `store`.
pub fn open(store: &Store, name: &str) -> anyhow::Result<Opened> {
    let record = container::find(store.root(), name)?.ok_or_else(|| anyhow!("No such container: {name}"))?;
    let image = image_of(store, &record).with_context(|| format!("container {}: its image", record.name))?;
    let mut dirs: Vec<PathBuf> = Vec::new();
    for diff_id in image.config.rootfs.diff_ids.iter().rev() {
        if !store.has_layer(diff_id) {
            bail!("container {}: layer {diff_id} of its image is not in the store", record.name);
        }
        dirs.push(store.layer_path(diff_id));
    }
    let lowers = Lowers::open(&dirs)?;
    Ok(Opened { record, image, lowers })
}

/// The container's image: by the manifest its record keeps, else by its image id.
fn image_of(store: &Store, rec: &Record) -> anyhow::Result<Image> {
    if let Ok(d) = Digest::parse(&rec.manifest)
        && store.has_blob(&d)
    {
        let desc = Descriptor::new(MediaType::OciManifest, d.clone(), store.blob_size(&d));
        return Ok(store.load_image(&desc)?);
    }
    Ok(store.resolve(&rec.image_id)?)
}
