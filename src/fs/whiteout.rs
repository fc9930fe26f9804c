//! Whiteouts and opaque directories: every form is read, the kernel form is written.
//!
//! Implements SEMANTICS.md "What counts as a whiteout / opaque dir" (reading: device 0/0,
//! `.wh.NAME`, the kernel's xattr form; `overlay.opaque=y` in three namespaces or a
//! `.wh..wh..opq` file) and "What Strata writes into the upper dir".

use std::ffi::{OsStr, OsString};
use std::os::fd::BorrowedFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};

use rustix::fs::{FileType, Mode, OFlags, RenameFlags, Stat, XattrFlags};

use super::layers::{Upper, WhiteoutMode, XattrNs};
use crate::sys::{Errno, Result, fd, xattr};

/// Prefix of AUFS/OCI whiteout names.
pub const WH_PREFIX: &[u8] = b".wh.";
/// Name of the AUFS/OCI opaque marker file.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// Xattrs whose value `y` makes a directory opaque (and `x` marks xattr whiteouts inside).
const OPAQUE_XATTRS: [&str; 3] = ["trusted.overlay.opaque", "user.overlay.opaque", "user.fuseoverlayfs.opaque"];
/// Xattrs that turn an empty file into a whiteout (kernel's xattr form).
const WHITEOUT_XATTRS: [&str; 2] = ["trusted.overlay.whiteout", "user.overlay.whiteout"];
/// Prefixes of xattrs that belong to union filesystems, never shown nor copied.
pub const PRIVATE_PREFIXES: [&str; 4] = ["trusted.overlay.", "user.overlay.", "user.fuseoverlayfs.", "user.strata."];

/// Whether `name` starts with `.wh.` (never shown in the merged view).
pub fn is_wh_name(name: &OsStr) -> bool {
    name.as_bytes().starts_with(WH_PREFIX)
}

/// `.wh.` + `name`.
pub fn wh_name(name: &OsStr) -> OsString {
    let mut v = WH_PREFIX.to_vec();
    v.extend_from_slice(name.as_bytes());
    OsString::from_vec(v)
}

/// For a `.wh.NAME` entry (not the opaque marker), the NAME it deletes.
pub fn wh_target(name: &OsStr) -> Option<&OsStr> {
    let b = name.as_bytes();
    if b.starts_with(WH_PREFIX) && name != OPAQUE_MARKER {
        Some(OsStr::from_bytes(&b[WH_PREFIX.len()..]))
    } else {
        None
    }
}

/// Whether xattr `key` is private to union filesystems.
pub fn is_private_xattr(key: &OsStr) -> bool {
    let b = key.as_bytes();
    PRIVATE_PREFIXES.iter().any(|p| b.starts_with(p.as_bytes()))
}

/// What a directory instance in one layer says about the layers below it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DirMarks {
    /// Nothing below this layer contributes to the directory.
    pub opaque: bool,
    /// Empty files in it may be xattr whiteouts (`overlay.opaque=x`).
    pub xwhiteouts: bool,
}

/// Reads the marks of directory `dir` (an fd of the directory itself).
pub fn dir_marks(dir: BorrowedFd<'_>) -> Result<DirMarks> {
    let mut marks = DirMarks::default();
    let names = match xattr::list(dir, None) {
        Ok(n) => n,
        Err(Errno::OPNOTSUPP) | Err(Errno::PERM) | Err(Errno::ACCESS) => Vec::new(),
        Err(e) => return Err(e),
    };
    for key in OPAQUE_XATTRS {
        if names.iter().any(|n| n == key) {
            match xattr::get(dir, None, OsStr::new(key)) {
                Ok(Some(v)) if v == b"y" => marks.opaque = true,
                Ok(Some(v)) if v == b"x" => marks.xwhiteouts = true,
                _ => {}
            }
        }
    }
    if !marks.opaque && fd::try_stat_at(dir, OsStr::new(OPAQUE_MARKER))?.is_some() {
        marks.opaque = true;
    }
    Ok(marks)
}

/// Whether entry `name` (stat `st`) of directory `dir` is a whiteout.
///
/// `xwhiteouts` is the directory's mark; only then can an empty file be an xattr whiteout.
pub fn is_whiteout(dir: BorrowedFd<'_>, name: &OsStr, st: &Stat, xwhiteouts: bool) -> bool {
    if fd::is_whiteout_dev(st) {
        return true;
    }
    xwhiteouts
        && fd::kind_of(st) == FileType::RegularFile
        && st.st_size == 0
        && WHITEOUT_XATTRS.iter().any(|k| matches!(xattr::get(dir, Some(name), OsStr::new(k)), Ok(Some(_))))
}

