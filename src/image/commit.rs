//! A container's changes as a new image (`strata commit`): one layer from its upper dir, a new
//! config and manifest, and the name — in an order that keeps the store whole at every moment.
//!
//! 1. The layer tar ([`super::pack`]) streams once: its bytes are hashed (the diff_id), fed to
//!    an unpacker thread (the layer dir Strata mounts, checked by the same code that reads
//!    every other layer) and compressed into a blob under `tmp/`, hashed as written (the
//!    digest). The blob and the layer dir are renamed into place when complete.
//! 2. The new config is the image's config read as JSON with `created`, `author`, the `-c`
//!    changes, the new diff_id and a history entry added; the manifest lists the image's
//!    layers and the new one. Both are new documents, stored as blobs.
//! 3. `index.json` is replaced last, atomically, under the store's write lock.
//!
//! A crash before step 3 leaves only blobs and a layer dir no image reaches (`strata prune`
//! removes them) or files under `tmp/` (removed by the next writer); never a broken name.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use serde_json::{Map, Value};

use super::compress::Compressor;
use super::diff::{Item, Plan, ReadFrom};
use super::digest::{Algorithm, Digest, Hasher};
use super::import::layer_media_type;
use super::instruction::{self, InstructionError};
use super::pack::{self, PackError, Roots};
use super::reference::Name;
use super::source::Compression;
use super::spec::{Descriptor, ImageManifest, MediaType};
use super::store::{self, BlobWriter, Image, LayerMeta, StoreError, WriteLock};
use super::unpack::{self, UnpackError};

