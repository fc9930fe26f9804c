//! Importing images into the store: OCI image layouts (a directory, or an oci-archive tar),
//! `docker save` archives (the legacy `<id>/layer.tar` form and the Docker 25+ form with an OCI
//! layout inside; several images per archive), and plain rootfs tarballs (`strata import`).
//!
//! Each blob is checked while it streams: a layer is read once, and that one pass writes the
//! blob under `tmp/` (hashing it against the descriptor's digest and size), decompresses it
//! (gzip, zstd or none, told by its first bytes), hashes the tar against the config's diff_id
//! and unpacks it into a temp dir. Only when every check passed are the blob and the layer
//! renamed into the store; a layer already unpacked is not unpacked again ("Already exists").
//! An image index selects the manifest for linux and this machine's architecture.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsFd;
use std::path::Path;

use super::digest::{Algorithm, Digest, Mismatch};
use super::pipeline::{self, UnpackTo};
use super::progress::{LayerProgress, Progress, ProgressReader, Ticker};
use super::reference::{Name, ReferenceError, repository_from_file_name};
use super::source::{Compression, Source, SourceError};
use super::spec::{
    ANNOTATION_CONTAINERD_NAME, Descriptor, DockerArchiveEntry, ImageConfig, ImageIndex, ImageManifest, MediaType,
    host_architecture, looks_like_index,
};
use super::store::{BlobWriter, LayerMeta, StoreError, WriteLock};
use super::unpack::{self, UnpackError, Unpacked};

/// The largest manifest, index or config accepted.
const JSON_LIMIT: u64 = 32 << 20;

/// Why an import failed; each names the file, blob or layer at fault.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Reading the source.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// Neither an OCI layout nor a docker archive.
    #[error("{0}: not an image archive or OCI layout (no index.json nor manifest.json)")]
    UnknownFormat(String),
    /// A JSON document of the source does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A blob whose content does not match its descriptor.
    #[error(transparent)]
    Mismatch(Mismatch),
    /// A blob longer than its descriptor says (reading stopped one byte past it).
    #[error("layer {layer}: the blob is longer than the {size} bytes its descriptor says")]
    TooLong {
        /// The layer (blob digest or archive member).
        layer: String,
        /// The size in the descriptor.
        size: u64,
    },
    /// A layer whose uncompressed content is not the config's diff_id.
    #[error("layer {layer}: uncompressed content has digest {actual}, but the image config says {expected}")]
    DiffId {
        /// The layer (blob digest or archive member).
        layer: String,
        /// The config's diff_id.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// A layer that cannot be unpacked.
    #[error("layer {layer}: {source}")]
    Unpack {
        /// The layer (blob digest or archive member).
        layer: String,
        /// The cause.
        source: UnpackError,
    },
    /// Something this tool does not handle (encrypted layers, no manifest for this platform).
    #[error("{0}")]
    Unsupported(String),
    /// Manifest and config disagree.
    #[error("{0}")]
    Inconsistent(String),
    /// A bad image name in the source.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
}

type Result<T> = std::result::Result<T, ImportError>;

/// One image imported.
#[derive(Debug)]
pub struct Loaded {
    /// The image id (config digest).
    pub id: Digest,
    /// The names given to it.
    pub names: Vec<Name>,
}

/// Imports into the store held by one write lock.
pub struct Importer<'a, 's> {
    lock: &'a WriteLock<'s>,
    progress: Progress,
    opts: unpack::Options,
}

/// A layer to bring in: where its blob is, what it must hash to.
struct LayerJob<'d> {
    /// Member of the source holding the blob.
    member: String,
    /// Shown in messages and progress.
    label: String,
    /// The blob's descriptor (none in legacy docker archives).
    blob: Option<&'d Descriptor>,
    /// The config's diff_id (none for `strata import`).
    diff_id: Option<&'d Digest>,
    /// From a download that can be resumed: a blob that ends short broke off (it is kept), it
    /// is not a wrong one.
    resumable: bool,
}

