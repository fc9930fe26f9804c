//! Where the store's blobs are known to be in registries (`ROOT/distribution/HEX`, one
//! `registry/repository` per line), so that a push can ask the registry to mount a blob from a
//! repository that has it instead of uploading it again ("Mounted from …"), as docker does.
//!
//! It is a cache: a lost or stale line only costs an upload.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use crate::image::digest::Digest;
use crate::image::spec::Descriptor;
use crate::image::store::{Store, write_atomic};

fn path(store: &Store, blob: &Digest) -> PathBuf {
    store.root().join("distribution").join(blob.hex())
}

/// The repositories of `registry` known to hold `blob`.
pub fn repositories(store: &Store, blob: &Digest, registry: &str) -> Vec<String> {
    let text = fs::read_to_string(path(store, blob)).unwrap_or_default();
    let prefix = format!("{registry}/");
    text.lines().filter_map(|l| l.strip_prefix(&prefix)).map(str::to_string).collect()
}

/// Records that `registry/repository` holds an image's layers and config (failures are only
/// logged).
pub fn remember(store: &Store, layers: &[Descriptor], config: &Descriptor, registry: &str, repository: &str) {
    let blobs = layers.iter().chain([config]).map(|d| &d.digest);
    let dir = store.root().join("distribution");
    if let Err(e) = fs::create_dir_all(&dir) {
        log::warn!("{}: {e}", dir.display());
        return;
    }
    let line = format!("{registry}/{repository}");
    for blob in blobs {
        let p = path(store, blob);
        let text = fs::read_to_string(&p).unwrap_or_default();
        let mut lines: BTreeSet<&str> = text.lines().collect();
        if !lines.insert(&line) {
            continue;
        }
        let joined: String = lines.iter().map(|l| format!("{l}\n")).collect();
        if let Err(e) = write_atomic(&p, joined.as_bytes()) {
            log::warn!("{e}");
        }
    }
}
