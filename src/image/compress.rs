//! Layer blobs compressed, and compressed again: the writer `commit` streams a new layer
//! through, and the conversion `push` makes when the registry should get another compression
//! than the store holds (layers loaded as plain tars are gzipped on the way, `--compression`).
//!
//! A converted blob is stored like any other, and the image gets a manifest that lists it; the
//! layer's content (diff_id, the unpacked dir) is the same.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Write};

use super::digest::{Algorithm, Digest};
use super::import::layer_media_type;
use super::pgzip::ParGzEncoder;
use super::progress::{ProgressReader, Ticker};
use super::source::{Compression, sniff};
use super::spec::{Descriptor, ImageManifest, MediaType};
use super::store::{BlobWriter, Image, StoreError, WriteLock};

/// The compression a layer media type says its blob has (None: not a layer type known here).
pub fn compression_of(m: &MediaType) -> Option<Compression> {
    match m {
        MediaType::OciLayer => Some(Compression::None),
        MediaType::OciLayerGzip | MediaType::DockerLayerGzip => Some(Compression::Gzip),
        MediaType::OciLayerZstd => Some(Compression::Zstd),
        MediaType::Other(s) if s == "application/vnd.docker.image.rootfs.diff.tar" => Some(Compression::None),
        _ => None,
    }
}

/// Stores `blob`'s content again with compression `to`; returns the new blob's descriptor.
pub fn recompress(
    lock: &WriteLock<'_>,
    blob: &Descriptor,
    to: Compression,
    progress: &dyn Ticker,
) -> Result<Descriptor, StoreError> {
    let path = lock.store().blob_path(&blob.digest);
    let io_err = |source| StoreError::Io { path: path.clone(), source };
    let file = File::open(&path).map_err(io_err)?;
    let (mut tar, _) = sniff(BufReader::with_capacity(1 << 20, ProgressReader::new(file, progress))).map_err(io_err)?;
    let mut out = Compressor::new(to, lock.blob_writer(Algorithm::Sha256)?).map_err(io_err)?;
    io::copy(&mut tar, &mut out).map_err(io_err)?;
    let written = out.finish().map_err(io_err)?;
    let size = written.count();
    let digest = written.commit(lock, None)?;
    Ok(Descriptor::new(layer_media_type(to), digest, size))
}

/// An OCI manifest for `image` with `layers` instead of its own; its bytes and descriptor.
pub fn manifest_with_layers(image: &Image, layers: Vec<Descriptor>) -> Result<(Vec<u8>, Descriptor), StoreError> {
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(MediaType::OciManifest),
        config: image.manifest.config.clone(),
        layers,
        annotations: BTreeMap::new(),
    };
    let raw = serde_json::to_vec(&manifest)
        .map_err(|source| StoreError::Json { what: format!("a manifest for {}", image.id()), source })?;
    let desc = Descriptor::new(MediaType::OciManifest, Digest::sha256_of(&raw), raw.len() as u64);
    Ok((raw, desc))
}

/// The blob writer behind the chosen compression.
pub enum Compressor {
    /// gzip, deflated on every CPU ([`ParGzEncoder`]).
    Gzip(ParGzEncoder<BlobWriter>),
    /// zstd level 3.
    Zstd(zstd::Encoder<'static, BlobWriter>),
    /// No compression.
    Plain(BlobWriter),
}

impl Compressor {
    /// A compressor for `c` writing into `blob`.
    pub fn new(c: Compression, blob: BlobWriter) -> io::Result<Compressor> {
        Ok(match c {
            Compression::Gzip => {
                let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
                Compressor::Gzip(ParGzEncoder::new(blob, flate2::Compression::default(), threads)?)
            }
            Compression::Zstd => Compressor::Zstd(zstd::Encoder::new(blob, 3)?),
            Compression::None => Compressor::Plain(blob),
        })
    }

    /// Ends the stream; returns the blob.
    pub fn finish(self) -> io::Result<BlobWriter> {
        match self {
            Compressor::Gzip(e) => e.finish(),
            Compressor::Zstd(e) => e.finish(),
            Compressor::Plain(b) => Ok(b),
        }
    }
}

impl Write for Compressor {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compressor::Gzip(e) => e.write(buf),
            Compressor::Zstd(e) => e.write(buf),
            Compressor::Plain(b) => b.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compressor::Gzip(e) => e.flush(),
            Compressor::Zstd(e) => e.flush(),
            Compressor::Plain(b) => b.flush(),
        }
    }
}