impl<'a, 's> Importer<'a, 's> {
    /// An importer writing through `lock`.
    pub fn new(lock: &'a WriteLock<'s>, progress: Progress) -> Self {
        Importer { lock, progress, opts: unpack::Options::for_current_user() }
    }

    /// `strata load`: every image of an OCI layout, oci-archive or docker archive at `path`.
    pub fn load(&self, path: &Path) -> Result<Vec<Loaded>> {
        let source = Source::open(path, &self.lock.store().tmp_dir())?;
        if source.exists("index.json") {
            self.load_oci(&source)
        } else if source.exists("manifest.json") {
            self.load_docker(&source)
        } else {
            Err(ImportError::UnknownFormat(path.display().to_string()))
        }
    }

    fn load_oci(&self, source: &Source) -> Result<Vec<Loaded>> {
        let index: ImageIndex = parse(&source.read_member("index.json", JSON_LIMIT)?, "index.json")?;
        let docker_tags = self.docker_tags(source)?;
        let fallback_repo = source.path().file_name().and_then(|n| repository_from_file_name(&n.to_string_lossy()));
        // Entries naming one manifest several times are one image with several names.
        let mut images: Vec<(Descriptor, Vec<Name>)> = Vec::new();
        for desc in &index.manifests {
            let names = oci_names(desc, fallback_repo.as_deref())?;
            match images.iter_mut().find(|(d, _)| d.digest == desc.digest) {
                Some((_, n)) => n.extend(names),
                None => images.push((desc.clone(), names)),
            }
        }
        let mut loaded = Vec::new();
        for (desc, mut names) in images {
            let (mdesc, raw) = self.select_manifest(source, &desc, 0)?;
            let manifest: ImageManifest = parse(&raw, &format!("manifest {}", mdesc.digest))?;
            if let Some(tags) = docker_tags.get(&manifest.config.digest) {
                names.extend(tags.iter().cloned());
            }
            names.sort();
            names.dedup();
            loaded.push(self.import_manifest(source, &mdesc, &raw, manifest, names)?);
        }
        Ok(loaded)
    }

    /// Names a Docker 25+ archive's `manifest.json` gives, by config digest.
    fn docker_tags(&self, source: &Source) -> Result<BTreeMap<Digest, Vec<Name>>> {
        let mut out = BTreeMap::new();
        if !source.exists("manifest.json") {
            return Ok(out);
        }
        let entries: Vec<DockerArchiveEntry> =
            parse(&source.read_member("manifest.json", JSON_LIMIT)?, "manifest.json")?;
        for e in entries {
            if let Some(d) = e.named_config_digest() {
                out.insert(d, e.names()?);
            }
        }
        Ok(out)
    }

    /// Follows image indexes down to the manifest for this platform.
    fn select_manifest(&self, source: &Source, desc: &Descriptor, depth: u32) -> Result<(Descriptor, Vec<u8>)> {
        let raw = read_blob(source, desc, &format!("manifest {}", desc.digest))?;
        let is_index = desc.media_type.is_index() || (!desc.media_type.is_manifest() && looks_like_index(&raw));
        if !is_index {
            return Ok((desc.clone(), raw));
        }
        if depth > 4 {
            return Err(ImportError::Unsupported(format!("index {}: image indexes nested too deep", desc.digest)));
        }
        let index: ImageIndex = parse(&raw, &format!("index {}", desc.digest))?;
        let arch = host_architecture();
        let pick = index.manifests.iter().find(|m| {
            m.platform.as_ref().is_some_and(|p| p.os == "linux" && p.architecture == arch)
                || (m.platform.is_none() && index.manifests.len() == 1)
        });
        match pick {
            Some(m) => self.select_manifest(source, m, depth + 1),
            None => Err(ImportError::Unsupported(format!("index {}: no manifest for linux/{arch}", desc.digest))),
        }
    }

