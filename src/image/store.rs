//! The image store under `--root`: a valid OCI image layout (image-spec `image-layout.md`) plus
//! the unpacked layers Strata mounts.
//!
//! ```text
//! ROOT/oci-layout            {"imageLayoutVersion":"1.0.0"}
//! ROOT/index.json            one manifest descriptor per name (ref.name annotation), or untagged
//! ROOT/blobs/sha256/HEX      manifests, configs, layer blobs as received (content-addressed)
//! ROOT/layers/HEX/           a layer unpacked in upper-dir format, once per diff_id
//! ROOT/layers/HEX.json       what unpacking it measured (LayerMeta)
//! ROOT/mounts/KEY/           one image mount: mount.json, and upper/ work/ when writable
//! ROOT/tmp/                  blobs and layers being written; renamed into place when complete
//! ROOT/partial/ALG-HEX       a blob download that broke off, resumed by the next pull
//! ROOT/partial/ALG-HEX.lock  flock: one download of a blob at a time
//! ROOT/lock                  flock: shared for readers and pulls' downloads, exclusive for writers
//! ```
//!
//! Nothing is written in place: every file is made under `tmp/`, synced, and renamed. What may be
//! deleted is decided by a reachability scan from `index.json` and the mount records ([`WriteLock::gc`]).

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::digest::{Algorithm, Digest, Hasher, Mismatch};
use super::reference::{Name, ReferenceError};
use super::spec::{ANNOTATION_REF_NAME, Descriptor, ImageConfig, ImageIndex, ImageManifest, OciLayout};
use crate::sys::lock::{self as flock, LockKind};

/// Downloads kept across failures (`ROOT/partial/ALG-HEX`), outside `tmp/` which every writer empties.
const PARTIAL: &str = "partial";

/// What went wrong in the store; each names the path, digest or image at fault.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file of the store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// A JSON document of the store does not parse.
    #[error("{what}: invalid JSON: {source}")]
    Json {
        /// Which document.
        what: String,
        /// The cause.
        source: serde_json::Error,
    },
    /// A blob the store needs is not there.
    #[error("blob {0} is missing from the store")]
    MissingBlob(Digest),
    /// A blob's content does not match its name.
    #[error("blob {digest} is corrupt: its content has digest {actual}")]
    CorruptBlob {
        /// The blob's name.
        digest: Digest,
        /// What its content hashes to.
        actual: Digest,
    },
    /// Content written does not match what it was announced as.
    #[error(transparent)]
    Mismatch(#[from] Mismatch),
    /// No image matches a reference.
    #[error("No such image: {0}")]
    NoSuchImage(String),
    /// An id prefix matches several images.
    #[error("image reference {0:?} is ambiguous: it matches several images")]
    Ambiguous(String),
    /// A name is not valid.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A change that needs the exclusive lock was tried under a content lock (a bug).
    #[error("{0} needs the store's exclusive lock")]
    NotExclusive(&'static str),
}

/// Result of store operations.
pub type Result<T> = std::result::Result<T, StoreError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> StoreError + '_ {
    move |source| StoreError::Io { path: path.to_path_buf(), source }
}

/// What unpacking a layer measured, kept beside its dir.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct LayerMeta {
    /// Bytes of regular-file content in the layer.
    pub size: u64,
    /// Number of entries in the layer tar.
    pub entries: u64,
}

/// One image mount, kept under `mounts/KEY/mount.json` until `image umount`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct MountRecord {
    /// Where it is mounted (canonical path).
    pub mountpoint: PathBuf,
    /// The image as the user named it.
    pub image: String,
    /// The image's manifest (kept alive while the record exists).
    pub manifest: Digest,
    /// With a scratch upper dir.
    pub writable: bool,
    /// The mount was made (false while it is being set up, or if setting up failed).
    pub mounted: bool,
}

/// An image in the store: its manifest and config as read, with the names pointing to it.
#[derive(Clone, Debug)]
pub struct Image {
    /// The manifest's descriptor (no annotations).
    pub descriptor: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The config, parsed.
    pub config: ImageConfig,
    /// The config exactly as stored.
    pub config_raw: Vec<u8>,
    /// Names (`repo:tag`) pointing to this image.
    pub names: Vec<String>,
}

