//! `strata pull`: an image from a registry into the store.
//!
//! The manifest (or the index, then the manifest for the platform asked for) and the config are
//! fetched and checked first; then the layers are downloaded in parallel, each in one pass that
//! writes the blob, hashes it against its digest and size, decompresses it, hashes the tar
//! against the config's diff_id and unpacks it (no second read of the blob). A layer the store
//! has is not fetched ("Already exists"). A download that breaks off is kept under
//! `partial/` and resumed with a `Range` request — by the next try (with backoff) or the next
//! run — and hashed again from its start. Manifest and config are stored byte for byte, so the
//! image id and the digest are the registry's. A failed pull leaves the store as it was (but for
//! the partial downloads it keeps for the next try).

use std::fs::File;
use std::io::Read;
use std::thread::sleep;
use std::time::Duration;

use super::client::{Client, MANIFEST_LIMIT, read_limited};
use super::error::{RegistryError, Result};
use super::platform::PlatformSpec;
use super::progress::Board;
use super::reference::Reference;
use super::sources;
use super::workers;
use crate::image::digest::{Digest, Mismatch};
use crate::image::import::{ImportError, Importer};
use crate::image::progress::{Progress, ProgressMode};
use crate::image::spec::{Descriptor, ImageConfig, ImageIndex, ImageManifest, MediaType};
use crate::image::store::{Store, WriteLock, undo_on_error};

/// Tries of one layer download (each resuming where the last stopped), and the first pause.
const LAYER_TRIES: u32 = 5;
const FIRST_PAUSE: Duration = Duration::from_secs(1);
/// The largest config accepted.
const CONFIG_LIMIT: u64 = 32 << 20;

/// How to pull.
#[derive(Clone, Debug)]
pub struct PullOptions {
    /// The platform to pick from an index.
    pub platform: PlatformSpec,
    /// Layers downloaded at once.
    pub max_concurrent: usize,
    /// Pull eStargz layers lazily (their TOC only), and how mounts fetch the rest.
    pub lazy: Option<LazyOptions>,
}

/// How a lazily pulled layer is fetched later (recorded on the layer).
#[derive(Clone, Debug)]
pub struct LazyOptions {
    /// Fetch the whole layer in the background once mounted (`--lazy`; not `--lazy=only`).
    pub background: bool,
    /// TLS settings to reach the registry again.
    pub tls: super::tls::TlsOptions,
    /// Credentials file given (else the usual places).
    pub authfile: Option<std::path::PathBuf>,
}

/// An image pulled.
#[derive(Debug)]
pub struct Pulled {
    /// The digest the reference resolved to (an index's, for a multi-platform image).
    pub digest: Digest,
    /// The image id (config digest).
    pub id: Digest,
    /// Whether anything was new (docker's "Downloaded newer image" vs "Image is up to date").
    pub fresh: bool,
}

/// A manifest chosen and checked, with its config, before any layer moves.
struct Chosen {
    top: Digest,
    desc: Descriptor,
    raw: Vec<u8>,
    manifest: ImageManifest,
    config_raw: Vec<u8>,
    diff_ids: Vec<Digest>,
}

/// What every layer download of one pull shares.
struct Fetch<'a, 'l> {
    importer: &'a Importer<'a, 'l>,
    lock: &'a WriteLock<'l>,
    reference: &'a Reference,
}

/// Pulls images from one registry into one store.
pub struct Puller<'a> {
    /// The registry.
    pub client: &'a Client,
    /// The store.
    pub store: &'a Store,
    /// Progress lines.
    pub board: &'a Board,
    /// Options.
    pub opts: &'a PullOptions,
}

