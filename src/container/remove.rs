//! Removing a container: it must not run (or is killed with `force`); its rootfs mount must be
//! gone; then the store forgets that it uses the image, its directory (upper dir included) is
//! deleted, and, when asked (`rm -v`, `run --rm`), its anonymous volumes that no other
//! container uses.

use std::path::Path;

use super::record::{Container, RecordError, Status};
use super::state;
use super::stop::{self, StopError};
use super::volumes::{self, VolumeError};
use crate::image::store::{self, Store, StoreError};
use crate::sys::mount;

/// What went wrong removing a container.
#[derive(Debug, thiserror::Error)]
pub enum RemoveError {
    /// It runs, and `force` was not given.
    #[error("container {0} is running: stop it first, or remove it with -f")]
    Running(String),
    /// The record could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// Stopping it failed.
    #[error(transparent)]
    Stop(#[from] StopError),
    /// The store could not be updated or the directory deleted.
    #[error("removing container {name}: {source}")]
    Store {
        /// The container.
        name: String,
        /// The cause.
        source: Box<StoreError>,
    },
    /// An anonymous volume could not be removed.
    #[error("removing container {name}: {source}")]
    Volume {
        /// The container.
        name: String,
        /// The cause.
        source: Box<VolumeError>,
    },
    /// The rootfs is still mounted and cannot be unmounted.
    #[error("removing container {name}: {path} is still mounted")]
    Mounted {
        /// The container.
        name: String,
        /// The mount point.
        path: String,
    },
}

/// Removes `c`, killing it first if it runs and `force` is set; with `volumes`, its anonymous
/// volumes too.
pub fn remove(root: &Path, c: &Container, force: bool, volumes: bool) -> Result<(), RemoveError> {
    let c = state::refresh(root, c)?;
    if c.state.status == Status::Running {
        if !force {
            return Err(RemoveError::Running(c.name));
        }
        stop::kill(root, &c)?;
    }
    delete(root, &c, volumes)
}

/// Deletes a container that does not run: unmounts what is left, drops the store's mount
/// record (which kept the image's layers), deletes the directory; with `volumes`, then its
/// anonymous volumes that no other container uses.
pub fn delete(root: &Path, c: &Container, volumes: bool) -> Result<(), RemoveError> {
    let dir = c.dir(root);
    let merged = dir.join("merged");
    if mount::is_mount_point(&merged) && mount::unmount(&merged, true).is_err() {
        return Err(RemoveError::Mounted { name: c.name.clone(), path: merged.display().to_string() });
    }
    let store_err = |e| RemoveError::Store { name: c.name.clone(), source: Box::new(e) };
    let s = Store::open(root).map_err(store_err)?;
    {
        let lock = s.write().map_err(store_err)?;
        let key = merged.canonicalize().unwrap_or_else(|_| merged.clone());
        lock.remove_mount(&s.mount_dir(&key)).map_err(store_err)?;
    }
    // The record goes first: a crash midway leaves a directory `list` skips, not a half record.
    store::remove_path(&dir.join("container.json")).map_err(store_err)?;
    store::remove_path(&dir).map_err(store_err)?;
    if volumes {
        volumes::remove_anonymous(root, c)
            .map_err(|e| RemoveError::Volume { name: c.name.clone(), source: Box::new(e) })?;
    }
    Ok(())
}