impl Image {
    /// The image id docker shows: the config digest.
    pub fn id(&self) -> &Digest {
        &self.manifest.config.digest
    }
}

/// An image store rooted at a directory.
#[derive(Debug)]
pub struct Store {
    root: PathBuf,
}

/// The store's lock held shared: the store does not change while it is held.
pub struct ReadLock {
    _file: File,
}

/// The store's lock held for writing: exclusively ([`Store::write`], the only way to change
/// names, mounts or remove anything), or shared by a writer of content only
/// ([`Store::write_content`]: a pull's downloads, which add content-addressed blobs and layers
/// while readers and other pulls go on).
pub struct WriteLock<'s> {
    store: &'s Store,
    _file: File,
    exclusive: bool,
}

impl Store {
    /// Opens the store at `root`, creating an empty OCI layout there if needed.
    pub fn open(root: &Path) -> Result<Store> {
        let store = Store { root: root.to_path_buf() };
        for dir in ["blobs/sha256", "layers", "tmp", "mounts"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(io_err(&p))?;
        }
        if !store.index_path().exists() || !root.join("oci-layout").exists() {
            let lock = store.write()?;
            lock.init_layout()?;
        }
        Ok(store)
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn lock_file(&self, kind: LockKind) -> Result<File> {
        let path = self.root.join("lock");
        let file =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        flock::lock(file.as_fd(), kind).map_err(|e| StoreError::Io { path, source: e.into() })?;
        Ok(file)
    }

    /// Takes the lock shared, for reading.
    pub fn read(&self) -> Result<ReadLock> {
        Ok(ReadLock { _file: self.lock_file(LockKind::Shared)? })
    }

    /// Takes the lock exclusively, for changing the store; leftovers of interrupted writers go.
    pub fn write(&self) -> Result<WriteLock<'_>> {
        let file = self.lock_file(LockKind::Exclusive)?;
        let lock = WriteLock { store: self, _file: file, exclusive: true };
        lock.clean_tmp()?;
        Ok(lock)
    }