    fn import_manifest(
        &self,
        source: &Source,
        mdesc: &Descriptor,
        raw: &[u8],
        manifest: ImageManifest,
        names: Vec<Name>,
    ) -> Result<Loaded> {
        let config_raw = read_blob(source, &manifest.config, &format!("config {}", manifest.config.digest))?;
        let config: ImageConfig = parse(&config_raw, &format!("config {}", manifest.config.digest))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImportError::Inconsistent(format!(
                "manifest {}: {} layers, but its config lists {} diff_ids",
                mdesc.digest,
                manifest.layers.len(),
                diff_ids.len()
            )));
        }
        for (layer, diff_id) in manifest.layers.iter().zip(diff_ids) {
            refuse_encrypted(layer)?;
            let member = format!("blobs/{}/{}", layer.digest.algorithm().name(), layer.digest.hex());
            let job = LayerJob {
                member,
                label: layer.digest.to_string(),
                blob: Some(layer),
                diff_id: Some(diff_id),
                resumable: false,
            };
            self.layer(source, &job)?;
        }
        self.lock.put_blob(&config_raw, Some(&manifest.config))?;
        self.lock.put_blob(raw, Some(mdesc))?;
        self.register(mdesc, &names)?;
        Ok(Loaded { id: manifest.config.digest.clone(), names })
    }

    /// Puts the image in `index.json` under its names (untagged if it has none).
    fn register(&self, mdesc: &Descriptor, names: &[Name]) -> Result<()> {
        let mut index = self.lock.store().index()?;
        let mut desc = Descriptor::new(mdesc.media_type.clone(), mdesc.digest.clone(), mdesc.size);
        if !desc.media_type.is_manifest() {
            desc.media_type = MediaType::OciManifest;
        }
        if names.is_empty() {
            super::store::add_untagged(&mut index, &desc);
        }
        for name in names {
            super::store::set_name(&mut index, name, &desc);
        }
        self.lock.save_index(&index)?;
        Ok(())
    }

    fn load_docker(&self, source: &Source) -> Result<Vec<Loaded>> {
        let entries: Vec<DockerArchiveEntry> =
            parse(&source.read_member("manifest.json", JSON_LIMIT)?, "manifest.json")?;
        entries.iter().map(|e| self.load_docker_image(source, e)).collect()
    }

    /// A legacy docker-save image: the config is a member, the layers are (usually plain) tars
    /// whose only check is the config's diff_ids; the manifest is made here.
    fn load_docker_image(&self, source: &Source, entry: &DockerArchiveEntry) -> Result<Loaded> {
        let config_raw = source.read_member(&entry.config, JSON_LIMIT)?;
        let config_digest = Digest::sha256_of(&config_raw);
        if let Some(want) = entry.named_config_digest()
            && want != config_digest
        {
            return Err(ImportError::Mismatch(Mismatch {
                what: format!("config {}", entry.config),
                expected: want,
                expected_size: config_raw.len() as u64,
                actual: config_digest,
                actual_size: config_raw.len() as u64,
            }));
        }
        let config: ImageConfig = parse(&config_raw, &entry.config)?;
        if config.rootfs.diff_ids.len() != entry.layers.len() {
            return Err(ImportError::Inconsistent(format!(
                "{}: {} layers, but config {} lists {} diff_ids",
                source.path().display(),
                entry.layers.len(),
                entry.config,
                config.rootfs.diff_ids.len()
            )));
        }
        let mut layers = Vec::new();
        for (member, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
            let job = LayerJob {
                member: member.clone(),
                label: member.clone(),
                blob: None,
                diff_id: Some(diff_id),
                resumable: false,
            };
            layers.push(self.layer(source, &job)?.0);
        }
        let mdesc = self.put_new_image(&config_raw, layers)?;
        let names = entry.names()?;
        self.register(&mdesc, &names)?;
        Ok(Loaded { id: config_digest, names })
    }

    /// `strata import`: a rootfs tarball (plain, gzip or zstd) as a one-layer image; `origin`
    /// is what the history says it was imported from.
    pub fn import_rootfs(&self, path: &Path, origin: &str, name: Option<Name>) -> Result<Loaded> {
        let dir = path.parent().unwrap_or(Path::new("."));
        let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let source = Source::Dir(dir.to_path_buf());
        let job = LayerJob {
            member: file_name,
            label: path.display().to_string(),
            blob: None,
            diff_id: None,
            resumable: false,
        };
        let (layer, diff_id) = self.layer(&source, &job)?;
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let config = serde_json::json!({
            "created": now,
            "architecture": host_architecture(),
            "os": "linux",
            "config": {},
            "rootfs": {"type": "layers", "diff_ids": [diff_id]},
            "history": [{"created": now, "created_by": "strata import", "comment": format!("Imported from {origin}")}],
        });
        let config_raw =
            serde_json::to_vec(&config).map_err(|source| ImportError::Json { what: "a new config".into(), source })?;
        let mdesc = self.put_new_image(&config_raw, vec![layer])?;
        let names: Vec<Name> = name.into_iter().collect();
        self.register(&mdesc, &names)?;
        Ok(Loaded { id: Digest::sha256_of(&config_raw), names })
    }

    /// Stores a config (kept as given) and a manifest made here for it and `layers` (whose
    /// blobs are stored already); returns the manifest's descriptor.
    fn put_new_image(&self, config_raw: &[u8], layers: Vec<Descriptor>) -> Result<Descriptor> {
        let config = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(config_raw), config_raw.len() as u64);
        self.lock.put_blob(config_raw, Some(&config))?;
        let manifest = ImageManifest {
            schema_version: 2,
            media_type: Some(MediaType::OciManifest),
            config,
            layers,
            annotations: BTreeMap::new(),
        };
        let raw = serde_json::to_vec(&manifest)
            .map_err(|source| ImportError::Json { what: "a new manifest".into(), source })?;
        let mdesc = Descriptor::new(MediaType::OciManifest, Digest::sha256_of(&raw), raw.len() as u64);
        self.lock.put_blob(&raw, Some(&mdesc))?;
        Ok(mdesc)
    }

    /// Brings one layer in: its blob into `blobs/`, its content unpacked into `layers/` unless
    /// it is there already. Returns the blob's descriptor and the layer's diff_id.
    fn layer(&self, source: &Source, job: &LayerJob<'_>) -> Result<(Descriptor, Digest)> {
        let store = self.lock.store();
        let short = job.blob.map(|b| b.digest.short().to_string()).unwrap_or_else(|| short_label(job));
        if let Some(diff_id) = job.diff_id
            && store.has_layer(diff_id)
        {
            // A legacy docker layer's blob is its plain tar, named by its diff_id.
            let stored = job.blob.map(|b| &b.digest).unwrap_or(diff_id);
            let (blob, bar) = if store.has_blob(stored) {
                let size = store.blob_size(stored);
                let desc =
                    job.blob.cloned().unwrap_or_else(|| Descriptor::new(MediaType::OciLayer, diff_id.clone(), size));
                (desc, self.progress.layer(&short, 0))
            } else {
                let (reader, size) = source.open_member(&job.member)?;
                let bar = self.progress.layer(&short, size);
                (self.copy_blob(reader, job, &bar)?, bar)
            };
            bar.done("Already exists");
            return Ok((blob, diff_id.clone()));
        }
        let (reader, size) = source.open_member(&job.member)?;
        let bar = self.progress.layer(&short, size);
        match self.unpack_blob(reader, job, &bar) {
            Ok(done) => {
                bar.done("Pull complete");
                Ok(done)
            }
            Err(e) => {
                bar.failed();
                Err(e)
            }
        }
    }

    /// Stores a layer blob whose content is unpacked already (its diff_id is still checked).
    fn copy_blob(&self, reader: Box<dyn Read + '_>, job: &LayerJob<'_>, bar: &LayerProgress) -> Result<Descriptor> {
        let blob = self.lock.blob_writer(job_algorithm(job))?;
        let pass = self.pass(reader, blob, job, bar, None)?;
        let size = pass.blob.count();
        let digest = pass.blob.commit(self.lock, job.blob)?;
        Ok(job.blob.cloned().unwrap_or_else(|| Descriptor::new(layer_media_type(pass.compression), digest, size)))
    }

    /// Stores a layer blob and unpacks it into `layers/`.
    fn unpack_blob(
        &self,
        reader: Box<dyn Read + '_>,
        job: &LayerJob<'_>,
        bar: &LayerProgress,
    ) -> Result<(Descriptor, Digest)> {
        let blob = self.lock.blob_writer(job_algorithm(job))?;
        self.unpack_into_store(reader, blob, job, bar)
    }

    /// The pass over a blob that unpacks it, then both into the store.
    fn unpack_into_store(
        &self,
        reader: Box<dyn Read + '_>,
        blob: BlobWriter,
        job: &LayerJob<'_>,
        bar: &dyn Ticker,
    ) -> Result<(Descriptor, Digest)> {
        let dir = self.lock.layer_tmp()?;
        let root = File::open(dir.path()).map_err(|source| StoreError::Io { path: dir.path().into(), source })?;
        let pass = self.pass(reader, blob, job, bar, Some(&root))?;
        bar.finishing();
        let size = pass.blob.count();
        let digest = pass.blob.commit(self.lock, job.blob)?;
        let meta = LayerMeta { size: pass.unpacked.size, entries: pass.unpacked.entries };
        if !self.lock.store().has_layer(&pass.diff_id) {
            self.lock.commit_layer(dir, &pass.diff_id, &meta)?;
        }
        let desc =
            job.blob.cloned().unwrap_or_else(|| Descriptor::new(layer_media_type(pass.compression), digest, size));
        Ok((desc, pass.diff_id))
    }

    /// The one pass over a layer blob: write it under `tmp/`, decompress it, hash the tar and
    /// unpack it into `unpack_into` (or just read it), each on its own thread; then check the
    /// blob against its descriptor and the tar against the diff_id. Nothing is in the store yet.
    fn pass(
        &self,
        reader: Box<dyn Read + '_>,
        mut blob: BlobWriter,
        job: &LayerJob<'_>,
        bar: &dyn Ticker,
        unpack_into: Option<&File>,
    ) -> Result<Pass> {
        // A blob longer than its descriptor says is refused as soon as one byte too many came.
        let limit = job.blob.map(|b| b.size.saturating_add(1)).unwrap_or(u64::MAX);
        let mut source = ProgressReader::new(reader.take(limit), bar);
        let algorithm = job.diff_id.map(|d| d.algorithm()).unwrap_or(Algorithm::Sha256);
        let to = unpack_into.map(|root| UnpackTo { root: root.as_fd(), opts: self.opts });
        // The whole blob is read (also when the tar broke off), so that its digest and size
        // decide first: a broken tar in the wrong blob is the wrong blob. A source that broke
        // first says so, and its partial download is kept to be resumed.
        let outcome = pipeline::run(&mut source, &mut blob, algorithm, to);
        outcome.blob.map_err(|e| self.read_error(job, e))?;
        if let Some(want) = job.blob {
            if blob.count() > want.size {
                blob.poison();
                return Err(ImportError::TooLong { layer: job.label.clone(), size: want.size });
            }
            if blob.count() < want.size && job.resumable {
                // The download broke off: what came is kept (the next try resumes from it).
                let (got, size) = (blob.count(), want.size);
                let short = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("the blob ended after {got} of its {size} bytes"),
                );
                return Err(self.read_error(job, short));
            }
        }
        blob.check(job.blob).map_err(|e| self.mismatch(job, e))?;
        let tar = outcome.tar.map_err(|source| ImportError::Unpack { layer: job.label.clone(), source })?;
        for w in &tar.unpacked.warnings {
            log::warn!("layer {}: {w}", job.label);
        }
        if let Some(want) = job.diff_id
            && *want != tar.diff_id
        {
            return Err(ImportError::DiffId { layer: job.label.clone(), expected: want.clone(), actual: tar.diff_id });
        }
        Ok(Pass { blob, compression: tar.compression, diff_id: tar.diff_id, unpacked: tar.unpacked })
    }

    /// A layer blob streamed from elsewhere (a registry): `reader` gives the whole blob from
    /// its first byte, `blob` stores it (it may be resuming a partial download). The blob is
    /// checked against `desc` and its tar against `diff_id`, and unpacked in the same pass unless
    /// the layer is in the store already; then both are put in place.
    pub fn stream_layer(
        &self,
        reader: Box<dyn Read + '_>,
        blob: BlobWriter,
        desc: &Descriptor,
        diff_id: &Digest,
        ticker: &dyn Ticker,
    ) -> Result<()> {
        refuse_encrypted(desc)?;
        let job = LayerJob {
            member: String::new(),
            label: desc.digest.to_string(),
            blob: Some(desc),
            diff_id: Some(diff_id),
            resumable: true,
        };
        if self.lock.store().has_layer(diff_id) {
            let pass = self.pass(reader, blob, &job, ticker, None)?;
            pass.blob.commit(self.lock, job.blob)?;
        } else {
            self.unpack_into_store(reader, blob, &job, ticker)?;
        }
        Ok(())
    }

    /// Stores a downloaded image's config and manifest, byte for byte, and names it.
    pub fn finish_image(
        &self,
        mdesc: &Descriptor,
        manifest_raw: &[u8],
        config: &Descriptor,
        config_raw: &[u8],
        names: &[Name],
    ) -> Result<()> {
        self.lock.put_blob(config_raw, Some(config))?;
        self.lock.put_blob(manifest_raw, Some(mdesc))?;
        self.register(mdesc, names)
    }

    fn read_error(&self, job: &LayerJob<'_>, e: io::Error) -> ImportError {
        ImportError::Unpack { layer: job.label.clone(), source: UnpackError::Read(e) }
    }

    fn mismatch(&self, job: &LayerJob<'_>, e: StoreError) -> ImportError {
        match e {
            StoreError::Mismatch(m) => ImportError::Mismatch(Mismatch { what: format!("layer {}", job.label), ..m }),
            other => other.into(),
        }
    }
}

