//! `strata convert --estargz`: an image whose layers are written again as eStargz (see
//! [`super::estargz`]). Each layer's tar keeps every byte of its entries, gains the landmark
//! and the TOC entry (so it gets a new diff_id, as with stargz-snapshotter's converter), and is
//! unpacked into the store like any layer; the manifest carries the TOC digest and
//! uncompressed-size annotations, the config the new diff_ids. History stays as it was.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader};

use super::digest::{Algorithm, Digest};
use super::estargz::{Converted, TOC_DIGEST_ANNOTATION, UNCOMPRESSED_SIZE_ANNOTATION, write_estargz};
use super::import::Importer;
use super::progress::{Progress, ProgressMode};
use super::source::sniff;
use super::spec::{Descriptor, ImageManifest, MediaType};
use super::store::{Image, StoreError, WriteLock};

/// The converted image: its manifest (bytes and descriptor).
#[derive(Debug)]
pub struct ConvertedImage {
    /// Manifest bytes.
    pub raw: Vec<u8>,
    /// Manifest descriptor.
    pub descriptor: Descriptor,
}

/// Writes every layer of `image` as eStargz (the files of `prefetch` first in each layer that
/// has them) and stores the new image; the caller names it.
pub fn to_estargz(lock: &WriteLock<'_>, image: &Image, prefetch: &[String]) -> Result<ConvertedImage, StoreError> {
    let store = lock.store();
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for blob in &image.manifest.layers {
        let (desc, conv) = layer(lock, blob, prefetch)?;
        if !store.has_layer(&conv.diff_id) {
            unpack_blob(lock, &desc, &conv.diff_id)?;
        }
        diff_ids.push(conv.diff_id.to_string());
        layers.push(desc);
    }
    let json_err = |source| StoreError::Json { what: format!("the config of {}", image.id()), source };
    let mut config: serde_json::Value = serde_json::from_slice(&image.config_raw).map_err(json_err)?;
    config["rootfs"] = serde_json::json!({ "type": "layers", "diff_ids": diff_ids });
    let config_raw = serde_json::to_vec(&config).map_err(json_err)?;
    let config_digest = lock.put_blob(&config_raw, None)?;
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        config: Descriptor::new(MediaType::OciConfig, config_digest, config_raw.len() as u64),
        layers,
        annotations: BTreeMap::new(),
    };
    let raw = serde_json::to_vec(&manifest).map_err(json_err)?;
    let digest = lock.put_blob(&raw, None)?;
    let descriptor = Descriptor::new(MediaType::OciManifest, digest, raw.len() as u64);
    Ok(ConvertedImage { raw, descriptor })
}

/// One layer: its tar into a temporary file, then written as eStargz into a new blob.
fn layer(lock: &WriteLock<'_>, blob: &Descriptor, prefetch: &[String]) -> Result<(Descriptor, Converted), StoreError> {
    let store = lock.store();
    let path = store.blob_path(&blob.digest);
    let io_err = |p: &std::path::Path| {
        let p = p.to_path_buf();
        move |source| StoreError::Io { path: p, source }
    };
    let file = File::open(&path).map_err(io_err(&path))?;
    let (mut tar, _) = sniff(BufReader::with_capacity(1 << 20, file)).map_err(io_err(&path))?;
    let tmp_dir = store.tmp_dir();
    let mut tmp = tempfile::tempfile_in(&tmp_dir).map_err(io_err(&tmp_dir))?;
    io::copy(&mut tar, &mut tmp).map_err(io_err(&path))?;
    let mut out = io::BufWriter::with_capacity(1 << 20, lock.blob_writer(Algorithm::Sha256)?);
    let conv =
        write_estargz(&tmp, prefetch, &mut out).map_err(|source| StoreError::Io { path: path.clone(), source })?;
    let written = out.into_inner().map_err(|e| StoreError::Io { path: path.clone(), source: e.into_error() })?;
    let size = written.count();
    let digest = written.commit(lock, None)?;
    let mut desc = Descriptor::new(MediaType::OciLayerGzip, digest, size);
    desc.annotations.insert(TOC_DIGEST_ANNOTATION.into(), conv.toc_digest.to_string());
    desc.annotations.insert(UNCOMPRESSED_SIZE_ANNOTATION.into(), conv.uncompressed_size.to_string());
    Ok((desc, conv))
}

/// Unpacks a stored layer blob as the layer `diff_id`, through the importer's one checked pass
/// (blob against its descriptor, tar against the diff_id) — the blob is written again on the
/// way, the same bytes under the same name.
fn unpack_blob(lock: &WriteLock<'_>, desc: &Descriptor, diff_id: &Digest) -> Result<(), StoreError> {
    let path = lock.store().blob_path(&desc.digest);
    let file = File::open(&path).map_err(|source| StoreError::Io { path: path.clone(), source })?;
    let progress = Progress::new(ProgressMode::Quiet);
    let ticker = progress.layer(desc.digest.short(), desc.size);
    Importer::new(lock, Progress::new(ProgressMode::Quiet))
        .stream_layer(
            Box::new(BufReader::with_capacity(1 << 20, file)),
            lock.blob_writer(Algorithm::Sha256)?,
            desc,
            diff_id,
            &ticker,
        )
        .map_err(|e| StoreError::Io { path, source: io::Error::other(e.to_string()) })
}