    /// Takes the lock shared, for adding blobs and layers only: nothing is removed while it is
    /// held (no `gc`, no `tmp/` cleaning), and what is added is content-addressed and renamed
    /// into place, so readers and other content writers may work at the same time. Naming what
    /// was added needs [`Store::write`] afterwards (check that it is still there: a prune may
    /// run in between).
    pub fn write_content(&self) -> Result<WriteLock<'_>> {
        Ok(WriteLock { store: self, _file: self.lock_file(LockKind::Shared)?, exclusive: false })
    }

    fn index_path(&self) -> PathBuf {
        self.root.join("index.json")
    }

    /// Where a blob lives.
    pub fn blob_path(&self, d: &Digest) -> PathBuf {
        self.root.join("blobs").join(d.algorithm().name()).join(d.hex())
    }

    /// Where the download of a blob is kept until it is complete.
    pub fn partial_path(&self, d: &Digest) -> PathBuf {
        self.root.join(PARTIAL).join(format!("{}-{}", d.algorithm().name(), d.hex()))
    }

    /// Whether a blob is present.
    pub fn has_blob(&self, d: &Digest) -> bool {
        self.blob_path(d).is_file()
    }

    /// A blob's size on disk (0 when it is missing).
    pub fn blob_size(&self, d: &Digest) -> u64 {
        fs::metadata(self.blob_path(d)).map(|m| m.len()).unwrap_or(0)
    }

    /// Where the layer with this diff_id is unpacked.
    pub fn layer_path(&self, diff_id: &Digest) -> PathBuf {
        self.root.join("layers").join(diff_id.hex())
    }

    fn layer_meta_path(&self, hex: &str) -> PathBuf {
        self.root.join("layers").join(format!("{hex}.json"))
    }

    /// Whether the layer with this diff_id is unpacked.
    pub fn has_layer(&self, diff_id: &Digest) -> bool {
        self.layer_path(diff_id).is_dir()
    }

    /// Whether the layer `diff_id` is lazy: made from an eStargz table of contents, its files
    /// filled as they are used, its blob not in the store.
    pub fn is_lazy_layer(&self, diff_id: &Digest) -> bool {
        let root = self.layer_path(diff_id);
        std::fs::File::open(&root).is_ok_and(|f| {
            use std::os::fd::AsFd;
            matches!(
                crate::sys::xattr::get(f.as_fd(), None, std::ffi::OsStr::new(crate::fs::lazy::LAYER_XATTR)),
                Ok(Some(_))
            )
        })
    }

    /// What unpacking a layer measured (default when unknown).
    pub fn layer_meta(&self, diff_id: &Digest) -> LayerMeta {
        self.layer_meta_by_hex(diff_id.hex())
    }

    fn layer_meta_by_hex(&self, hex: &str) -> LayerMeta {
        fs::read(self.layer_meta_path(hex)).ok().and_then(|b| serde_json::from_slice(&b).ok()).unwrap_or_default()
    }

    /// The unpacked size of an image: the content of its layers.
    pub fn image_size(&self, img: &Image) -> u64 {
        img.config.rootfs.diff_ids.iter().map(|d| self.layer_meta(d).size).sum()
    }

    /// Where the temporary files of writers go.
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The blobs and layers some image of `index.json` or some mount record reaches.
    fn live_set(&self) -> Result<LiveSet> {
        let mut manifests: Vec<Descriptor> = self.index()?.manifests;
        for (_, rec) in self.mounts()? {
            let d = Descriptor::new(super::spec::MediaType::OciManifest, rec.manifest, 0);
            manifests.push(d);
        }
        let mut live = LiveSet::default();
        for desc in manifests {
            if !live.blobs.insert(desc.digest.clone()) {
                continue;
            }
            let img = self.load_image(&desc)?;
            live.blobs.insert(img.manifest.config.digest.clone());
            live.blobs.extend(img.manifest.layers.iter().map(|l| l.digest.clone()));
            live.layers.extend(img.config.rootfs.diff_ids.iter().map(|d| d.hex().to_string()));
        }
        Ok(live)
    }

    /// The blob hex digests and layer dir names that no image nor mount reaches: what
    /// [`WriteLock::gc`] removes.
    pub fn unreachable(&self) -> Result<(Vec<String>, Vec<String>)> {
        let live = self.live_set()?;
        let blobs = list_dir(&self.root.join("blobs/sha256"))?
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| Digest::parse(&format!("sha256:{n}")).map(|d| !live.blobs.contains(&d)).unwrap_or(true))
            .collect();
        let layers = list_dir(&self.root.join("layers"))?
            .into_iter()
            .map(|(_, n)| n)
            .filter(|n| !n.ends_with(".json") && !live.layers.contains(n.as_str()))
            .collect();
        Ok((blobs, layers))
    }

    /// Reads a blob whole, checking its content against its digest.
    pub fn read_blob(&self, d: &Digest) -> Result<Vec<u8>> {
        let path = self.blob_path(d);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StoreError::MissingBlob(d.clone())),
            Err(e) => return Err(StoreError::Io { path, source: e }),
        };
        let actual = d.of_same_kind(&bytes);
        if &actual != d {
            return Err(StoreError::CorruptBlob { digest: d.clone(), actual });
        }
        Ok(bytes)
    }

    /// The store's `index.json`.
    pub fn index(&self) -> Result<ImageIndex> {
        let path = self.index_path();
        let bytes = fs::read(&path).map_err(io_err(&path))?;
        serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { what: path.display().to_string(), source })
    }

    /// Every image, with its names, in `index.json` order.
    pub fn images(&self) -> Result<Vec<Image>> {
        let index = self.index()?;
        let mut out: Vec<Image> = Vec::new();
        for desc in &index.manifests {
            if let Some(img) = out.iter_mut().find(|i| i.descriptor.digest == desc.digest) {
                img.names.extend(desc.ref_name().map(str::to_string));
                continue;
            }
            let mut img = self.load_image(desc)?;
            img.names.extend(desc.ref_name().map(str::to_string));
            out.push(img);
        }
        Ok(out)
    }

    /// Reads the manifest and config an index entry points to.
    pub fn load_image(&self, desc: &Descriptor) -> Result<Image> {
        let raw = self.read_blob(&desc.digest)?;
        let manifest: ImageManifest = parse_json(&raw, || format!("manifest {}", desc.digest))?;
        let config_raw = self.read_blob(&manifest.config.digest)?;
        let config: ImageConfig = parse_json(&config_raw, || format!("config {}", manifest.config.digest))?;
        let mut descriptor = desc.clone();
        descriptor.annotations.clear();
        Ok(Image { descriptor, manifest, config, config_raw, names: Vec::new() })
    }

    /// Finds the image a user names: `repo[:tag]`, or an id (config digest) or a prefix of one.
    pub fn resolve(&self, reference: &str) -> Result<Image> {
        let images = self.images()?;
        if let Ok(name) = Name::parse(reference) {
            let name = name.to_string();
            if let Some(img) = images.iter().find(|i| i.names.contains(&name)) {
                return Ok(img.clone());
            }
        }
        let hex = reference.strip_prefix("sha256:").unwrap_or(reference);
        if hex.is_empty() || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::NoSuchImage(reference.to_string()));
        }
        let hits: Vec<&Image> =
            images.iter().filter(|i| i.id().hex().starts_with(hex) || i.descriptor.digest.hex() == hex).collect();
        match hits.as_slice() {
            [one] => Ok((*one).clone()),
            [] => Err(StoreError::NoSuchImage(reference.to_string())),
            _ => Err(StoreError::Ambiguous(reference.to_string())),
        }
    }

    /// Every mount record, with its directory.
    pub fn mounts(&self) -> Result<Vec<(PathBuf, MountRecord)>> {
        let dir = self.root.join("mounts");
        let mut out = Vec::new();
        for entry in fs::read_dir(&dir).map_err(io_err(&dir))? {
            let path = entry.map_err(io_err(&dir))?.path();
            let file = path.join("mount.json");
            let Ok(bytes) = fs::read(&file) else { continue };
            let rec = parse_json(&bytes, || file.display().to_string())?;
            out.push((path, rec));
        }
        Ok(out)
    }

    /// The directory of the mount record for `mountpoint` (canonical).
    pub fn mount_dir(&self, mountpoint: &Path) -> PathBuf {
        use std::os::unix::ffi::OsStrExt;
        let key = Digest::sha256_of(mountpoint.as_os_str().as_bytes());
        self.root.join("mounts").join(&key.hex()[..16])
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8], what: impl FnOnce() -> String) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Json { what: what(), source })
}

