//! A tiny reader of container records, until `crate::container::record::find` exists (then this
//! file goes and [`super::target`], `strata diff` and `strata commit` call that instead).
//!
//! A container lives in `ROOT/containers/ID/` (ID: 64 hex digits) with `upper/`, `work/`,
//! `merged/` and `container.json` = `{"id","name","image","image_id","created","command",
//! "state"}`; `image_id` is `sha256:` + the image's config digest.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::{ExplainError, Result};

/// The fields of `container.json` this module reads.
#[derive(Clone, Debug, Deserialize)]
pub struct Record {
    /// The container's id (64 hex digits).
    pub id: String,
    /// Its name.
    #[serde(default)]
    pub name: String,
    /// The image as the user named it.
    #[serde(default)]
    pub image: String,
    /// `sha256:` + the image's config digest.
    pub image_id: String,
    /// The image's manifest digest, when the record keeps it.
    #[serde(default)]
    pub manifest: String,
    /// The command its PID 1 runs.
    #[serde(default)]
    pub command: Vec<String>,
    /// Its process state.
    #[serde(default)]
    pub state: State,
    /// The container's dir (not in the JSON).
    #[serde(skip)]
    pub dir: PathBuf,
}

/// The fields of a record's `state` this module reads.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct State {
    /// `created`, `running` or `exited`.
    #[serde(default)]
    pub status: String,
    /// The host pid of its PID 1 while it runs.
    #[serde(default)]
    pub pid: Option<i32>,
}

impl Record {
    /// The container's writable layer.
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }

    /// Where its rootfs is mounted while it runs.
    pub fn merged(&self) -> PathBuf {
        self.dir.join("merged")
    }

    /// The host pid of its PID 1, if the record says it runs and that process exists.
    pub fn running_pid(&self) -> Option<i32> {
        let pid = self.state.pid.filter(|_| self.state.status == "running")?;
        let alive = rustix::process::Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
        alive.then_some(pid)
    }
}

/// The container a user names (its name, its id, or a unique prefix of its id), if any.
pub fn find(root: &Path, reference: &str) -> Result<Option<Record>> {
    let dir = root.join("containers");
    let Ok(entries) = std::fs::read_dir(&dir) else { return Ok(None) };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let file = entry.path().join("container.json");
        let Ok(bytes) = std::fs::read(&file) else { continue };
        let mut rec: Record = serde_json::from_slice(&bytes)
            .map_err(|e| ExplainError::Container { path: file.clone(), reason: format!("invalid JSON: {e}") })?;
        rec.dir = entry.path();
        records.push(rec);
    }
    if let Some(rec) = records.iter().find(|r| r.name == reference || r.id == reference) {
        return Ok(Some(rec.clone()));
    }
    let hex = !reference.is_empty() && reference.bytes().all(|b| b.is_ascii_hexdigit());
    let hits: Vec<&Record> = records.iter().filter(|r| hex && r.id.starts_with(reference)).collect();
    match hits.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some((*one).clone())),
        _ => Err(ExplainError::AmbiguousContainer(reference.into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_by_name_id_and_prefix() {
        let t = tempfile::tempdir().unwrap();
        for (id, name) in [("ab".repeat(32), "web"), ("ac".repeat(32), "db")] {
            let d = t.path().join("containers").join(&id);
            std::fs::create_dir_all(&d).unwrap();
            let json = format!(r#"{{"id":"{id}","name":"{name}","image":"x","image_id":"sha256:00","state":{{}}}}"#);
            std::fs::write(d.join("container.json"), json).unwrap();
        }
        assert_eq!(find(t.path(), "web").unwrap().unwrap().name, "web");
        assert_eq!(find(t.path(), "aca").unwrap().unwrap().name, "db");
        assert!(find(t.path(), "a").is_err(), "ambiguous prefix");
        assert!(find(t.path(), "nope").unwrap().is_none());
        assert!(find(&t.path().join("none"), "web").unwrap().is_none());
        assert!(find(t.path(), "db").unwrap().unwrap().upper().ends_with("upper"));
    }
}
