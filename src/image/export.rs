//! Images out of the store (`strata save`): an OCI image layout directory, the same layout as a
//! tar (oci-archive), or a `docker save` archive — what `docker load`, `podman load`, `skopeo`
//! and `umoci` read, and what [`super::import`] reads back.
//!
//! - OCI (`image-layout.md`): `oci-layout`, `blobs/sha256/*` copied as stored (manifests and
//!   configs are never serialised again), `index.json` with one entry per name
//!   (`org.opencontainers.image.ref.name` = the name as Strata shows it, and
//!   `io.containerd.image.name` = its full docker form, which Docker 25+ reads).
//! - docker-archive (the form skopeo writes): `<config hex>.json`, each layer as a plain tar
//!   `<diff_id hex>.tar` (decompressed while it is copied, and checked against its diff_id),
//!   `manifest.json` last.
//!
//! The output appears whole or not at all: it is built beside its destination under a
//! temporary name and renamed into place.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::digest::{Algorithm, Digest, HashingReader};
use super::progress::{Progress, ProgressReader};
use super::reference::Name;
use super::source::sniff;
use super::spec::{ANNOTATION_CONTAINERD_NAME, ANNOTATION_REF_NAME, Descriptor, ImageIndex, MediaType};
use super::store::{Image, Store};

/// What went wrong saving; each names the file or blob at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Writing the output, or reading a blob of the store.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The output exists already (directories are not merged into).
    #[error("{0}: already exists")]
    Exists(PathBuf),
    /// A layer whose content is not what the image config says.
    #[error("layer {layer}: uncompressed content has digest {actual}, but the image config says {expected}")]
    DiffId {
        /// The layer blob.
        layer: Digest,
        /// The config's diff_id.
        expected: Digest,
        /// What the content hashes to.
        actual: Digest,
    },
    /// Manifest and config disagree.
    #[error("image {0}: its manifest and config list different numbers of layers")]
    Inconsistent(Digest),
    /// A layer pulled lazily: its blob stayed in the registry.
    #[error("layer {0} was pulled lazily and its blob is not in the store: pull the image without --lazy first")]
    Lazy(Digest),
}

type Result<T> = std::result::Result<T, ExportError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> ExportError + '_ {
    move |source| ExportError::Io { path: path.to_path_buf(), source }
}

/// The output formats of `strata save`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A `docker save` archive (plain layer tars and `manifest.json`).
    #[default]
    DockerArchive,
    /// An OCI image layout in a tar.
    OciArchive,
    /// An OCI image layout directory.
    OciDir,
}

/// One image to save, with the names to give it (none: untagged).
pub struct Saved<'a> {
    /// The image.
    pub image: &'a Image,
    /// Its names in the output.
    pub names: Vec<Name>,
}