/// A blob being written, hashed as it goes; [`BlobWriter::commit`] puts it in place.
///
/// Either a temp file under `tmp/` (gone when dropped), or a download kept under `partial/`
/// across failures and runs ([`WriteLock::partial_blob`]): its first `skip` bytes are already in
/// the file, and the bytes written over them again are only hashed (a resumed blob is hashed
/// from its start).
pub struct BlobWriter {
    file: BlobFile,
    hasher: Hasher,
    count: u64,
    skip: u64,
}

enum BlobFile {
    Temp(tempfile::NamedTempFile),
    Partial { file: File, path: PathBuf, bad: std::cell::Cell<bool> },
}

impl BlobFile {
    fn path(&self) -> &Path {
        match self {
            BlobFile::Temp(t) => t.path(),
            BlobFile::Partial { path, .. } => path,
        }
    }

    fn file(&self) -> &File {
        match self {
            BlobFile::Temp(t) => t.as_file(),
            BlobFile::Partial { file, .. } => file,
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        // A partial download whose content proved wrong is not resumed from.
        if let BlobFile::Partial { path, bad, .. } = &self.file
            && bad.get()
        {
            let _ = fs::remove_file(path);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let have = self.skip.saturating_sub(self.count).min(buf.len() as u64) as usize;
        let n = if have > 0 { have } else { self.file.file().write(buf)? };
        self.hasher.update(&buf[..n]);
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.file().flush()
    }
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// Checks the content written so far against `expected` (if given); returns its digest.
    pub fn check(&self, expected: Option<&Descriptor>) -> Result<Digest> {
        let actual = self.hasher.clone().finish();
        match expected {
            Some(want) if want.digest != actual || want.size != self.count => Err(self.poisoned(Mismatch {
                what: format!("blob {}", want.digest),
                expected: want.digest.clone(),
                expected_size: want.size,
                actual,
                actual_size: self.count,
            })),
            _ => Ok(actual),
        }
    }

    /// Marks a partial download as wrong (it is deleted, not resumed from).
    fn poisoned(&self, m: Mismatch) -> StoreError {
        self.poison();
        StoreError::Mismatch(m)
    }

    /// Marks a partial download as wrong: dropping the writer deletes it.
    pub fn poison(&self) {
        if let BlobFile::Partial { bad, .. } = &self.file {
            bad.set(true);
        }
    }

    /// Checks the content against `expected` (if given), syncs it and renames it into `blobs/`.
    /// On a mismatch the temporary file is removed and nothing enters the store.
    pub fn commit(self, store: &WriteLock<'_>, expected: Option<&Descriptor>) -> Result<Digest> {
        let actual = self.check(expected)?;
        let dest = store.store.blob_path(&actual);
        let tmp_path = self.file.path().to_path_buf();
        self.file.file().sync_all().map_err(io_err(&tmp_path))?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::rename(&tmp_path, &dest).map_err(io_err(&dest))?;
        sync_dir(dest.parent().unwrap_or(&store.store.root))?;
        Ok(actual)
    }
}

impl WriteLock<'_> {
    /// The store.
    pub fn store(&self) -> &Store {
        self.store
    }

    fn init_layout(&self) -> Result<()> {
        let root = &self.store.root;
        if !root.join("oci-layout").exists() {
            let layout = OciLayout { image_layout_version: "1.0.0".into() };
            write_atomic(&root.join("oci-layout"), &to_json(&layout)?)?;
        }
        if !self.store.index_path().exists() {
            self.save_index(&ImageIndex { schema_version: 2, ..Default::default() })?;
        }
        Ok(())
    }

    /// Empties `tmp/` and drops the download locks (only writers use them, and this one holds
    /// the lock exclusively); partial downloads stay, to be resumed.
    fn clean_tmp(&self) -> Result<()> {
        let tmp = self.store.tmp_dir();
        for entry in fs::read_dir(&tmp).map_err(io_err(&tmp))? {
            let path = entry.map_err(io_err(&tmp))?.path();
            remove_path(&path)?;
        }
        let partial = self.store.root.join(PARTIAL);
        for entry in fs::read_dir(&partial).into_iter().flatten().flatten() {
            if entry.file_name().to_string_lossy().ends_with(".lock") {
                remove_path(&entry.path())?;
            }
        }
        Ok(())
    }

    fn exclusive(&self, what: &'static str) -> Result<()> {
        if self.exclusive { Ok(()) } else { Err(StoreError::NotExclusive(what)) }
    }

    /// Replaces `index.json`.
    pub fn save_index(&self, index: &ImageIndex) -> Result<()> {
        self.exclusive("replacing index.json")?;
        write_atomic(&self.store.index_path(), &to_json(index)?)
    }

    /// Starts writing a blob.
    pub fn blob_writer(&self, algorithm: Algorithm) -> Result<BlobWriter> {
        let tmp = self.store.tmp_dir();
        let file = tempfile::Builder::new()
            .prefix("blob-")
            .permissions(layout_file_mode())
            .tempfile_in(&tmp)
            .map_err(io_err(&tmp))?;
        Ok(BlobWriter { file: BlobFile::Temp(file), hasher: Hasher::new(algorithm), count: 0, skip: 0 })
    }

    /// Starts or resumes the download of blob `digest` under `partial/` (kept when the download
    /// fails, for the next try or run). Returns the writer and how many bytes the file already
    /// holds: they must be written through it again first (they are hashed, not rewritten).
    pub fn partial_blob(&self, digest: &Digest) -> Result<(BlobWriter, u64)> {
        self.open_partial(digest, false)
    }

    /// Starts the download of blob `digest` again from nothing (what `partial/` held is dropped:
    /// too long, or the registry sent the whole blob instead of the rest).
    pub fn restart_partial(&self, digest: &Digest) -> Result<BlobWriter> {
        Ok(self.open_partial(digest, true)?.0)
    }

    fn open_partial(&self, digest: &Digest, truncate: bool) -> Result<(BlobWriter, u64)> {
        let path = self.partial_file(digest)?;
        let file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .read(true)
            .truncate(truncate)
            .open(&path)
            .map_err(io_err(&path))?;
        let have = file.metadata().map_err(io_err(&path))?.len();
        let file = BlobFile::Partial { file, path, bad: std::cell::Cell::new(false) };
        Ok((BlobWriter { file, hasher: Hasher::new(digest.algorithm()), count: 0, skip: have }, have))
    }

    /// Takes the download lock of blob `digest` (`partial/ALG-HEX.lock`, `flock`): one process
    /// downloads and unpacks a blob at a time; another pull of it waits, then finds it in place.
    /// Held until the returned file is dropped.
    pub fn download_lock(&self, digest: &Digest) -> Result<File> {
        let path = self.partial_file(digest)?.with_extension("lock");
        let file =
            fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io_err(&path))?;
        flock::lock(file.as_fd(), LockKind::Exclusive).map_err(|e| StoreError::Io { path, source: e.into() })?;
        Ok(file)
    }

