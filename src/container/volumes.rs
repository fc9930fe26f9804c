//! The store's volumes (docker's `local` driver): directories containers mount, kept beside the
//! images and containers and outside any union mount, so they outlive every container.
//!
//! ```text
//! ROOT/volumes/.lock              shared while a volume is made, and while a container naming
//!                                 volumes is made (with the volumes it needs); exclusive to
//!                                 remove one: a volume goes only when no container record names it
//! ROOT/volumes/.tmp-*             a volume being made, renamed to its name once complete
//! ROOT/volumes/NAME/volume.json   its metadata (written atomically: temp, fsync, rename)
//! ROOT/volumes/NAME/_data/        what containers mount (its Mountpoint); locked (flock) while
//!                                 it is filled from an image (see [`super::prefill`])
//! ```
//!
//! Names are docker's, `[a-zA-Z0-9][a-zA-Z0-9_.-]+`; a volume made without one gets 64 random
//! hex characters. An anonymous volume (`-v /path`, an image's `VOLUME`) is removed with its
//! container by `rm -v` and `run --rm`, and by `volume prune` without `-a`.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::mounts::{self, Mount, Source};
use super::namespaces;
use super::record::{self, Container, RecordError};
use crate::image::store;
use crate::sys::lock::{self as flock, LockKind};

/// The one driver there is.
pub const DRIVER: &str = "local";

/// The options the `local` driver knows (docker's: what to mount instead of `_data`).
const OPTION_KEYS: [&str; 3] = ["type", "device", "o"];

/// What went wrong with a volume; each names the volume or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// No volume has this name.
    #[error("No such volume: {0}")]
    NoSuchVolume(String),
    /// Containers name the volume.
    #[error("remove {name}: volume is in use - [{}]", ids.join(", "))]
    InUse {
        /// The volume.
        name: String,
        /// The ids of the containers that use it.
        ids: Vec<String>,
    },
    /// The name has characters a name may not have.
    #[error(
        "create {0}: {0:?} includes invalid characters for a local volume name, only \"[a-zA-Z0-9][a-zA-Z0-9_.-]\" are allowed"
    )]
    BadName(String),
    /// Another driver was asked for.
    #[error("create {name}: volume driver {driver:?} is not supported (only local)")]
    Driver {
        /// The volume.
        name: String,
        /// The driver asked for.
        driver: String,
    },
    /// Driver options that cannot be used.
    #[error("create {name}: {reason}")]
    BadOption {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
    /// A file of the volume store could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `volume.json` does not parse.
    #[error("{path}: invalid volume record: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// The directory could not be removed.
    #[error("remove {name}: {reason}")]
    Remove {
        /// The volume.
        name: String,
        /// Why.
        reason: String,
    },
    /// The container records could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
}

/// Result of volume operations.
pub type Result<T> = std::result::Result<T, VolumeError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> VolumeError + '_ {
    move |source| VolumeError::Io { path: path.to_path_buf(), source }
}

fn store_err(path: &Path) -> impl FnOnce(store::StoreError) -> VolumeError + '_ {
    move |e| VolumeError::Io { path: path.to_path_buf(), source: io::Error::other(e) }
}

/// One volume, as `volume.json` holds it (docker's `volume inspect` fields but the Mountpoint,
/// which is where the store is).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct Volume {
    /// Its name.
    pub name: String,
    /// Always `local`.
    pub driver: String,
    /// `--label K=V`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `--opt K=V`.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Always `local`.
    pub scope: String,
    /// When it was made (RFC 3339, seconds).
    pub created_at: String,
    /// It was filled from an image once (or found not empty then): never again.
    #[serde(default)]
    pub filled: bool,
    /// Made for one container (`-v /path`, an image's `VOLUME`).
    #[serde(default)]
    pub anonymous: bool,
}

/// What a new volume is made with.
#[derive(Clone, Debug, Default)]
pub struct New {
    /// The driver asked for (`None`: local).
    pub driver: Option<String>,
    /// Labels.
    pub labels: BTreeMap<String, String>,
    /// Driver options.
    pub options: BTreeMap<String, String>,
    /// Made for one container.
    pub anonymous: bool,
}

/// Whether `name` may name a volume: `[a-zA-Z0-9][a-zA-Z0-9_.-]+`.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    name.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// `ROOT/volumes`.
pub fn volumes_dir(root: &Path) -> PathBuf {
    root.join("volumes")
}

/// `ROOT/volumes/NAME/_data`: what a container mounts.
pub fn data_dir(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("_data")
}

fn meta_path(root: &Path, name: &str) -> PathBuf {
    volumes_dir(root).join(name).join("volume.json")
}

/// The volume store's lock, held until dropped.
pub struct VolumesLock {
    _file: File,
}