/// Encrypted layers (ocicrypt) cannot be unpacked here: one line naming the layer.
fn refuse_encrypted(layer: &Descriptor) -> Result<()> {
    if layer.media_type.is_encrypted() {
        return Err(ImportError::Unsupported(format!("layer {}: encrypted layers are not supported", layer.digest)));
    }
    Ok(())
}

fn job_algorithm(job: &LayerJob<'_>) -> Algorithm {
    job.blob.map(|b| b.digest.algorithm()).unwrap_or(Algorithm::Sha256)
}

fn short_label(job: &LayerJob<'_>) -> String {
    match job.diff_id {
        Some(d) => d.short().to_string(),
        None => job.label.rsplit('/').next().unwrap_or(&job.label).chars().take(12).collect(),
    }
}

/// The OCI media type of a layer blob with compression `c`.
pub(super) fn layer_media_type(c: Compression) -> MediaType {
    match c {
        Compression::None => MediaType::OciLayer,
        Compression::Gzip => MediaType::OciLayerGzip,
        Compression::Zstd => MediaType::OciLayerZstd,
    }
}

/// The names an OCI index entry gives: the full name containerd/Docker put in
/// `io.containerd.image.name`, else `ref.name` (a full name, or a tag of the repository named
/// after the file).
fn oci_names(desc: &Descriptor, fallback_repo: Option<&str>) -> Result<Vec<Name>> {
    if let Some(full) = desc.annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Ok(vec![Name::parse(full)?]);
    }
    let Some(r) = desc.ref_name() else { return Ok(Vec::new()) };
    if r.contains('/') || r.contains(':') {
        return Ok(vec![Name::parse(r)?]);
    }
    match fallback_repo {
        Some(repo) => Ok(vec![Name::with_tag(repo, r)?]),
        None => Ok(Vec::new()),
    }
}