impl Puller<'_> {
    /// Pulls `reference`, naming the image by its tag (untagged when pulled by digest only).
    pub fn pull(&self, reference: &Reference) -> Result<Pulled> {
        let what = reference.tag.clone().unwrap_or_else(|| reference.object());
        self.board.say(&format!("{what}: Pulling from {}", reference.repository));
        let chosen = self.choose(reference)?;
        let names: Vec<_> = reference.store_name().transpose().map_err(ImportError::from)?.into_iter().collect();
        let fresh = !self.store.has_blob(&chosen.desc.digest) || !self.has_layers(&chosen);
        let lock = self.download_all(reference, &chosen)?;
        let config = &chosen.manifest.config;
        let importer = Importer::new(&lock, Progress::new(ProgressMode::Quiet));
        undo_on_error(&lock, importer.finish_image(&chosen.desc, &chosen.raw, config, &chosen.config_raw, &names))?;
        sources::remember(self.store, &chosen.manifest.layers, config, &reference.registry, &reference.repository);
        self.board.say(&format!("Digest: {}", chosen.top));
        let status = if fresh { "Downloaded newer image for" } else { "Image is up to date for" };
        self.board.say(&format!("Status: {status} {}", reference.familiar()));
        Ok(Pulled { digest: chosen.top, id: config.digest.clone(), fresh })
    }

    /// Downloads the layers under the store's content lock (readers and other pulls go on),
    /// then returns the exclusive lock with every layer in place — downloading again what a
    /// prune may have removed in between. After a failure, what the pull added and no image
    /// reaches is removed.
    fn download_all(&self, reference: &Reference, chosen: &Chosen) -> Result<WriteLock<'_>> {
        for _ in 0..3 {
            let content = self.store.write_content()?;
            let downloaded = self.layers(&content, reference, chosen);
            drop(content);
            let lock = self.store.write()?;
            undo_on_error(&lock, downloaded)?;
            if self.has_layers(chosen) {
                return Ok(lock);
            }
        }
        Err(RegistryError::Protocol {
            what: reference.familiar(),
            detail: "the store kept losing the layers being pulled (is a prune running in a loop?)".into(),
        })
    }

    fn has_layers(&self, c: &Chosen) -> bool {
        c.manifest
            .layers
            .iter()
            .zip(&c.diff_ids)
            .all(|(l, d)| self.store.has_layer(d) && (self.store.has_blob(&l.digest) || self.store.is_lazy_layer(d)))
    }

    /// Fetches the manifest (through an index for the platform) and the config, and checks them.
    fn choose(&self, reference: &Reference) -> Result<Chosen> {
        let repo = &reference.repository;
        let (raw, media_type, top) = self.client.manifest(repo, &reference.object())?;
        check_kind(reference, &media_type)?;
        let (desc, raw) = if media_type.is_index() {
            let entry = self.pick(reference, &raw, &top)?;
            let (raw, media_type, digest) = self.client.manifest(repo, &entry.digest.to_string())?;
            check_kind(reference, &media_type)?;
            if media_type.is_index() {
                return Err(RegistryError::NotAnImage {
                    reference: reference.familiar(),
                    media_type: "nested index".into(),
                });
            }
            (Descriptor::new(media_type, digest, raw.len() as u64), raw)
        } else {
            (Descriptor::new(media_type, top.clone(), raw.len() as u64), raw)
        };
        let manifest: ImageManifest = json(&raw, &format!("manifest {}", desc.digest))?;
        let config_raw = self.small_blob(repo, &manifest.config)?;
        let config: ImageConfig = json(&config_raw, &format!("config {}", manifest.config.digest))?;
        let diff_ids = config.rootfs.diff_ids.clone();
        if diff_ids.len() != manifest.layers.len() {
            return Err(RegistryError::Protocol {
                what: format!("manifest {}", desc.digest),
                detail: format!("{} layers, but its config lists {} diff_ids", manifest.layers.len(), diff_ids.len()),
            });
        }
        Ok(Chosen { top, desc, raw, manifest, config_raw, diff_ids })
    }

    /// The index entry for the platform asked for.
    fn pick(&self, reference: &Reference, raw: &[u8], digest: &Digest) -> Result<Descriptor> {
        let index: ImageIndex = json(raw, &format!("index {digest}"))?;
        if let Some(d) = self.opts.platform.pick(&index.manifests) {
            return Ok(d.clone());
        }
        let available: Vec<String> = index
            .manifests
            .iter()
            .filter_map(|m| m.platform.as_ref())
            .map(|p| PlatformSpec::from(p).to_string())
            .collect();
        Err(RegistryError::NoPlatform {
            reference: reference.familiar(),
            wanted: self.opts.platform.to_string(),
            available: if available.is_empty() { "none named".into() } else { available.join(", ") },
        })
    }

    /// A config: read whole, checked against its descriptor.
    fn small_blob(&self, repo: &str, desc: &Descriptor) -> Result<Vec<u8>> {
        let what = format!("config {}", desc.digest);
        let (mut resp, start) = self.client.blob(repo, &desc.digest, 0)?;
        debug_assert_eq!(start, 0);
        let bytes = read_limited(&mut resp, CONFIG_LIMIT.min(desc.size.max(MANIFEST_LIMIT)), &what)?;
        let actual = desc.digest.of_same_kind(&bytes);
        if actual != desc.digest || bytes.len() as u64 != desc.size {
            return Err(RegistryError::Mismatch(Mismatch {
                what,
                expected: desc.digest.clone(),
                expected_size: desc.size,
                actual,
                actual_size: bytes.len() as u64,
            }));
        }
        Ok(bytes)
    }

    /// Every layer into the store, `max_concurrent` at a time.
    fn layers(&self, lock: &WriteLock<'_>, reference: &Reference, c: &Chosen) -> Result<()> {
        let importer = Importer::new(lock, Progress::new(ProgressMode::Quiet));
        // One job per blob; a diff_id met again under another blob waits for a later round
        // (two unpacks of one layer at once would race for its place).
        let mut rounds: Vec<Vec<(&Descriptor, &Digest)>> = vec![Vec::new()];
        let mut seen: Vec<(&Digest, &Digest)> = Vec::new();
        for (layer, diff_id) in c.manifest.layers.iter().zip(&c.diff_ids) {
            if seen.iter().any(|(b, _)| *b == &layer.digest) {
                continue;
            }
            let round = seen.iter().filter(|(_, d)| *d == diff_id).count();
            seen.push((&layer.digest, diff_id));
            if rounds.len() <= round {
                rounds.push(Vec::new());
            }
            rounds[round].push((layer, diff_id));
        }
        for (layer, _) in rounds.iter().flatten() {
            self.board.set(layer.digest.short(), "Pulling fs layer");
        }
        for round in rounds {
            let fetch = Fetch { importer: &importer, lock, reference };
            workers::each(round, self.opts.max_concurrent, |(layer, diff_id)| self.layer(&fetch, layer, diff_id))?;
        }
        Ok(())
    }

    /// One layer: "Already exists", or downloaded (resuming), verified and unpacked.
    fn layer(&self, fetch: &Fetch<'_, '_>, desc: &Descriptor, diff_id: &Digest) -> Result<()> {
        let id = desc.digest.short();
        let lazy_here = self.store.is_lazy_layer(diff_id);
        if self.store.has_layer(diff_id) && (self.store.has_blob(&desc.digest) || lazy_here) {
            self.board.done(id, "Already exists");
            return Ok(());
        }
        if let Some(lz) = self.opts.lazy.as_ref().filter(|_| super::lazy::is_lazy_capable(desc)) {
            let src = super::lazy::LazySource {
                registry: fetch.reference.registry.clone(),
                repository: fetch.reference.repository.clone(),
                digest: desc.digest.clone(),
                size: desc.size,
                toc_offset: 0,
                toc_digest: desc.annotations[crate::image::estargz::TOC_DIGEST_ANNOTATION].clone(),
                tls_verify: lz.tls.verify,
                cert_dir: lz.tls.cert_dir.clone(),
                authfile: lz.authfile.clone(),
                background: lz.background,
            };
            self.board.set(id, "Reading table of contents");
            let _one = fetch.lock.download_lock(&desc.digest)?;
            if !self.store.has_layer(diff_id) {
                super::lazy::lazy_layer(self.client, fetch.lock, src, diff_id).inspect_err(|_| {
                    self.board.done(id, "Failed");
                })?;
            }
            self.board.done(id, "Lazy (table of contents read)");
            return Ok(());
        }
        let mut pause = FIRST_PAUSE;
        for attempt in 1..=LAYER_TRIES {
            match self.download(fetch, desc, diff_id) {
                Ok(()) => {
                    self.board.done(id, "Pull complete");
                    return Ok(());
                }
                Err(e) if attempt < LAYER_TRIES && self.worth_retrying(&e, desc) => {
                    log::info!("layer {}: {e}; retrying", desc.digest);
                    self.board.set(id, &format!("Retrying in {} seconds", pause.as_secs()));
                    sleep(pause);
                    pause *= 2;
                }
                Err(e) => {
                    self.board.done(id, "Failed");
                    return Err(e);
                }
            }
        }
        unreachable!("the last try returns")
    }

    /// Whether another try can do better: the network or registry failed while the blob was
    /// still incomplete (a partial download that proved wrong is gone and is not retried).
    fn worth_retrying(&self, e: &RegistryError, desc: &Descriptor) -> bool {
        let incomplete = std::fs::metadata(self.store.partial_path(&desc.digest)).is_ok_and(|m| m.len() < desc.size);
        match e {
            RegistryError::Import(ImportError::Unpack { .. }) => incomplete,
            e => e.is_transient(),
        }
    }

    /// One try: the partial download's bytes, then the rest from the registry (`Range`), through
    /// the importer's single pass.
    fn download(&self, fetch: &Fetch<'_, '_>, desc: &Descriptor, diff_id: &Digest) -> Result<()> {
        let Fetch { importer, lock, reference } = fetch;
        let id = desc.digest.short();
        let _downloading = lock.download_lock(&desc.digest)?;
        if self.store.has_blob(&desc.digest) && self.store.has_layer(diff_id) {
            // Another pull brought it while this one waited.
            return Ok(());
        }
        let (mut writer, mut have) = lock.partial_blob(&desc.digest)?;
        if have > desc.size {
            (writer, have) = (lock.restart_partial(&desc.digest)?, 0);
        }
        let rest: Box<dyn Read> = if have == desc.size {
            Box::new(std::io::empty())
        } else {
            let (resp, start) = self.client.blob(&reference.repository, &desc.digest, have)?;
            if start != have {
                // The registry sent the whole blob: start again from nothing.
                (writer, have) = (lock.restart_partial(&desc.digest)?, 0);
            }
            Box::new(resp.into_body().into_reader())
        };
        let path = self.store.partial_path(&desc.digest);
        let prefix =
            File::open(&path).map_err(|source| RegistryError::Io { path: path.display().to_string(), source })?;
        let reader = Box::new(prefix.take(have).chain(rest));
        let bytes = self.board.bytes(id, "Downloading", desc.size);
        importer.stream_layer(reader, writer, desc, diff_id, &bytes)?;
        Ok(())
    }
}