    /// [`Store::partial_path`], its dir made if needed.
    fn partial_file(&self, digest: &Digest) -> Result<PathBuf> {
        let dir = self.store.root.join(PARTIAL);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        Ok(self.store.partial_path(digest))
    }

    /// Stores `bytes` as a blob, checked against `expected` when given.
    pub fn put_blob(&self, bytes: &[u8], expected: Option<&Descriptor>) -> Result<Digest> {
        let alg = expected.map(|d| d.digest.algorithm()).unwrap_or(Algorithm::Sha256);
        let mut w = self.blob_writer(alg)?;
        let tmp = w.file.path().to_path_buf();
        w.write_all(bytes).map_err(io_err(&tmp))?;
        w.commit(self, expected)
    }

    /// A fresh directory under `tmp/` to unpack a layer into.
    pub fn layer_tmp(&self) -> Result<tempfile::TempDir> {
        let tmp = self.store.tmp_dir();
        tempfile::Builder::new().prefix("layer-").tempdir_in(&tmp).map_err(io_err(&tmp))
    }

    /// Syncs an unpacked layer and renames it into `layers/` under its diff_id.
    pub fn commit_layer(&self, dir: tempfile::TempDir, diff_id: &Digest, meta: &LayerMeta) -> Result<()> {
        write_atomic(&self.store.layer_meta_path(diff_id.hex()), &to_json(meta)?)?;
        let dest = self.store.layer_path(diff_id);
        let src = dir.path().to_path_buf();
        let d = File::open(&src).map_err(io_err(&src))?;
        flock::sync_filesystem(d.as_fd()).map_err(|e| StoreError::Io { path: src.clone(), source: e.into() })?;
        match fs::rename(&src, &dest) {
            // Another content writer put the same layer in place first (`dir` goes).
            Err(_) if self.store.has_layer(diff_id) => return Ok(()),
            r => r.map_err(io_err(&dest))?,
        }
        let _ = dir.keep();
        sync_dir(&self.store.root.join("layers"))
    }

