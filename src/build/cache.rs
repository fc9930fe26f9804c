//! The build cache: a step's key (its parent image, its instruction after expansion with the
//! build args it uses, and for COPY/ADD a digest of its sources) → the image it made, one file
//! per key under `ROOT/build-cache/`, written atomically. An entry whose image is gone from
//! the store is a miss.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

use crate::image::digest::Digest;
use crate::image::store::{self, Image, Store, StoreError};

/// The cache of one store.
pub struct Cache {
    dir: PathBuf,
}

/// A step's cache key.
pub fn key(parent: &str, step: &str, sources: Option<&str>) -> String {
    let mut h = Sha256::new();
    for part in [parent, step, sources.unwrap_or("")] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    hex::encode(h.finalize())
}

/// The cache's directory under `root`.
pub fn dir(root: &Path) -> PathBuf {
    root.join("build-cache")
}

impl Cache {
    /// The cache under `root`.
    pub fn new(root: &Path) -> Cache {
        Cache { dir: dir(root) }
    }

    /// The image `key` made, if it is still in the store.
    pub fn get(&self, store: &Store, key: &str) -> Option<Image> {
        let text = std::fs::read_to_string(self.dir.join(key)).ok()?;
        let manifest = Digest::parse(text.trim()).ok()?;
        store.images().ok()?.into_iter().find(|i| i.descriptor.digest == manifest)
    }

    /// The manifests the cache's entries name: the build's step images, which `strata images`
    /// lists only with `-a` when they have no name.
    pub fn manifests(&self) -> std::collections::BTreeSet<Digest> {
        let Ok(entries) = std::fs::read_dir(&self.dir) else { return Default::default() };
        entries
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path()).ok())
            .filter_map(|t| Digest::parse(t.trim()).ok())
            .collect()
    }

    /// Records that `key` made the image whose manifest is `manifest`.
    pub fn put(&self, key: &str, manifest: &Digest) -> Result<(), StoreError> {
        std::fs::create_dir_all(&self.dir).map_err(|source| StoreError::Io { path: self.dir.clone(), source })?;
        store::write_atomic(&self.dir.join(key), manifest.to_string().as_bytes())
    }
}
