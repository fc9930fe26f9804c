//! The image or container a user names, opened as a [`Stack`].
//!
//! A name is looked up among containers first (name, id, or unique id prefix), then among
//! images (`Store::resolve`). An image's layers are its unpacked layer dirs, bottom first, each
//! with its diff_id and the history line that made it; a container adds its upper dir on top.

use super::container::{self, Record};
use super::stack::{LayerInfo, Stack};
use super::{ExplainError, Result};
use crate::image::store::{Image, Store};

/// An opened image or container.
#[derive(Debug)]
pub struct Target {
    /// Its layers.
    pub stack: Stack,
    /// The image (of the container).
    pub image: Image,
    /// The container, if a container was named.
    pub container: Option<Record>,
}

impl Target {
    /// Opens what `reference` names in `store`.
    pub fn open(store: &Store, reference: &str) -> Result<Target> {
        let _lock = store.read()?;
        let container = container::find(store.root(), reference)?;
        let image = match &container {
            Some(rec) => store.resolve(&rec.image_id)?,
            None => store.resolve(reference)?,
        };
        let mut infos = image_layers(store, &image, reference)?;
        if let Some(rec) = &container {
            let created_by = format!("container {} ({})", rec.name, &rec.id[..rec.id.len().min(12)]);
            infos.push(LayerInfo {
                label: "upper".into(),
                diff_id: None,
                created_by: Some(created_by),
                dir: rec.upper(),
            });
        }
        let stack = Stack::read(reference, infos)?;
        Ok(Target { stack, image, container })
    }

    /// "image NAME" or "container NAME (image IMAGE)", for headings.
    pub fn describe(&self) -> String {
        let image = self.image.names.first().cloned().unwrap_or_else(|| self.image.id().short().to_string());
        match &self.container {
            Some(rec) => format!("container {} (image {image})", rec.name),
            None => format!("image {image}"),
        }
    }
}

/// The layer dirs of `image`, bottom first, labelled `1`..`N`.
fn image_layers(store: &Store, image: &Image, reference: &str) -> Result<Vec<LayerInfo>> {
    let mut made_by = image.config.history.iter().filter(|h| !h.empty_layer).map(|h| h.created_by.clone());
    let mut out = Vec::new();
    for (i, diff_id) in image.config.rootfs.diff_ids.iter().enumerate() {
        if !store.has_layer(diff_id) {
            return Err(ExplainError::MissingLayer { image: reference.into(), diff_id: diff_id.to_string() });
        }
        out.push(LayerInfo {
            label: (i + 1).to_string(),
            diff_id: Some(diff_id.clone()),
            created_by: made_by.next().flatten(),
            dir: store.layer_path(diff_id),
        });
    }
    Ok(out)
}