/// Reads a small blob of the source whole, checking it against its descriptor.
fn read_blob(source: &Source, desc: &Descriptor, what: &str) -> Result<Vec<u8>> {
    let member = format!("blobs/{}/{}", desc.digest.algorithm().name(), desc.digest.hex());
    let bytes = source.read_member(&member, JSON_LIMIT)?;
    let actual = desc.digest.of_same_kind(&bytes);
    if actual != desc.digest || bytes.len() as u64 != desc.size {
        return Err(ImportError::Mismatch(Mismatch {
            what: what.to_string(),
            expected: desc.digest.clone(),
            expected_size: desc.size,
            actual,
            actual_size: bytes.len() as u64,
        }));
    }
    Ok(bytes)
}

fn parse<T: serde::de::DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| ImportError::Json { what: what.to_string(), source })
}

/// What one pass over a layer blob made and measured.
struct Pass {
    blob: BlobWriter,
    compression: Compression,
    diff_id: Digest,
    unpacked: Unpacked,
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;
    use crate::image::progress::ProgressMode;
    use crate::image::store::Store;

    struct Quiet;
    impl Ticker for Quiet {
        fn inc(&self, _: u64) {}
    }

    /// Gives `data`, then fails as a dropped connection does.
    struct Broken<'d>(&'d [u8]);
    impl Read for Broken<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0.is_empty() {
                return Err(io::ErrorKind::ConnectionReset.into());
            }
            self.0.read(buf)
        }
    }

    fn gz_layer() -> (Vec<u8>, Vec<u8>) {
        let mut b = tar::Builder::new(Vec::new());
        let data: Vec<u8> = (0..3u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1);
        h.set_cksum();
        b.append_data(&mut h, "big", &data[..]).unwrap();
        let tar = b.into_inner().unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tar).unwrap();
        (tar, gz.finish().unwrap())
    }

    #[test]
    fn a_source_that_breaks_is_a_read_error_and_its_download_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.write().unwrap();
        let importer = Importer::new(&lock, Progress::new(ProgressMode::Quiet));
        let (tar, blob) = gz_layer();
        let desc = Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(&blob), blob.len() as u64);
        let diff_id = Digest::sha256_of(&tar);
        let half = blob.len() / 2;

        let (writer, _) = lock.partial_blob(&desc.digest).unwrap();
        let err = importer.stream_layer(Box::new(Broken(&blob[..half])), writer, &desc, &diff_id, &Quiet).unwrap_err();
        assert!(matches!(err, ImportError::Unpack { source: UnpackError::Read(_), .. }), "{err}");
        assert!(err.to_string().contains(&desc.digest.to_string()), "names the layer: {err}");
        let partial = store.partial_path(&desc.digest);
        assert_eq!(std::fs::metadata(&partial).unwrap().len(), half as u64, "kept to be resumed");

        let (writer, have) = lock.partial_blob(&desc.digest).unwrap();
        let prefix = File::open(&partial).unwrap().take(have);
        let reader = Box::new(prefix.chain(&blob[have as usize..]));
        importer.stream_layer(reader, writer, &desc, &diff_id, &Quiet).unwrap();
        assert!(store.has_layer(&diff_id) && store.has_blob(&desc.digest));
    }

    #[test]
    fn the_blob_decides_before_the_tar() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.write().unwrap();
        let importer = Importer::new(&lock, Progress::new(ProgressMode::Quiet));
        let (tar, mut blob) = gz_layer();
        let desc = Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(&blob), blob.len() as u64);
        let diff_id = Digest::sha256_of(&tar);
        // Corrupt deflate data: the tar breaks, but the blob is the wrong blob first.
        let mid = blob.len() / 2;
        blob[mid..mid + 64].fill(0xff);
        let writer = lock.blob_writer(Algorithm::Sha256).unwrap();
        let err = importer.stream_layer(Box::new(&blob[..]), writer, &desc, &diff_id, &Quiet).unwrap_err();
        assert!(matches!(err, ImportError::Mismatch(_)), "{err}");
        // Described as it is, the same blob is a broken tar.
        let desc = Descriptor::new(MediaType::OciLayerGzip, Digest::sha256_of(&blob), blob.len() as u64);
        let writer = lock.blob_writer(Algorithm::Sha256).unwrap();
        let err = importer.stream_layer(Box::new(&blob[..]), writer, &desc, &diff_id, &Quiet).unwrap_err();
        assert!(matches!(err, ImportError::Unpack { source: UnpackError::Read(_), .. }), "{err}");
        assert!(!store.has_layer(&diff_id));
    }
}