    /// Writes a mount record.
    pub fn save_mount(&self, rec: &MountRecord) -> Result<PathBuf> {
        self.exclusive("recording a mount")?;
        let dir = self.store.mount_dir(&rec.mountpoint);
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        write_atomic(&dir.join("mount.json"), &to_json(rec)?)?;
        Ok(dir)
    }

    /// Removes a mount record and its scratch dirs.
    pub fn remove_mount(&self, dir: &Path) -> Result<()> {
        self.exclusive("removing a mount record")?;
        remove_path(dir)
    }

    /// Removes the records (and scratch dirs) of image mounts that were made and are gone
    /// (unmounted by `strata umount`, `umount` or a reboot). A record still being set up stays.
    pub fn drop_stale_mounts(&self) -> Result<()> {
        for (dir, rec) in self.store.mounts()? {
            if rec.mounted && !crate::sys::mount::is_mount_point(&rec.mountpoint) {
                self.remove_mount(&dir)?;
            }
        }
        Ok(())
    }

    /// Deletes every blob and layer that no image in `index.json` nor any mount record reaches,
    /// and returns what went. Stops without deleting anything if a live image cannot be read.
    pub fn gc(&self) -> Result<GcReport> {
        self.exclusive("removing what no image reaches")?;
        let live = self.store.live_set()?;
        let mut report = GcReport::default();
        let sha = self.store.root.join("blobs/sha256");
        for (path, name) in list_dir(&sha)? {
            if Digest::parse(&format!("sha256:{name}")).map(|d| !live.blobs.contains(&d)).unwrap_or(true) {
                report.bytes += fs::symlink_metadata(&path).map(|m| m.len()).unwrap_or(0);
                remove_path(&path)?;
                report.blobs.push(name);
            }
        }
        let layers = self.store.root.join("layers");
        let mut dead: Vec<(PathBuf, String)> = list_dir(&layers)?
            .into_iter()
            .filter(|(_, n)| !live.layers.contains(n.trim_end_matches(".json")))
            .collect();
        // Dirs before their metadata, which says how much they held.
        dead.sort_by_key(|(_, n)| n.ends_with(".json"));
        for (path, name) in dead {
            if name.ends_with(".json") {
                remove_path(&path)?;
                continue;
            }
            report.bytes += self.store.layer_meta_by_hex(&name).size;
            self.remove_layer_dir(&path)?;
            report.layers.push(name);
        }
        Ok(report)
    }

