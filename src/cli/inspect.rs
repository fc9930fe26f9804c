//! `strata inspect IMAGE...`: an image's config and layers as JSON (docker inspect's shape,
//! plus each layer's blob digest, diff_id, sizes and unpacked dir).

use std::path::Path;
use std::process::ExitCode;

use serde_json::{Value, json};

use super::store_root::open_store;
use crate::image::store::{Image, Store};

/// Arguments of `strata inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Images: names or ids.
    #[arg(required = true, value_name = "IMAGE")]
    images: Vec<String>,
}

/// Prints a JSON array with one object per image.
pub fn run(a: InspectArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let _lock = store.read()?;
    let mut out = Vec::new();
    for r in &a.images {
        out.push(describe(&store, &store.resolve(r)?));
    }
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(ExitCode::SUCCESS)
}

fn describe(store: &Store, img: &Image) -> Value {
    let c = &img.config;
    let layers: Vec<Value> = img
        .manifest
        .layers
        .iter()
        .zip(&c.rootfs.diff_ids)
        .map(|(l, diff_id)| {
            json!({
                "Digest": l.digest,
                "MediaType": l.media_type,
                "Size": l.size,
                "DiffID": diff_id,
                "UnpackedSize": store.layer_meta(diff_id).size,
                "Path": store.layer_path(diff_id),
            })
        })
        .collect();
    json!({
        "Id": img.id(),
        "RepoTags": img.names,
        "RepoDigests": repo_digests(img),
        "ManifestDigest": img.descriptor.digest,
        "ManifestMediaType": img.descriptor.media_type,
        "Created": c.created,
        "Author": c.author,
        "Architecture": c.architecture,
        "Os": c.os,
        "Size": store.image_size(img),
        "Config": c.config,
        "RootFS": {"Type": c.rootfs.kind, "Layers": c.rootfs.diff_ids},
        "Layers": layers,
        "History": c.history,
    })
}

/// `REPOSITORY@DIGEST` for each repository that names the image, as docker lists where an
/// image can be pulled by digest (its manifest is kept byte for byte, so the digest is the
/// registry's).
fn repo_digests(img: &Image) -> Vec<String> {
    let mut out: Vec<String> = img
        .names
        .iter()
        .filter_map(|n| crate::image::reference::Name::parse(n).ok())
        .map(|n| format!("{}@{}", n.repository(), img.descriptor.digest))
        .collect();
    out.dedup();
    out
}
