//! The container record, `ROOT/containers/<id>/container.json`, and the directory around it.
//!
//! ```text
//! ROOT/containers/<id>/container.json   this record (written atomically: temp, fsync, rename)
//! ROOT/containers/<id>/upper/           the container's changes (overlay upper-dir format)
//! ROOT/containers/<id>/work/            the union's work dir
//! ROOT/containers/<id>/init/            a layer above the image's: empty mount targets
//!                                       (/etc/hosts, /etc/resolv.conf, /etc/hostname, /proc,
//!                                       /dev, /sys), so they never appear in upper/
//! ROOT/containers/<id>/merged/          where the rootfs is mounted while the container runs
//! ROOT/containers/<id>/hosts, resolv.conf, hostname   bind-mounted onto /etc/… inside
//! ROOT/containers/<id>/container.log    output of a detached container
//! ROOT/containers/<id>/lock             serialises read-modify-write of the record
//! ```
//!
//! `<id>` is 64 lowercase hex characters. Other commands (`explain`, `layers`, `commit`) read
//! records through [`find`] and [`list`]; a commit reads `upper/` alone.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::config::RunConfig;
use crate::sys::lock::{self as flock, LockKind};

/// What went wrong with a record; each names the container or path at fault.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// A file of the record could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `container.json` does not parse.
    #[error("{path}: invalid container record: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// No container has this name or id (prefix).
    #[error("No such container: {0}")]
    NoSuchContainer(String),
    /// An id prefix matches several containers.
    #[error("container reference {0:?} is ambiguous: it matches several containers")]
    Ambiguous(String),
}

/// Result of record operations.
pub type Result<T> = std::result::Result<T, RecordError>;

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> RecordError + '_ {
    move |source| RecordError::Io { path: path.to_path_buf(), source }
}

/// Where a container is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made, never started.
    #[default]
    Created,
    /// Its process runs.
    Running,
    /// Its process ended.
    Exited,
}

impl Status {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Exited => "exited",
        }
    }
}

/// The state of a container's process.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct State {
    /// created, running or exited.
    pub status: Status,
    /// The host pid of the container's PID 1 while it runs.
    pub pid: Option<i32>,
    /// How PID 1 ended: its exit code, or 128 + the signal that killed it.
    pub exit_code: Option<i32>,
    /// When it last started (RFC 3339).
    pub started: Option<String>,
    /// When it last ended (RFC 3339).
    pub finished: Option<String>,
    /// The start time of `pid` (clock ticks since boot): tells a reused pid from ours.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid_start: Option<u64>,
    /// The host pid of the monitor process that waits for PID 1 and owns the rootfs mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_pid: Option<i32>,
    /// The start time of `monitor_pid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub monitor_start: Option<u64>,
    /// Why the last start failed, if it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One container, as `container.json` holds it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Container {
    /// 64 lowercase hex characters.
    pub id: String,
    /// A unique name.
    pub name: String,
    /// The image reference as the user gave it.
    pub image: String,
    /// `sha256:<config digest>`.
    pub image_id: String,
    /// The image manifest's digest (which layers to mount, kept from garbage collection).
    #[serde(default)]
    pub manifest: String,
    /// When it was made (RFC 3339).
    pub created: String,
    /// The command PID 1 runs (entrypoint + arguments).
    pub command: Vec<String>,
    /// The process state.
    pub state: State,
    /// How its process is set up.
    #[serde(default)]
    pub config: RunConfig,
}

/// `ROOT/containers`.
pub fn containers_dir(root: &Path) -> PathBuf {
    root.join("containers")
}

impl Container {
    /// `ROOT/containers/<id>`.
    pub fn dir(&self, root: &Path) -> PathBuf {
        containers_dir(root).join(&self.id)
    }

    /// `ROOT/containers/<id>/upper`: every change the container made (what a commit reads).
    pub fn upper_dir(&self, root: &Path) -> PathBuf {
        self.dir(root).join("upper")
    }

    /// The first 12 characters of the id, as `ps` shows it.
    pub fn short_id(&self) -> &str {
        &self.id[..self.id.len().min(12)]
    }

    /// Writes the record atomically (temp file, fsync, rename, fsync of the directory).
    pub fn save(&self, root: &Path) -> Result<()> {
        let path = self.dir(root).join("container.json");
        let bytes =
            serde_json::to_vec_pretty(self).map_err(|source| RecordError::Json { path: path.clone(), source })?;
        crate::image::store::write_atomic(&path, &bytes)
            .map_err(|e| RecordError::Io { path, source: io::Error::other(e) })
    }
}

/// Reads the record in `dir`.
pub fn load(dir: &Path) -> Result<Container> {
    let path = dir.join("container.json");
    let bytes = fs::read(&path).map_err(io_err(&path))?;
    serde_json::from_slice(&bytes).map_err(|source| RecordError::Json { path, source })
}