/// Writes `images` of `store` to `out` in `format`.
pub fn save(store: &Store, images: &[Saved<'_>], format: Format, out: &Path, progress: Progress) -> Result<()> {
    for s in images {
        for (blob, diff_id) in s.image.manifest.layers.iter().zip(&s.image.config.rootfs.diff_ids) {
            if !store.has_blob(&blob.digest) && store.is_lazy_layer(diff_id) {
                return Err(ExportError::Lazy(blob.digest.clone()));
            }
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if format == Format::OciDir {
        if out.exists() {
            return Err(ExportError::Exists(out.to_path_buf()));
        }
        let tmp = tempfile::Builder::new().prefix(".strata-save-").tempdir_in(parent).map_err(io_err(parent))?;
        let mut sink = Sink::Dir(tmp.path().to_path_buf());
        Writer { store, sink: &mut sink, progress }.oci(images)?;
        fs::set_permissions(tmp.path(), fs::Permissions::from_mode(0o755)).map_err(io_err(tmp.path()))?;
        fs::rename(tmp.path(), out).map_err(io_err(out))?;
        let _ = tmp.keep();
        return Ok(());
    }
    let tmp = tempfile::Builder::new().prefix(".strata-save-").tempfile_in(parent).map_err(io_err(parent))?;
    let mut sink = Sink::Tar(tar::Builder::new(tmp.reopen().map_err(io_err(tmp.path()))?));
    let mut w = Writer { store, sink: &mut sink, progress };
    match format {
        Format::DockerArchive => w.docker(images, parent)?,
        _ => w.oci(images)?,
    }
    if let Sink::Tar(b) = sink {
        let file = b.into_inner().map_err(io_err(out))?;
        file.set_permissions(fs::Permissions::from_mode(0o644)).map_err(io_err(out))?;
        file.sync_all().map_err(io_err(out))?;
    }
    tmp.persist(out).map_err(|e| ExportError::Io { path: out.to_path_buf(), source: e.error })?;
    Ok(())
}

/// Where the files of the output go.
enum Sink {
    /// Files under a directory.
    Dir(PathBuf),
    /// Members of a tar.
    Tar(tar::Builder<File>),
}

impl Sink {
    /// Adds the file `name` of `size` bytes read from `data`.
    fn file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        match self {
            Sink::Dir(root) => {
                let path = root.join(name);
                if let Some(p) = path.parent() {
                    fs::create_dir_all(p).map_err(io_err(p))?;
                }
                let mut f = File::create(&path).map_err(io_err(&path))?;
                io::copy(data, &mut f).map_err(io_err(&path))?;
                f.sync_all().map_err(io_err(&path))
            }
            Sink::Tar(b) => {
                let mut h = tar::Header::new_ustar();
                h.set_mode(0o644);
                h.set_size(size);
                h.set_mtime(0);
                h.set_entry_type(tar::EntryType::Regular);
                b.append_data(&mut h, name, data).map_err(io_err(Path::new(name)))
            }
        }
    }

    /// Adds a small file.
    fn bytes(&mut self, name: &str, bytes: &[u8]) -> Result<()> {
        self.file(name, bytes.len() as u64, &mut &bytes[..])
    }
}

struct Writer<'a> {
    store: &'a Store,
    sink: &'a mut Sink,
    progress: Progress,
}

impl Writer<'_> {
    /// An OCI layout: every blob once, then `index.json`.
    fn oci(&mut self, images: &[Saved<'_>]) -> Result<()> {
        self.sink.bytes("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let mut written = BTreeSet::new();
        let mut index = ImageIndex { schema_version: 2, media_type: Some(MediaType::OciIndex), ..Default::default() };
        for s in images {
            let m = &s.image.manifest;
            let blobs = m.layers.iter().map(|l| &l.digest).chain([&m.config.digest, &s.image.descriptor.digest]);
            for d in blobs {
                if written.insert(d.clone()) {
                    self.blob(d)?;
                }
            }
            index.manifests.extend(index_entries(s));
        }
        let raw = serde_json::to_vec(&index).map_err(|e| io_err(Path::new("index.json"))(e.into()))?;
        self.sink.bytes("index.json", &raw)
    }

    /// Copies one blob of the store, with a progress line for the big ones.
    fn blob(&mut self, d: &Digest) -> Result<()> {
        let path = self.store.blob_path(d);
        let file = File::open(&path).map_err(io_err(&path))?;
        let size = file.metadata().map_err(io_err(&path))?.len();
        let name = format!("blobs/{}/{}", d.algorithm().name(), d.hex());
        let bar = self.progress.task(d.short(), size, "Copying");
        let mut reader = ProgressReader::new(file, &bar);
        self.sink.file(&name, size, &mut reader)?;
        bar.done("Copied");
        Ok(())
    }

    /// A docker-save archive: configs and plain layer tars, then `manifest.json`.
    fn docker(&mut self, images: &[Saved<'_>], scratch: &Path) -> Result<()> {
        let mut written = BTreeSet::new();
        let mut manifest = Vec::new();
        for s in images {
            let config_name = format!("{}.json", s.image.id().hex());
            if written.insert(config_name.clone()) {
                self.sink.bytes(&config_name, &s.image.config_raw)?;
            }
            let diff_ids = &s.image.config.rootfs.diff_ids;
            if diff_ids.len() != s.image.manifest.layers.len() {
                return Err(ExportError::Inconsistent(s.image.id().clone()));
            }
            let mut layers = Vec::new();
            for (blob, diff_id) in s.image.manifest.layers.iter().zip(diff_ids) {
                let name = format!("{}.tar", diff_id.hex());
                if written.insert(name.clone()) {
                    self.plain_layer(&name, blob, diff_id, scratch)?;
                }
                layers.push(name);
            }
            let tags: Option<Vec<String>> =
                (!s.names.is_empty()).then(|| s.names.iter().map(|n| n.to_string()).collect());
            manifest.push(json!({"Config": config_name, "RepoTags": tags, "Layers": layers}));
        }
        let raw = serde_json::to_vec(&manifest).map_err(|e| io_err(Path::new("manifest.json"))(e.into()))?;
        self.sink.bytes("manifest.json", &raw)
    }

    /// A layer as a plain tar: decompressed into a scratch file (a tar member's size comes
    /// first), checked against its diff_id, then added.
    fn plain_layer(&mut self, name: &str, blob: &Descriptor, diff_id: &Digest, scratch: &Path) -> Result<()> {
        let path = self.store.blob_path(&blob.digest);
        let file = File::open(&path).map_err(io_err(&path))?;
        let bar = self.progress.task(blob.digest.short(), blob.size, "Copying");
        let (tar, _) = sniff(BufReader::new(ProgressReader::new(file, &bar))).map_err(io_err(&path))?;
        let mut hashing = HashingReader::new(tar, Algorithm::Sha256);
        let mut tmp = tempfile::tempfile_in(scratch).map_err(io_err(scratch))?;
        io::copy(&mut hashing, &mut tmp).map_err(io_err(&path))?;
        let (actual, size) = hashing.finish().map_err(io_err(&path))?;
        if &actual != diff_id {
            return Err(ExportError::DiffId { layer: blob.digest.clone(), expected: diff_id.clone(), actual });
        }
        tmp.rewind().map_err(io_err(scratch))?;
        self.sink.file(name, size, &mut tmp)?;
        bar.done("Copied");
        Ok(())
    }
}

/// The `index.json` entries of one saved image: one per name, or one without a name.
fn index_entries(s: &Saved<'_>) -> Vec<Descriptor> {
    let mut base = s.image.descriptor.clone();
    base.annotations.clear();
    base.platform = None;
    if s.names.is_empty() {
        return vec![base];
    }
    s.names
        .iter()
        .map(|n| {
            let mut d = base.clone();
            d.annotations.insert(ANNOTATION_REF_NAME.into(), n.to_string());
            d.annotations.insert(ANNOTATION_CONTAINERD_NAME.into(), docker_full_name(n));
            d
        })
        .collect()
}

/// The name as Docker spells it in full: `docker.io/library/busybox:latest`.
pub fn docker_full_name(n: &Name) -> String {
    let repo = n.repository();
    let first = repo.split('/').next().unwrap_or_default();
    let has_host = repo.contains('/') && (first.contains('.') || first.contains(':') || first == "localhost");
    match (has_host, repo.contains('/')) {
        (true, _) => format!("{repo}:{}", n.tag()),
        (false, true) => format!("docker.io/{repo}:{}", n.tag()),
        (false, false) => format!("docker.io/library/{repo}:{}", n.tag()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_names_read_like_docker() {
        let full = |s: &str| docker_full_name(&Name::parse(s).unwrap());
        assert_eq!(full("busybox"), "docker.io/library/busybox:latest");
        assert_eq!(full("me/app:1"), "docker.io/me/app:1");
        assert_eq!(full("localhost/fx/multi"), "localhost/fx/multi:latest");
        assert_eq!(full("host:5000/a/b:v1"), "host:5000/a/b:v1");
    }
}