    /// Removes the unpacked layer `hex` (its dir, then its metadata), whichever parts are there.
    pub fn remove_layer(&self, hex: &str) -> Result<()> {
        self.exclusive("removing a layer")?;
        let dir = self.store.root.join("layers").join(hex);
        if dir.exists() {
            self.remove_layer_dir(&dir)?;
        }
        remove_path(&self.store.layer_meta_path(hex))
    }

    /// Moves a layer dir out of `layers/` in one rename, then deletes it: a crash midway leaves
    /// garbage in `tmp/` (emptied by the next writer), never a half-deleted layer.
    fn remove_layer_dir(&self, path: &Path) -> Result<()> {
        let tmp = self.store.tmp_dir();
        let doomed = tempfile::Builder::new().prefix("dead-").tempdir_in(&tmp).map_err(io_err(&tmp))?;
        let dest = doomed.path().join("layer");
        fs::rename(path, &dest).map_err(io_err(path))?;
        remove_path(doomed.path())
    }
}

#[derive(Default)]
struct LiveSet {
    blobs: BTreeSet<Digest>,
    layers: BTreeSet<String>,
}

/// What [`WriteLock::gc`] deleted.
#[derive(Debug, Default)]
pub struct GcReport {
    /// Blob hex digests.
    pub blobs: Vec<String>,
    /// Layer dir names (diff_id hex).
    pub layers: Vec<String>,
    /// Bytes freed (blobs, and the content of layers).
    pub bytes: u64,
}

/// Sets `name` on the image `manifest`; an image that loses its last name stays, untagged.
pub fn set_name(index: &mut ImageIndex, name: &Name, manifest: &Descriptor) {
    let name = name.to_string();
    let previous = take_name(index, &name);
    index.manifests.retain(|d| !(d.digest == manifest.digest && d.ref_name().is_none()));
    let mut desc = manifest.clone();
    desc.annotations.clear();
    desc.platform = None;
    desc.annotations.insert(ANNOTATION_REF_NAME.into(), name);
    index.manifests.push(desc);
    if let Some(old) = previous
        && old.digest != manifest.digest
    {
        keep_untagged(index, old);
    }
}

/// Adds `manifest` as an untagged image unless it is already in the index.
pub fn add_untagged(index: &mut ImageIndex, manifest: &Descriptor) {
    let mut desc = manifest.clone();
    desc.annotations.clear();
    desc.platform = None;
    keep_untagged(index, desc);
}

/// Removes the descriptor named `name` and returns it.
fn take_name(index: &mut ImageIndex, name: &str) -> Option<Descriptor> {
    let pos = index.manifests.iter().position(|d| d.ref_name() == Some(name))?;
    Some(index.manifests.remove(pos))
}

/// Removes `name` from the index; the image it named stays as untagged if that was its last name.
/// Returns the descriptor it pointed to, and whether the image still has another name.
pub fn remove_name(index: &mut ImageIndex, name: &str) -> Option<(Descriptor, bool)> {
    let desc = take_name(index, name)?;
    let still_named = index.manifests.iter().any(|d| d.digest == desc.digest);
    Some((desc, still_named))
}

/// Removes every entry of the image `manifest` (names and untagged).
pub fn remove_image(index: &mut ImageIndex, manifest: &Digest) {
    index.manifests.retain(|d| &d.digest != manifest);
}

fn keep_untagged(index: &mut ImageIndex, mut desc: Descriptor) {
    if index.manifests.iter().any(|d| d.digest == desc.digest) {
        return;
    }
    desc.annotations.clear();
    index.manifests.push(desc);
}