/// Refuses what is not an image manifest or index, schema 1 by name.
fn check_kind(reference: &Reference, media_type: &MediaType) -> Result<()> {
    let m = media_type.as_str();
    if m.starts_with("application/vnd.docker.distribution.manifest.v1") {
        return Err(RegistryError::Schema1 { reference: reference.familiar(), media_type: m.to_string() });
    }
    if media_type.is_index() || media_type.is_manifest() {
        return Ok(());
    }
    Err(RegistryError::NotAnImage { reference: reference.familiar(), media_type: m.to_string() })
}

fn json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes)
        .map_err(|e| RegistryError::Protocol { what: what.to_string(), detail: format!("invalid JSON: {e}") })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_schema_1_and_what_is_not_an_image_by_name() {
        let r = Reference::parse("h:1/a:old").unwrap();
        let v1 = MediaType::from("application/vnd.docker.distribution.manifest.v1+prettyjws".to_string());
        let e = check_kind(&r, &v1).unwrap_err().to_string();
        assert!(e.contains("h:1/a:old") && e.contains("schema 1"), "{e}");
        let helm = MediaType::from("application/vnd.cncf.helm.config.v1+json".to_string());
        assert!(check_kind(&r, &helm).unwrap_err().to_string().contains("not an image"));
        assert!(check_kind(&r, &MediaType::OciIndex).is_ok());
        assert!(check_kind(&r, &MediaType::DockerManifest).is_ok());
    }
}