/// Whether `.wh.NAME` exists in `dir` (the OCI form, which hides NAME in the layers below).
/// A NAME too long to have a `.wh.` form has none.
pub fn has_wh_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<bool> {
    match fd::try_stat_at(dir, &wh_name(name)) {
        Ok(st) => Ok(st.is_some()),
        Err(Errno::NAMETOOLONG) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Removes `.wh.NAME` from `dir` if it is there.
pub fn remove_wh_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match fd::unlink_at(dir, &wh_name(name)) {
        Ok(()) | Err(Errno::NOENT) | Err(Errno::NAMETOOLONG) => Ok(()),
        Err(e) => Err(e),
    }
}

/// The whiteout device kept in the work dir: new whiteouts are hard links of it, as kernel
/// overlayfs makes them — a link costs a directory entry, a `mknod` a new inode (several times
/// slower on ext4).
pub const SHARED_WHITEOUT: &str = "#strata-whiteout";

/// Writes a whiteout for `name` in the upper directory `dir` (where `name` must be free).
pub fn create(upper: &Upper, dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match upper.whiteouts {
        WhiteoutMode::Device => link_shared(std::os::fd::AsFd::as_fd(&upper.work), dir, name),
        WhiteoutMode::WhFile => create_wh_file(dir, name),
    }
}

/// A hard link of the work dir's shared whiteout as `name` in `dir`; when the shared one is
/// missing or has as many links as the filesystem allows, a fresh one replaces it and this
/// whiteout is made by `mknod`.
fn link_shared(work: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    let shared = OsStr::new(SHARED_WHITEOUT);
    match fd::link_at(work, shared, dir, name) {
        Ok(()) => Ok(()),
        Err(Errno::MLINK) | Err(Errno::NOENT) => {
            fd::mkwhiteout_at(dir, name)?;
            renew_shared(work);
            Ok(())
        }
        Err(Errno::EXIST) => Err(Errno::EXIST),
        Err(_) => fd::mkwhiteout_at(dir, name),
    }
}

/// Puts a fresh shared whiteout in the work dir (built under a temp name, renamed over the old).
pub fn renew_shared(work: BorrowedFd<'_>) {
    let tmp = OsString::from(format!("#strata-whiteout-{}", std::process::id()));
    let made = fd::mkwhiteout_at(work, &tmp)
        .and_then(|()| fd::rename_at(work, &tmp, work, OsStr::new(SHARED_WHITEOUT), RenameFlags::empty()));
    if let Err(e) = made {
        let _ = fd::unlink_at(work, &tmp);
        log::debug!("no shared whiteout in the work dir: {e}");
    }
}

/// Marks the upper directory `dir` (an fd of the directory itself) opaque.
pub fn set_opaque(upper: &Upper, dir: BorrowedFd<'_>) -> Result<()> {
    match upper.whiteouts {
        WhiteoutMode::Device => set_opaque_xattr(dir, upper.ns),
        WhiteoutMode::WhFile => create_opaque_file(dir),
    }
}

/// The AUFS/OCI whiteout: an empty `.wh.NAME` file in `dir` (an existing one is fine).
pub fn create_wh_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    empty_file(dir, &wh_name(name))
}

/// The AUFS/OCI opaque marker: an empty `.wh..wh..opq` file in directory `dir`.
pub fn create_opaque_file(dir: BorrowedFd<'_>) -> Result<()> {
    empty_file(dir, OsStr::new(OPAQUE_MARKER))
}

/// The kernel's opaque mark on directory `dir`: `overlay.opaque=y` in namespace `ns`.
pub fn set_opaque_xattr(dir: BorrowedFd<'_>, ns: XattrNs) -> Result<()> {
    xattr::set(dir, None, OsStr::new(&ns.name("opaque")), b"y", XattrFlags::empty())
}

fn empty_file(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    match fd::open_at(dir, name, OFlags::CREATE | OFlags::WRONLY, Mode::from_raw_mode(0o600)) {
        Ok(_) | Err(Errno::EXIST) => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes every whiteout form of `name` from the upper directory `dir` (not other objects).
pub fn remove(dir: BorrowedFd<'_>, name: &OsStr, xwhiteouts: bool) -> Result<()> {
    if let Some(st) = fd::try_stat_at(dir, name)?
        && is_whiteout(dir, name, &st, xwhiteouts)
    {
        fd::ok_if_missing(fd::unlink_at(dir, name))?;
    }
    remove_wh_file(dir, name)
}