/// Takes the volume store's lock: [`LockKind::Shared`] to make volumes and containers that name
/// them, [`LockKind::Exclusive`] to remove volumes.
pub fn lock(root: &Path, kind: LockKind) -> Result<VolumesLock> {
    let dir = volumes_dir(root);
    if !dir.exists() {
        std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err(&dir))?;
    }
    let path = dir.join(".lock");
    let file = flock::lock_file(&path, kind).map_err(io_err(&path))?;
    if kind == LockKind::Exclusive {
        clean_tmp(&dir);
    }
    Ok(VolumesLock { _file: file })
}

/// Removes what makers that were interrupted left (`.tmp-*`); only under the exclusive lock.
fn clean_tmp(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        if e.file_name().to_string_lossy().starts_with(".tmp-") {
            let _ = store::remove_path(&e.path());
        }
    }
}

impl Volume {
    /// Writes `volume.json` atomically.
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = meta_path(root, &self.name);
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|source| VolumeError::Json { path: path.clone(), source })?;
        store::write_atomic(&path, &bytes).map_err(store_err(&path))
    }
}

/// Reads the volume `name`.
pub fn load(root: &Path, name: &str) -> Result<Volume> {
    let path = meta_path(root, name);
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(VolumeError::NoSuchVolume(name.to_string())),
        Err(e) => return Err(VolumeError::Io { path, source: e }),
    };
    serde_json::from_slice(&bytes).map_err(|source| VolumeError::Json { path, source })
}

/// Every volume, by name. Directories without metadata (being made or removed) are skipped.
pub fn list(root: &Path) -> Result<Vec<Volume>> {
    let dir = volumes_dir(root);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(VolumeError::Io { path: dir, source: e }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let name = entry.map_err(io_err(&dir))?.file_name().to_string_lossy().into_owned();
        if !valid_name(&name) {
            continue;
        }
        match load(root, &name) {
            Ok(v) => out.push(v),
            Err(VolumeError::NoSuchVolume(_)) => {}
            Err(e) => return Err(e),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

/// Makes the volume `name` (a random name if `None`), or gives the one there is. The caller
/// holds [`lock`] (shared is enough: a volume is built under a temp name and renamed into place).
pub fn create(root: &Path, name: Option<&str>, new: &New) -> Result<Volume> {
    let name = match name {
        Some(n) => n.to_string(),
        None => record::new_id().map_err(io_err(Path::new("/dev/urandom")))?,
    };
    if !valid_name(&name) {
        return Err(VolumeError::BadName(name));
    }
    if let Some(driver) = new.driver.as_deref().filter(|d| *d != DRIVER) {
        return Err(VolumeError::Driver { name, driver: driver.to_string() });
    }
    check_options(&new.options).map_err(|reason| VolumeError::BadOption { name: name.clone(), reason })?;
    match load(root, &name) {
        Err(VolumeError::NoSuchVolume(_)) => {}
        found => return found,
    }
    let v = Volume {
        name: name.clone(),
        driver: DRIVER.into(),
        labels: new.labels.clone(),
        options: new.options.clone(),
        scope: DRIVER.into(),
        created_at: humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string(),
        filled: false,
        anonymous: new.anonymous,
    };
    let dir = volumes_dir(root);
    let tmp = tempfile::Builder::new().prefix(".tmp-").tempdir_in(&dir).map_err(io_err(&dir))?;
    let data = tmp.path().join("_data");
    std::fs::create_dir(&data).map_err(io_err(&data))?;
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).map_err(io_err(tmp.path()))?;
    let meta = tmp.path().join("volume.json");
    let bytes = serde_json::to_vec_pretty(&v).map_err(|source| VolumeError::Json { path: meta.clone(), source })?;
    store::write_atomic(&meta, &bytes).map_err(store_err(&meta))?;
    let at = dir.join(&name);
    let flags = rustix::fs::RenameFlags::NOREPLACE;
    match rustix::fs::renameat_with(rustix::fs::CWD, tmp.path(), rustix::fs::CWD, &at, flags) {
        Ok(()) => {
            let _ = tmp.keep();
            File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err(&dir))?;
            Ok(v)
        }
        // Made by another at the same time.
        Err(rustix::io::Errno::EXIST) | Err(rustix::io::Errno::NOTEMPTY) => load(root, &name),
        Err(e) => Err(VolumeError::Io { path: at, source: e.into() }),
    }
}

/// The `local` driver's options, as docker takes them: none (the volume is `_data`),
/// `type=tmpfs` with tmpfs options in `o` ([`mounts::tmpfs_options`]), or `type=none` with
/// `o=bind` and `device=/HOST/PATH`.
fn check_options(options: &BTreeMap<String, String>) -> std::result::Result<(), String> {
    if let Some(key) = options.keys().find(|k| !OPTION_KEYS.contains(&k.as_str())) {
        return Err(format!("invalid option key: {key:?} (type, device, o)"));
    }
    let o = options.get("o").map(String::as_str).unwrap_or("");
    let device = options.get("device").map(String::as_str).unwrap_or("");
    match options.get("type").map(String::as_str) {
        None if options.is_empty() => Ok(()),
        Some("tmpfs") => mounts::tmpfs_options(o).map(drop),
        Some("none") if o.split(',').any(|x| x == "bind") && device.starts_with('/') => Ok(()),
        _ => Err("the options may be type=tmpfs [o=OPTIONS], or type=none o=bind device=/PATH".into()),
    }
}

impl Volume {
    /// What a container mounts for the volume: its `_data`, or what its options name (a tmpfs,
    /// a host path); and whether the options make it read-only.
    pub fn source(&self, root: &Path) -> (Source, bool) {
        let o = self.options.get("o").map(String::as_str).unwrap_or("");
        match (self.options.get("type").map(String::as_str), self.options.get("device")) {
            (Some("tmpfs"), _) if let Ok(tmpfs) = mounts::tmpfs_options(o) => tmpfs,
            (Some("none"), Some(device)) => (Source::Bind { host: device.into() }, o.split(',').any(|x| x == "ro")),
            _ => (Source::Bind { host: data_dir(root, &self.name) }, false),
        }
    }
}

/// The containers (any state) whose mounts name the volume `name`.
pub fn users<'a>(containers: &'a [Container], name: &str) -> Vec<&'a Container> {
    containers.iter().filter(|c| c.config.mounts.iter().any(|m| m.volume() == Some(name))).collect()
}