fn list_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        out.push((entry.path(), entry.file_name().to_string_lossy().into_owned()));
    }
    Ok(out)
}

fn to_json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|source| StoreError::Json { what: "serialising".into(), source })
}

/// After a failed import or pull, removes what it had stored that no image reaches, so
/// nothing of it remains.
pub fn undo_on_error<T, E>(lock: &WriteLock<'_>, r: std::result::Result<T, E>) -> std::result::Result<T, E> {
    if r.is_err()
        && let Err(e) = lock.gc()
    {
        log::warn!("cleaning up after the failed import: {e}");
    }
    r
}

/// Writes `path` atomically: a temp file beside it, fsync, rename, fsync of the directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".tmp-")
        .permissions(layout_file_mode())
        .tempfile_in(dir)
        .map_err(io_err(dir))?;
    tmp.write_all(bytes).map_err(io_err(path))?;
    tmp.as_file().sync_all().map_err(io_err(path))?;
    tmp.persist(path).map_err(|e| StoreError::Io { path: path.to_path_buf(), source: e.error })?;
    sync_dir(dir)
}

/// Files of the layout are readable by all, as other tools write them (`skopeo copy oci:...`).
fn layout_file_mode() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt;
    fs::Permissions::from_mode(0o644)
}

fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_err(dir))
}

/// Removes a file or a whole tree of the store (making read-only dirs writable first if needed).
pub fn remove_path(path: &Path) -> Result<()> {
    let md = match fs::symlink_metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(StoreError::Io { path: path.to_path_buf(), source: e }),
    };
    if !md.is_dir() {
        return fs::remove_file(path).map_err(io_err(path));
    }
    if fs::remove_dir_all(path).is_ok() {
        return Ok(());
    }
    make_dirs_writable(path);
    fs::remove_dir_all(path).map_err(io_err(path))
}

fn make_dirs_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt;
    let _ = fs::set_permissions(dir, fs::Permissions::from_mode(0o700));
    let Ok(entries) = fs::read_dir(dir) else { return };
    for entry in entries.flatten() {
        if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            make_dirs_writable(&entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::spec::MediaType;

    fn desc(n: u8) -> Descriptor {
        Descriptor::new(MediaType::OciManifest, Digest::sha256_of(&[n]), 1)
    }

    #[test]
    fn names_move_and_leave_untagged_images() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let mut idx = store.index().unwrap();
        let a = Name::parse("a").unwrap();
        set_name(&mut idx, &a, &desc(1));
        set_name(&mut idx, &Name::parse("b").unwrap(), &desc(1));
        assert_eq!(idx.manifests.len(), 2);
        set_name(&mut idx, &a, &desc(2));
        assert_eq!(idx.manifests.len(), 2);
        set_name(&mut idx, &Name::parse("b").unwrap(), &desc(2));
        assert_eq!(idx.manifests.len(), 3, "image 1 lost its last name and stays untagged");
        set_name(&mut idx, &Name::parse("b").unwrap(), &desc(1));
        let (d, still) = remove_name(&mut idx, "b:latest").unwrap();
        assert_eq!(d.digest, desc(1).digest);
        assert!(!still);
        add_untagged(&mut idx, &desc(1));
        assert_eq!(idx.manifests.iter().filter(|d| d.ref_name().is_none()).count(), 1);
        set_name(&mut idx, &Name::parse("c").unwrap(), &desc(1));
        assert!(idx.manifests.iter().all(|d| d.ref_name().is_some()));
    }

    #[test]
    fn blobs_are_checked_before_they_enter_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let lock = store.write().unwrap();
        let good = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(b"{}"), 2);
        let d = lock.put_blob(b"{}", Some(&good)).unwrap();
        assert_eq!(store.read_blob(&d).unwrap(), b"{}");
        let bad = Descriptor::new(MediaType::OciConfig, Digest::sha256_of(b"[]"), 2);
        let e = lock.put_blob(b"{}", Some(&bad)).unwrap_err();
        assert!(e.to_string().contains(&bad.digest.to_string()), "{e}");
        assert!(!store.has_blob(&bad.digest));
        assert_eq!(fs::read_dir(store.tmp_dir()).unwrap().count(), 0);
        let report = lock.gc().unwrap();
        assert_eq!(report.blobs, vec![d.hex().to_string()]);
    }
}