/// What went wrong committing; each names the image or part at fault.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    /// Writing the layer tar.
    #[error(transparent)]
    Pack(#[from] PackError),
    /// The layer written could not be unpacked into the store.
    #[error("unpacking the new layer: {0}")]
    Unpack(#[source] UnpackError),
    /// Compressing or storing the layer blob.
    #[error("writing the layer blob: {0}")]
    Blob(#[source] io::Error),
    /// A `-c` change.
    #[error(transparent)]
    Instruction(#[from] InstructionError),
    /// The image's config is not a JSON object.
    #[error("config {digest} of the image: {reason}")]
    Config {
        /// The config's digest.
        digest: Digest,
        /// What is wrong.
        reason: String,
    },
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, CommitError>;

/// What the new image says about itself.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `author` of the config and of the history entry.
    pub author: Option<String>,
    /// The history entry's comment.
    pub message: Option<String>,
    /// Dockerfile instructions applied to the runtime config.
    pub changes: Vec<String>,
    /// The history entry's `created_by` (the container's command).
    pub created_by: String,
    /// A runtime config replacing the image's (before `changes`); `None` keeps the image's.
    pub config: Option<Map<String, Value>>,
    /// How the layer blob is compressed.
    pub compression: Compression,
}

/// The new layer, stored.
#[derive(Clone, Debug)]
pub struct Layer {
    /// The blob's descriptor.
    pub blob: Descriptor,
    /// The digest of the uncompressed tar.
    pub diff_id: Digest,
}

/// Writes `plan` as a layer: its blob into `blobs/`, its content into `layers/`.
/// `progress` gets the bytes of file content packed.
pub fn write_layer(
    lock: &WriteLock<'_>,
    plan: &Plan,
    roots: &Roots<'_>,
    compression: Compression,
    progress: &mut dyn FnMut(u64),
) -> Result<Layer> {
    let dir = lock.layer_tmp()?;
    let root = File::open(dir.path()).map_err(|source| StoreError::Io { path: dir.path().into(), source })?;
    let blob = lock.blob_writer(Algorithm::Sha256)?;
    let (tx, rx) = sync_channel::<Vec<u8>>(8);
    let opts = unpack::Options::for_current_user();
    let (streamed, unpacked) = std::thread::scope(|s| {
        let unpacker = s.spawn(move || {
            let mut r = ChannelReader { rx, buf: Vec::new(), pos: 0 };
            let result = unpack::unpack(&mut r, root.as_fd(), opts);
            // Read what follows the end of the archive, so the writer never blocks.
            let _ = io::copy(&mut r, &mut io::sink());
            result
        });
        let streamed = stream(plan, roots, compression, blob, tx, progress);
        let unpacked =
            unpacker.join().unwrap_or_else(|_| Err(UnpackError::Read(io::Error::other("unpacker panicked"))));
        (streamed, unpacked)
    });
    let (diff_id, blob) = streamed?;
    let unpacked = unpacked.map_err(CommitError::Unpack)?;
    for w in &unpacked.warnings {
        log::warn!("new layer: {w}");
    }
    let size = blob.count();
    let digest = blob.commit(lock, None)?;
    if !lock.store().has_layer(&diff_id) {
        lock.commit_layer(dir, &diff_id, &LayerMeta { size: unpacked.size, entries: unpacked.entries })?;
    }
    Ok(Layer { blob: Descriptor::new(layer_media_type(compression), digest, size), diff_id })
}

/// Whether `plan` is `upper` as it is — every entry read from the upper dir at its own path,
/// with its own owner (none to pack instead, or the same ids), no whiteout or opaque marker —
/// so that the upper dir can become the unpacked layer itself ([`adopt_layer`]).
pub fn is_upper_as_is(plan: &Plan) -> bool {
    plan.items.iter().all(|i| match i {
        Item::Object { path, from, src, owner, st } => {
            *from == ReadFrom::Upper && path == src && owner.is_none_or(|o| o == (st.st_uid, st.st_gid))
        }
        _ => false,
    })
}

/// [`write_layer`] for a plan that [`is_upper_as_is`], whose upper dir `upper` (on the store's
/// filesystem, and written as root: owners set) holds exactly the layer: the blob is packed
/// from it and `upper` itself is renamed into `layers/` instead of a second copy unpacked from
/// the tar. A `COPY` of many files then writes each once.
pub fn adopt_layer(lock: &WriteLock<'_>, plan: &Plan, roots: &Roots<'_>, upper: tempfile::TempDir) -> Result<Layer> {
    let blob = lock.blob_writer(Algorithm::Sha256)?;
    let (tx, rx) = sync_channel::<Vec<u8>>(8);
    let (streamed, counted) = std::thread::scope(|s| {
        let counter = s.spawn(move || {
            let mut r = ChannelReader { rx, buf: Vec::new(), pos: 0 };
            let counted = count_entries(&mut r);
            let _ = io::copy(&mut r, &mut io::sink());
            counted
        });
        let streamed = stream(plan, roots, Compression::Gzip, blob, tx, &mut |_| {});
        let counted = counter.join().unwrap_or_else(|_| Err(io::Error::other("counter panicked")));
        (streamed, counted)
    });
    let (diff_id, blob) = streamed?;
    let (entries, size) = counted.map_err(|e| CommitError::Unpack(UnpackError::Read(e)))?;
    let size_blob = blob.count();
    let digest = blob.commit(lock, None)?;
    if !lock.store().has_layer(&diff_id) {
        lock.commit_layer(upper, &diff_id, &LayerMeta { size, entries })?;
    }
    Ok(Layer { blob: Descriptor::new(layer_media_type(Compression::Gzip), digest, size_blob), diff_id })
}

/// Entries of a tar stream and bytes of its regular files, as the unpacker counts them.
fn count_entries(r: &mut impl Read) -> io::Result<(u64, u64)> {
    let mut archive = tar::Archive::new(r);
    let (mut entries, mut size) = (0, 0);
    for e in archive.entries()? {
        let e = e?;
        entries += 1;
        if e.header().entry_type().is_file() {
            size += e.header().size()?;
        }
    }
    Ok((entries, size))
}

/// Packs the tar through the hasher, the unpacker's channel and the compressor into `blob`.
fn stream(
    plan: &Plan,
    roots: &Roots<'_>,
    compression: Compression,
    blob: BlobWriter,
    tx: SyncSender<Vec<u8>>,
    progress: &mut dyn FnMut(u64),
) -> Result<(Digest, BlobWriter)> {
    let out = Compressor::new(compression, blob).map_err(CommitError::Blob)?;
    let sink = Fanout { hasher: Hasher::new(Algorithm::Sha256), tx: Some(tx), out };
    let buffered = pack::write_tar(plan, roots, BufWriter::with_capacity(1 << 20, sink), progress)?;
    let mut sink = buffered.into_inner().map_err(|e| CommitError::Blob(e.into_error()))?;
    sink.tx = None;
    let diff_id = sink.hasher.finish();
    let blob = sink.out.finish().map_err(CommitError::Blob)?;
    Ok((diff_id, blob))
}

/// Stores the new config and manifest for `image` plus `layer`, and names the image `name`
/// (or keeps it untagged) in `index.json`. Returns the new image's id (config digest).
pub fn finish_image(
    lock: &WriteLock<'_>,
    image: &Image,
    layer: &Layer,
    opts: &Options,
    name: Option<&Name>,
) -> Result<Digest> {
    let config_raw = new_config(image, Some(&layer.diff_id), opts)?;
    let names: Vec<Name> = name.into_iter().cloned().collect();
    Ok(store_image(lock, image, Some(layer), &config_raw, &names)?.0)
}

/// Stores `config_raw` and a manifest listing `image`'s layers (plus `layer`), and names the
/// image `names` (none: untagged) in `index.json`. Returns the config digest and the
/// manifest's descriptor.
pub fn store_image(
    lock: &WriteLock<'_>,
    image: &Image,
    layer: Option<&Layer>,
    config_raw: &[u8],
    names: &[Name],
) -> Result<(Digest, Descriptor)> {
    let config = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(config_raw), config_raw.len() as u64);
    lock.put_blob(config_raw, Some(&config))?;
    let mut layers: Vec<Descriptor> = image.manifest.layers.iter().map(as_oci).collect();
    layers.extend(layer.map(|l| l.blob.clone()));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        config: config.clone(),
        layers,
        annotations: BTreeMap::new(),
    };
    let raw = serde_json::to_vec(&manifest)
        .map_err(|e| CommitError::Config { digest: config.digest.clone(), reason: e.to_string() })?;
    let mdesc = Descriptor::new(MediaType::OciManifest, Digest::sha256_of(&raw), raw.len() as u64);
    lock.put_blob(&raw, Some(&mdesc))?;
    let mut index = lock.store().index()?;
    if names.is_empty() {
        store::add_untagged(&mut index, &mdesc);
    }
    for n in names {
        store::set_name(&mut index, n, &mdesc);
    }
    lock.save_index(&index)?;
    Ok((config.digest, mdesc))
}

/// A layer descriptor of the base image in OCI terms (a docker gzip layer is an OCI gzip layer).
fn as_oci(d: &Descriptor) -> Descriptor {
    let mut d = d.clone();
    if d.media_type == MediaType::DockerLayerGzip {
        d.media_type = MediaType::OciLayerGzip;
    }
    d
}

/// The new config: the image's, read as JSON, with the new layer (none: the history entry is
/// an `empty_layer` one), history entry and changes.
pub fn new_config(image: &Image, diff_id: Option<&Digest>, opts: &Options) -> Result<Vec<u8>> {
    let bad = |reason: &str| CommitError::Config { digest: image.id().clone(), reason: reason.to_string() };
    let mut v: Value = serde_json::from_slice(&image.config_raw).map_err(|e| bad(&e.to_string()))?;
    let obj = v.as_object_mut().ok_or_else(|| bad("not a JSON object"))?;
    let now = humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string();
    obj.insert("created".into(), Value::String(now.clone()));
    if let Some(a) = &opts.author {
        obj.insert("author".into(), Value::String(a.clone()));
    }
    let mut config = match (obj.remove("config"), &opts.config) {
        (_, Some(given)) => given.clone(),
        (Some(Value::Object(m)), None) => m,
        _ => Map::new(),
    };
    for change in &opts.changes {
        instruction::apply(&mut config, change)?;
    }
    obj.insert("config".into(), Value::Object(config));
    let rootfs = obj.entry("rootfs").or_insert_with(|| serde_json::json!({"type": "layers"}));
    let diff_ids = rootfs.as_object_mut().ok_or_else(|| bad("rootfs is not an object"))?;
    match diff_ids.entry("diff_ids").or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(a) => a.extend(diff_id.map(|d| Value::String(d.to_string()))),
        _ => return Err(bad("rootfs.diff_ids is not an array")),
    }
    let mut step = Map::new();
    step.insert("created".into(), Value::String(now));
    step.insert("created_by".into(), Value::String(opts.created_by.clone()));
    if let Some(a) = &opts.author {
        step.insert("author".into(), Value::String(a.clone()));
    }
    if let Some(m) = &opts.message {
        step.insert("comment".into(), Value::String(m.clone()));
    }
    if diff_id.is_none() {
        step.insert("empty_layer".into(), Value::Bool(true));
    }
    match obj.entry("history").or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(a) => a.push(Value::Object(step)),
        _ => return Err(bad("history is not an array")),
    }
    serde_json::to_vec(&v).map_err(|e| bad(&e.to_string()))
}