/// Removes the volume `name` unless a container in `containers` (every record of the store)
/// uses it. The caller holds [`lock`] exclusively.
pub fn remove(root: &Path, name: &str, containers: &[Container]) -> Result<()> {
    load(root, name)?;
    let ids: Vec<String> = users(containers, name).iter().map(|c| c.id.clone()).collect();
    if !ids.is_empty() {
        return Err(VolumeError::InUse { name: name.to_string(), ids });
    }
    let dir = volumes_dir(root).join(name);
    // The metadata goes first: a crash midway leaves a directory `list` skips.
    let meta = meta_path(root, name);
    store::remove_path(&meta).map_err(store_err(&meta))?;
    let removed = store::remove_path(&dir);
    if removed.is_ok() || rustix::process::geteuid().is_root() {
        return removed.map_err(|e| VolumeError::Remove { name: name.to_string(), reason: e.to_string() });
    }
    // Rootless: what a container wrote with subordinate ids goes as root of a mapped namespace.
    namespaces::as_mapped_root(|| store::remove_path(&dir).map_err(|e| e.to_string()))
        .map_err(|e| VolumeError::Remove { name: name.to_string(), reason: e.to_string() })
}

/// Names each anonymous volume of `mounts` (a new id) and makes every volume they name that is
/// not there yet. The caller holds [`lock`] until the container's record is saved.
pub fn provide(root: &Path, mounts: &mut [Mount]) -> Result<()> {
    for m in mounts {
        let Source::Volume { name, anonymous, .. } = &mut m.source else { continue };
        let given = (!name.is_empty()).then_some(name.as_str());
        let v = create(root, given, &New { anonymous: *anonymous, ..Default::default() })?;
        *name = v.name;
    }
    Ok(())
}

