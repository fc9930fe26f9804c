//! What keeps the image store consistent between processes and across crashes: whole-file
//! advisory locks (`flock`) serialising Strata commands on one store, and `syncfs` before a
//! finished layer is renamed into place.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::FlockOperation;

use super::Result;

/// How a lock is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Many holders (readers).
    Shared,
    /// One holder (writers).
    Exclusive,
}

/// Takes the lock on `fd`, waiting for other holders to release it.
///
/// The lock belongs to the open file description: it goes when the last fd sharing it is closed
/// (so a child forked while it is held keeps it too).
pub fn lock(fd: BorrowedFd<'_>, kind: LockKind) -> Result<()> {
    let op = match kind {
        LockKind::Shared => FlockOperation::LockShared,
        LockKind::Exclusive => FlockOperation::LockExclusive,
    };
    rustix::fs::flock(fd, op)
}

/// Opens the lock file at `path` (made if missing) and takes its lock; it is held until the
/// returned file is closed.
pub fn lock_file(path: &Path, kind: LockKind) -> std::io::Result<File> {
    let file = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(path)?;
    lock(file.as_fd(), kind)?;
    Ok(file)
}

/// Writes every dirty buffer of the filesystem holding `fd` to disk (`syncfs`).
pub fn sync_filesystem(fd: BorrowedFd<'_>) -> Result<()> {
    rustix::fs::syncfs(fd)
}