/// Where the tar bytes go: the diff_id hash, the unpacker, and the compressor.
struct Fanout {
    hasher: Hasher,
    tx: Option<SyncSender<Vec<u8>>>,
    out: Compressor,
}

impl Write for Fanout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.hasher.update(buf);
        if let Some(tx) = &self.tx {
            tx.send(buf.to_vec()).map_err(|_| io::Error::other("the unpacker of the new layer stopped"))?;
        }
        self.out.write_all(buf)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// Reads the chunks the packer sends, in order; the end of the channel is the end of the data.
struct ChannelReader {
    rx: Receiver<Vec<u8>>,
    buf: Vec<u8>,
    pos: usize,
}

impl Read for ChannelReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            match self.rx.recv() {
                Ok(chunk) => {
                    self.buf = chunk;
                    self.pos = 0;
                }
                Err(_) => return Ok(0),
            }
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::lower::Lowers;

    /// A `COPY`'s upper dir — files and a directory the image also has, written with their
    /// own owners — is the layer as it is, so the build adopts it instead of writing it twice.
    #[test]
    fn an_upper_dir_written_with_its_own_owners_is_the_layer_as_it_is() {
        let t = tempfile::tempdir().unwrap();
        let (lower, upper) = (t.path().join("lower"), t.path().join("upper"));
        std::fs::create_dir_all(lower.join("data")).unwrap();
        std::fs::create_dir_all(upper.join("data/files")).unwrap();
        std::fs::write(upper.join("data/files/f"), b"x").unwrap();
        let lowers = Lowers::open(&[lower]).unwrap();
        let plan = super::super::diff::plan(&upper, &lowers).unwrap();
        assert!(!plan.items.is_empty());
        assert!(is_upper_as_is(&plan), "{:?}", plan.items);
    }
}