/// Removes the anonymous volumes of the removed container `c` that no other container uses.
pub fn remove_anonymous(root: &Path, c: &Container) -> Result<()> {
    let names: Vec<&str> = c.config.mounts.iter().filter(|m| m.is_anonymous()).filter_map(Mount::volume).collect();
    if names.is_empty() {
        return Ok(());
    }
    let _lock = lock(root, LockKind::Exclusive)?;
    let containers = record::list(root)?;
    for name in names {
        match remove(root, name, &containers) {
            Ok(()) | Err(VolumeError::InUse { .. }) | Err(VolumeError::NoSuchVolume(_)) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// The bytes the files of the volume `name` hold (each file once, however many names it has),
/// as far as they can be read.
pub fn size(root: &Path, name: &str) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut dirs = vec![data_dir(root, name)];
    while let Some(dir) = dirs.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for e in entries.flatten() {
            let Ok(md) = std::fs::symlink_metadata(e.path()) else { continue };
            if md.is_dir() {
                dirs.push(e.path());
            } else if md.is_file() && seen.insert((md.dev(), md.ino())) {
                total += md.size();
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::config::RunConfig;
    use crate::container::mounts::parse_volume;
    use crate::container::record::State;

    fn container(id: &str, mounts: Vec<Mount>) -> Container {
        Container {
            id: id.into(),
            name: id.into(),
            image: "i".into(),
            image_id: String::new(),
            manifest: String::new(),
            created: record::now(),
            command: vec![],
            state: State::default(),
            config: RunConfig { mounts, ..Default::default() },
        }
    }

    #[test]
    fn names_are_docker_s() {
        for ok in ["ab", "a1", "my_vol.2-x", "0a"] {
            assert!(valid_name(ok), "{ok}");
        }
        for bad in ["a", "", "-a", ".a", "a b", "a/b", "é1"] {
            assert!(!valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn create_is_idempotent_and_checks_driver_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let _lock = lock(root, LockKind::Shared).unwrap();
        let labels = BTreeMap::from([("k".to_string(), "v".to_string())]);
        let v = create(root, Some("data"), &New { labels: labels.clone(), ..Default::default() }).unwrap();
        assert_eq!((v.driver.as_str(), v.scope.as_str(), &v.labels, v.filled), ("local", "local", &labels, false));
        assert!(data_dir(root, "data").is_dir());
        assert_eq!(create(root, Some("data"), &New::default()).unwrap(), v, "the one there is");
        let anon = create(root, None, &New::default()).unwrap();
        assert!(record::is_id(&anon.name));
        let nfs = New { driver: Some("nfs".into()), ..Default::default() };
        assert!(matches!(create(root, Some("x1"), &nfs), Err(VolumeError::Driver { .. })));
        let opts = |o: &[(&str, &str)]| New {
            options: o.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect(),
            ..Default::default()
        };
        for bad in [&[("bogus", "1")][..], &[("type", "nfs")], &[("type", "none"), ("o", "bind")], &[("o", "size=1m")]]
        {
            assert!(matches!(create(root, Some("x1"), &opts(bad)), Err(VolumeError::BadOption { .. })), "{bad:?}");
        }
        let t = create(root, Some("t1"), &opts(&[("type", "tmpfs"), ("o", "size=1m,ro")])).unwrap();
        let tmpfs = Source::Tmpfs { options: vec![("size".into(), "1m".into())], exec: false };
        assert_eq!(t.source(root), (tmpfs, true));
        let b = create(root, Some("b1"), &opts(&[("type", "none"), ("o", "bind"), ("device", "/srv")])).unwrap();
        assert_eq!(b.source(root), (Source::Bind { host: "/srv".into() }, false));
        assert_eq!(v.source(root), (Source::Bind { host: data_dir(root, "data") }, false));
        assert!(matches!(create(root, Some("a b"), &New::default()), Err(VolumeError::BadName(_))));
        let names: Vec<String> = list(root).unwrap().into_iter().map(|v| v.name).collect();
        let mut want = vec![anon.name.clone(), "data".to_string()];
        want.sort();
        want.extend(["b1".to_string(), "t1".to_string()]);
        want.sort();
        assert_eq!(names, want, "by name");
        assert!(!volumes_dir(root).read_dir().unwrap().flatten().any(|e| e.file_name() == "x1"));
    }

    #[test]
    fn a_volume_in_use_stays_and_anonymous_ones_go_with_their_container() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let mut mounts = vec![parse_volume("named:/a").unwrap(), parse_volume("/b").unwrap()];
        let shared = lock(root, LockKind::Shared).unwrap();
        provide(root, &mut mounts).unwrap();
        drop(shared);
        let anon = mounts[1].volume().unwrap().to_string();
        assert!(load(root, &anon).unwrap().anonymous && !load(root, "named").unwrap().anonymous);
        let (a, b) = (container(&"a".repeat(64), mounts.clone()), container(&"b".repeat(64), mounts[1..].to_vec()));
        let e = remove(root, "named", std::slice::from_ref(&a)).unwrap_err();
        assert_eq!(e.to_string(), format!("remove named: volume is in use - [{}]", a.id));
        // `b` shares the anonymous volume (--volumes-from): it stays while `b` is there.
        std::fs::create_dir_all(b.dir(root)).unwrap();
        b.save(root).unwrap();
        remove_anonymous(root, &a).unwrap();
        assert!(load(root, &anon).is_ok());
        std::fs::remove_dir_all(b.dir(root)).unwrap();
        std::fs::write(data_dir(root, &anon).join("f"), "12345").unwrap();
        assert_eq!(size(root, &anon), 5);
        remove_anonymous(root, &a).unwrap();
        assert!(matches!(load(root, &anon), Err(VolumeError::NoSuchVolume(_))));
        assert!(!volumes_dir(root).join(&anon).exists());
        assert!(load(root, "named").is_ok(), "named volumes are never removed with a container");
        remove(root, "named", &[]).unwrap();
        assert!(list(root).unwrap().is_empty());
    }
}
