//! `strata push`: an image from the store into a registry.
//!
//! 1. Layers whose compression is not the one to send (plain tars loaded from `docker save`,
//!    or `--compression`) are compressed again into new blobs, and the image gets a manifest
//!    listing them; when the store held the layers uncompressed, that manifest replaces the
//!    old one under the image's names (same image id).
//! 2. Each layer, in parallel: a blob the repository has is not sent ("Layer already exists");
//!    one that another repository of the registry holds is mounted ("Mounted from …"); others
//!    are uploaded in chunks (`PATCH` with `Content-Range`), resumed from the offset the registry
//!    reports after a failure (or started again where the registry dropped the upload), and
//!    closed with their digest ("Pushed"). Then the config.
//! 3. The manifest goes last, under the tag, with its media type; the last line is docker's
//!    `TAG: digest: sha256:… size: N`.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::thread::sleep;
use std::time::Duration;

use super::client::{Client, Mounted, Upload};
use super::error::{RegistryError, Result};
use super::progress::Board;
use super::reference::Reference;
use super::sources;
use super::workers;
use crate::image::compress::{compression_of, manifest_with_layers, recompress};
use crate::image::digest::Digest;
use crate::image::progress::Ticker;
use crate::image::source::Compression;
use crate::image::spec::{Descriptor, MediaType};
use crate::image::store::{self, Image, Store};

/// Bytes per `PATCH`.
const CHUNK: usize = 8 << 20;
/// Tries of one chunk (each resuming from what the registry has), and the first pause.
const CHUNK_TRIES: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_millis(500);

/// How to push.
#[derive(Clone, Debug)]
pub struct PushOptions {
    /// The compression to send layers with (None: as stored, plain tars gzipped).
    pub compression: Option<Compression>,
    /// Layers uploaded at once.
    pub max_concurrent: usize,
}

/// A pushed image.
#[derive(Debug)]
pub struct Pushed {
    /// The manifest's digest in the registry.
    pub digest: Digest,
    /// The manifest's size.
    pub size: u64,
}

/// Pushes images from one store to one registry.
pub struct Pusher<'a> {
    /// The registry.
    pub client: &'a Client,
    /// The store.
    pub store: &'a Store,
    /// Progress lines.
    pub board: &'a Board,
    /// Options.
    pub opts: &'a PushOptions,
}

/// What is sent: the manifest's bytes and descriptor, and its blobs.
struct Prepared {
    raw: Vec<u8>,
    desc: Descriptor,
    layers: Vec<Descriptor>,
    config: Descriptor,
}

