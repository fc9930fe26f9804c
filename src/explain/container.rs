//! A container as the explain, diff and commit commands see it: its record (read by
//! [`crate::container::record`]) and the directory it lives in, `ROOT/containers/ID/`, with
//! `upper/` (its writable layer) and `merged/` (its rootfs while it runs).

use std::ops::Deref;
use std::path::{Path, PathBuf};

use super::{ExplainError, Result};
use crate::container::record::{self, Container, RecordError, Status};

/// A container and its directory.
#[derive(Clone, Debug)]
pub struct Record {
    container: Container,
    /// The container's directory.
    pub dir: PathBuf,
}

impl Deref for Record {
    type Target = Container;
    fn deref(&self) -> &Container {
        &self.container
    }
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
        let pid = self.state.pid.filter(|_| self.state.status == Status::Running)?;
        let alive = rustix::process::Pid::from_raw(pid).is_some_and(|p| rustix::process::test_kill_process(p).is_ok());
        alive.then_some(pid)
    }
}

/// The container a user names (its name, its id, or a unique prefix of its id), if any.
pub fn find(root: &Path, reference: &str) -> Result<Option<Record>> {
    match record::find(root, reference) {
        Ok(container) => Ok(Some(Record { dir: container.dir(root), container })),
        Err(RecordError::NoSuchContainer(_)) => Ok(None),
        Err(RecordError::Ambiguous(r)) => Err(ExplainError::AmbiguousContainer(r)),
        Err(e) => Err(ExplainError::Container { path: record::containers_dir(root), reason: e.to_string() }),
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
            let json = format!(
                r#"{{"id":"{id}","name":"{name}","image":"x","image_id":"sha256:00","created":"2026-01-01T00:00:00Z","command":["sh"],"state":{{"status":"created"}}}}"#
            );
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
