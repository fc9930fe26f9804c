//! Extended attributes of one entry, addressed by its parent fd and name.
//!
//! Linux before 6.13 has no `getxattrat`, so the entry is named through its parent's
//! `/proc/self/fd/N` magic link plus one component, with the `l*xattr` calls: the parent is the
//! exact directory of the fd, and the final name is never followed.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;

use rustix::fs::XattrFlags;

use super::fd::check_name;
use super::{Errno, Result};

/// How `set` treats an existing attribute.
pub use rustix::fs::XattrFlags as SetFlags;

/// The path naming the object, and whether its last component must be followed: the
/// `/proc/self/fd/N` magic link (no name) is followed to the directory itself; a name is not.
fn target(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Result<(PathBuf, bool)> {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if let Some(name) = name {
        check_name(name)?;
        p.push(name);
        return Ok((p, false));
    }
    Ok((p, true))
}

/// Reads attribute `key` of entry `name` in `dir` (or of `dir` itself). Missing is `None`.
pub fn get(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr) -> Result<Option<Vec<u8>>> {
    let (path, follow) = target(dir, name)?;
    let mut buf = vec![0u8; 256];
    loop {
        let got = if follow {
            rustix::fs::getxattr(&path, key, &mut buf[..])
        } else {
            rustix::fs::lgetxattr(&path, key, &mut buf[..])
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA) => return Ok(None),
            Err(Errno::RANGE) => {
                let size = if follow {
                    rustix::fs::getxattr_query(&path, key)?
                } else {
                    rustix::fs::lgetxattr_query(&path, key)?
                };
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

/// Lists the attribute names of entry `name` in `dir` (or of `dir` itself).
pub fn list(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Result<Vec<OsString>> {
    let (path, follow) = target(dir, name)?;
    let mut buf = vec![0u8; 1024];
    let n = loop {
        let got = if follow {
            rustix::fs::listxattr(&path, &mut buf[..])
        } else {
            rustix::fs::llistxattr(&path, &mut buf[..])
        };
        match got {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let size =
                    if follow { rustix::fs::listxattr_query(&path)? } else { rustix::fs::llistxattr_query(&path)? };
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| OsString::from_vec(s.to_vec())).collect())
}

/// Sets attribute `key` of entry `name` in `dir` (or of `dir` itself).
pub fn set(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr, value: &[u8], flags: XattrFlags) -> Result<()> {
    match target(dir, name)? {
        (path, true) => rustix::fs::setxattr(path, key, value, flags),
        (path, false) => rustix::fs::lsetxattr(path, key, value, flags),
    }
}

/// Removes attribute `key` of entry `name` in `dir` (or of `dir` itself).
pub fn remove(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr) -> Result<()> {
    match target(dir, name)? {
        (path, true) => rustix::fs::removexattr(path, key),
        (path, false) => rustix::fs::lremovexattr(path, key),
    }
}

/// Whether the attribute `key` holds exactly `value`.
pub fn equals(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr, value: &[u8]) -> bool {
    matches!(get(dir, name, key), Ok(Some(v)) if v == value)
}

/// Turns a name into an `OsStr` key (convenience for literal names).
pub fn key(s: &str) -> &OsStr {
    OsStr::from_bytes(s.as_bytes())
}