impl Pusher<'_> {
    /// Pushes the store's image `source` (as the user named it) to `dest`.
    pub fn push(&self, source: &str, dest: &Reference) -> Result<Pushed> {
        self.board.say(&format!("The push refers to repository [{}]", dest.full_repository()));
        let prepared = self.prepare(source)?;
        let _read = self.store.read()?;
        let repo = &dest.repository;
        let layers: Vec<&Descriptor> = prepared.layers.iter().rev().collect();
        for l in &layers {
            self.board.set(l.digest.short(), "Preparing");
        }
        workers::each(layers, self.opts.max_concurrent, |d| self.blob(repo, &dest.registry, d, true))?;
        self.blob(repo, &dest.registry, &prepared.config, false)?;
        let object = dest.tag.clone().unwrap_or_else(|| prepared.desc.digest.to_string());
        let digest = self.client.put_manifest(repo, &object, &prepared.desc.media_type, &prepared.raw)?;
        sources::remember(self.store, &prepared.layers, &prepared.config, &dest.registry, repo);
        Ok(Pushed { digest, size: prepared.raw.len() as u64 })
    }

    /// The manifest to send, compressing layers again where needed (under the write lock).
    fn prepare(&self, source: &str) -> Result<Prepared> {
        let image = self.store.resolve(source)?;
        let wanted = |d: &Descriptor| -> Option<Compression> {
            let have = compression_of(&d.media_type)?;
            match self.opts.compression {
                Some(c) if c != have => Some(c),
                None if have == Compression::None => Some(Compression::Gzip),
                _ => None,
            }
        };
        if !image.manifest.layers.iter().any(|d| wanted(d).is_some()) {
            let raw = self.store.read_blob(&image.descriptor.digest)?;
            let mut desc = image.descriptor.clone();
            desc.media_type = manifest_type(&raw, &desc.media_type);
            return Ok(Prepared {
                raw,
                desc,
                layers: image.manifest.layers.clone(),
                config: image.manifest.config.clone(),
            });
        }
        let lock = self.store.write()?;
        let mut layers = Vec::new();
        for d in &image.manifest.layers {
            match wanted(d) {
                Some(c) => {
                    let bytes = self.board.bytes(d.digest.short(), "Compressing", self.store.blob_size(&d.digest));
                    layers.push(recompress(&lock, d, c, &bytes)?);
                }
                None => layers.push(d.clone()),
            }
        }
        let (raw, desc) = manifest_with_layers(&image, layers.clone())?;
        lock.put_blob(&raw, Some(&desc))?;
        if self.opts.compression.is_none() {
            self.replace_manifest(&lock, &image, &desc)?;
        }
        Ok(Prepared { raw, desc, layers, config: image.manifest.config.clone() })
    }

    /// Points the image's names at its new manifest (the old blobs go with the next prune).
    fn replace_manifest(&self, lock: &store::WriteLock<'_>, image: &Image, desc: &Descriptor) -> Result<()> {
        let mut index = self.store.index()?;
        let names: Vec<String> = index
            .manifests
            .iter()
            .filter(|d| d.digest == image.descriptor.digest)
            .filter_map(|d| d.ref_name().map(str::to_string))
            .collect();
        store::remove_image(&mut index, &image.descriptor.digest);
        for n in &names {
            let name = crate::image::reference::Name::parse(n).map_err(crate::image::store::StoreError::from)?;
            store::set_name(&mut index, &name, desc);
        }
        if names.is_empty() {
            store::add_untagged(&mut index, desc);
        }
        lock.save_index(&index)?;
        Ok(())
    }

    /// One blob into `repo`: skipped, mounted or uploaded; `shown` for layers (docker shows no
    /// line for the config).
    fn blob(&self, repo: &str, registry: &str, d: &Descriptor, shown: bool) -> Result<()> {
        let id = d.digest.short();
        let done = |text: &str| {
            if shown {
                self.board.done(id, text);
            }
        };
        if self.client.has_blob(repo, &d.digest)? {
            done("Layer already exists");
            return Ok(());
        }
        let mut upload = None;
        for from in sources::repositories(self.store, &d.digest, registry).into_iter().filter(|f| f != repo) {
            match self.client.mount_blob(repo, &d.digest, &from) {
                Ok(Mounted::Yes) => {
                    done(&format!("Mounted from {from}"));
                    return Ok(());
                }
                Ok(Mounted::No(up)) => {
                    upload = Some(up);
                    break;
                }
                Err(e) => log::info!("mounting {} from {from}: {e}", d.digest),
            }
        }
        let upload = match upload {
            Some(u) => u,
            None => self.client.start_upload(repo)?,
        };
        let bytes = self.board.bytes(id, "Pushing", if shown { d.size } else { 0 });
        let ticker: &dyn Ticker = &bytes;
        let finished = self.send(repo, d, upload, if shown { Some(ticker) } else { None })?;
        self.client.finish_upload(repo, &finished, &d.digest)?;
        done("Pushed");
        Ok(())
    }

    /// Sends the blob's bytes in chunks; after a failure asks the registry where it stands and
    /// goes on from there.
    fn send(&self, repo: &str, d: &Descriptor, mut up: Upload, ticker: Option<&dyn Ticker>) -> Result<Upload> {
        let path = self.store.blob_path(&d.digest);
        let io_err = |source| RegistryError::Io { path: path.display().to_string(), source };
        let mut file = File::open(&path).map_err(io_err)?;
        let mut buf = vec![0u8; CHUNK.min(d.size.max(1) as usize)];
        let (mut tries, mut pause) = (0, FIRST_PAUSE);
        while up.offset < d.size {
            file.seek(SeekFrom::Start(up.offset)).map_err(io_err)?;
            let want = (d.size - up.offset).min(buf.len() as u64) as usize;
            file.read_exact(&mut buf[..want]).map_err(io_err)?;
            match self.client.upload_chunk(repo, &up, &buf[..want]) {
                Ok(next) => {
                    if let Some(t) = ticker {
                        t.inc(want as u64);
                    }
                    up = next;
                    tries = 0;
                }
                Err(e) if e.is_transient() && tries + 1 < CHUNK_TRIES => {
                    log::info!("uploading {}: {e}; resuming", d.digest);
                    tries += 1;
                    sleep(pause);
                    pause *= 2;
                    // Where the registry stands; distribution cancels an upload whose chunk
                    // broke off half-written, and then the blob starts again.
                    up = match self.client.upload_status(repo, &up) {
                        Ok(now) => now,
                        Err(RegistryError::Http { status: 400 | 404 | 416, .. }) => self.client.start_upload(repo)?,
                        Err(e) => return Err(e),
                    };
                }
                Err(e) => return Err(e),
            }
        }
        Ok(up)
    }
}

/// The media type to PUT a stored manifest with: its own `mediaType` field when it has one
/// (a Docker schema 2 manifest stays one), else the store's.
fn manifest_type(raw: &[u8], stored: &MediaType) -> MediaType {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Probe {
        #[serde(default)]
        media_type: Option<MediaType>,
    }
    match serde_json::from_slice::<Probe>(raw) {
        Ok(Probe { media_type: Some(m) }) if m.is_manifest() => m,
        _ => stored.clone(),
    }
}