/// Every container record under `root`, oldest first. Directories without a record (being
/// made, or being removed) are skipped.
pub fn list(root: &Path) -> Result<Vec<Container>> {
    let dir = containers_dir(root);
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(RecordError::Io { path: dir, source: e }),
    };
    let mut out = Vec::new();
    for entry in entries {
        let path = entry.map_err(io_err(&dir))?.path();
        if path.is_dir() && is_id(&path.file_name().unwrap_or_default().to_string_lossy()) {
            match load(&path) {
                Ok(c) => out.push(c),
                Err(RecordError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    out.sort_by(|a, b| a.created.cmp(&b.created));
    Ok(out)
}

/// Whether `s` is a container id: 64 lowercase hex characters.
pub fn is_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A new id: 64 random lowercase hex characters (containers, anonymous volumes).
pub fn new_id() -> io::Result<String> {
    let mut bytes = [0u8; 32];
    io::Read::read_exact(&mut File::open("/dev/urandom")?, &mut bytes)?;
    Ok(hex::encode(bytes))
}

/// Finds a container by exact name, exact id, or unique id prefix.
pub fn find(root: &Path, name_or_id_prefix: &str) -> Result<Container> {
    let all = list(root)?;
    let key = name_or_id_prefix.strip_prefix('/').unwrap_or(name_or_id_prefix);
    if let Some(c) = all.iter().find(|c| c.name == key || c.id == key) {
        return Ok(c.clone());
    }
    let hits: Vec<&Container> = all.iter().filter(|c| !key.is_empty() && c.id.starts_with(key)).collect();
    match hits.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(RecordError::NoSuchContainer(name_or_id_prefix.to_string())),
        _ => Err(RecordError::Ambiguous(name_or_id_prefix.to_string())),
    }
}

/// The record's lock held exclusively: read-modify-write of one record happens under it.
pub struct RecordLock {
    _file: File,
}

/// Takes the lock of the container in `dir`.
pub fn lock(dir: &Path) -> Result<RecordLock> {
    let path = dir.join("lock");
    let file = flock::lock_file(&path, LockKind::Exclusive).map_err(io_err(&path))?;
    Ok(RecordLock { _file: file })
}

/// Re-reads the record of `id` under its lock, lets `f` change it, and saves it.
pub fn update(root: &Path, id: &str, f: impl FnOnce(&mut Container)) -> Result<Container> {
    let dir = containers_dir(root).join(id);
    let _lock = lock(&dir)?;
    let mut c = load(&dir)?;
    f(&mut c);
    c.save(root)?;
    Ok(c)
}

/// The current time in RFC 3339 (UTC, nanoseconds).
pub fn now() -> String {
    humantime::format_rfc3339_nanos(std::time::SystemTime::now()).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(id: &str, name: &str) -> Container {
        Container {
            id: id.into(),
            name: name.into(),
            image: "busybox".into(),
            image_id: format!("sha256:{}", "c".repeat(64)),
            manifest: String::new(),
            created: now(),
            command: vec!["/bin/sh".into()],
            state: State::default(),
            config: RunConfig::default(),
        }
    }

    fn put(root: &Path, c: &Container) {
        fs::create_dir_all(c.dir(root)).unwrap();
        c.save(root).unwrap();
    }

    #[test]
    fn record_has_the_documented_shape() {
        let c = sample(&"a".repeat(64), "web");
        let v: serde_json::Value = serde_json::to_value(&c).unwrap();
        for key in ["id", "name", "image", "image_id", "created", "command", "state"] {
            assert!(v.get(key).is_some(), "{key} missing");
        }
        assert_eq!(v["state"]["status"], "created");
        assert!(v["state"]["pid"].is_null() && v["state"]["exit_code"].is_null());
        assert!(v["state"].get("started").is_some() && v["state"].get("finished").is_some());
    }

    #[test]
    fn find_by_name_id_and_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let a = sample(&format!("ab{}", "0".repeat(62)), "first");
        let b = sample(&format!("ac{}", "0".repeat(62)), "second");
        put(dir.path(), &a);
        put(dir.path(), &b);
        assert_eq!(find(dir.path(), "second").unwrap().id, b.id);
        assert_eq!(find(dir.path(), "ab").unwrap().name, "first");
        assert_eq!(find(dir.path(), &a.id).unwrap().name, "first");
        assert!(matches!(find(dir.path(), "a"), Err(RecordError::Ambiguous(_))));
        assert!(matches!(find(dir.path(), "zz"), Err(RecordError::NoSuchContainer(_))));
        let c = update(dir.path(), &a.id, |c| c.state.status = Status::Exited).unwrap();
        assert_eq!(load(&c.dir(dir.path())).unwrap().state.status, Status::Exited);
        assert_eq!(list(dir.path()).unwrap().len(), 2);
    }
}
