//! Attributes (SEMANTICS.md "Attributes"): `st_ino` stable across copy-up and remounts, times of
//! the shown object, `nlink` 1 for merged directories (as the kernel reports), and setattr
//! (chmod, chown, truncate, utimes) after a copy-up.

use std::ffi::OsStr;
use std::os::fd::AsFd;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustix::fs::{FileType, OFlags, Stat};

use super::inode::{Node, Src};
use super::lookup::AtRef;
use super::{Errno, Overlay, Result};
use crate::sys::fd::{self, SetTime};

/// What `stat` reports for an object of the merged view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Attr {
    /// Inode number (also the FUSE node id).
    pub ino: u64,
    /// File type.
    pub kind: FileType,
    /// Permission bits (with set-id and sticky bits).
    pub perm: u16,
    /// Link count.
    pub nlink: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Device number of a device node.
    pub rdev: u32,
    /// Size in bytes.
    pub size: u64,
    /// Allocated 512-byte blocks.
    pub blocks: u64,
    /// Preferred I/O size.
    pub blksize: u32,
    /// Access time.
    pub atime: SystemTime,
    /// Modification time.
    pub mtime: SystemTime,
    /// Status change time.
    pub ctime: SystemTime,
}

fn time(sec: i64, nsec: i64) -> SystemTime {
    if sec >= 0 {
        UNIX_EPOCH + Duration::new(sec as u64, nsec as u32)
    } else {
        UNIX_EPOCH - Duration::new(sec.unsigned_abs(), 0) + Duration::new(0, nsec as u32)
    }
}

/// Builds the attributes of object `ino` from the stat of its shown instance.
pub fn attr_of(ino: u64, src: &Src, st: &Stat) -> Attr {
    let merged_dir = matches!(src, Src::Dir(ls) if ls.len() > 1);
    Attr {
        ino,
        kind: fd::kind_of(st),
        perm: (st.st_mode & 0o7777) as u16,
        nlink: if merged_dir { 1 } else { st.st_nlink as u32 },
        uid: st.st_uid,
        gid: st.st_gid,
        rdev: st.st_rdev as u32,
        size: st.st_size as u64,
        blocks: st.st_blocks as u64,
        blksize: st.st_blksize as u32,
        atime: time(st.st_atime, st.st_atime_nsec as i64),
        mtime: time(st.st_mtime, st.st_mtime_nsec as i64),
        ctime: time(st.st_ctime, st.st_ctime_nsec as i64),
    }
}

/// The changes a setattr asks for.
#[derive(Clone, Copy, Debug, Default)]
pub struct SetAttr {
    /// New permission bits.
    pub mode: Option<u32>,
    /// New owner.
    pub uid: Option<u32>,
    /// New group.
    pub gid: Option<u32>,
    /// New size.
    pub size: Option<u64>,
    /// New access time.
    pub atime: Option<SetTime>,
    /// New modification time.
    pub mtime: Option<SetTime>,
    /// Clear set-user-ID and set-group-ID as a write by this caller does (a truncate by a
    /// caller without `CAP_FSETID`, or a chown: `FATTR_KILL_SUIDGID`).
    pub kill_privs: Option<super::Ctx>,
}

impl SetAttr {
    fn changes_times(&self) -> bool {
        self.atime.is_some() || self.mtime.is_some()
    }

    fn is_empty(&self) -> bool {
        self.mode.is_none() && self.uid.is_none() && self.gid.is_none() && self.size.is_none() && !self.changes_times()
    }
}

impl Overlay {
    /// The attributes of `node` as the view shows them.
    pub fn attr(&self, node: &Node) -> Result<Attr> {
        let _tree = self.tree.read();
        self.attr_locked(node)
    }

    pub(crate) fn attr_locked(&self, node: &Node) -> Result<Attr> {
        let at = self.locate(node)?;
        let src = node.src();
        let st = self.shown_owner(src.top(), at.dir(), at.name(), at.stat()?);
        Ok(attr_of(node.ino, &src, &st))
    }

    /// `getattr`: through an open handle when one is given (it may be unlinked), else by name.
    pub fn getattr(&self, ino: u64, fh: Option<u64>) -> Result<Attr> {
        let node = self.inodes.get(ino)?;
        if let Some(h) = fh.and_then(|fh| self.handles.file(fh).ok()) {
            let st = self.shown_owner(h.layer, h.file.as_fd(), None, fd::stat_fd(h.file.as_fd())?);
            return Ok(attr_of(node.ino, &node.src(), &st));
        }
        self.attr(&node)
    }

    /// `setattr`: copies the object up, then changes owner, mode, size and times in that order.
    pub fn setattr(&self, ino: u64, fh: Option<u64>, set: &SetAttr) -> Result<Attr> {
        let _tree = self.tree.read();
        let node = self.inodes.get(ino)?;
        let truncating_all = set.size == Some(0);
        self.copy_up(&node, !truncating_all)?;
        // When a handle is open on the upper object (the object's copy is, once up) the work goes
        // through its fd, with no name to resolve for each step: the caller's (`ftruncate` names
        // it), else any (`fchown`, `fchmod`, `futimens` name none, but `tar` calls them on the
        // file it has just made and still holds open).
        let handle = fh
            .and_then(|fh| self.handles.file(fh).ok())
            .filter(|h| self.stack.is_upper(h.layer))
            .or_else(|| self.handles.upper_of(&node));
        let at;
        let obj = match &handle {
            Some(h) => AtRef { dir: h.file.as_fd(), name: None },
            None => {
                at = self.locate(&node)?;
                at.borrowed()
            }
        };
        // A node's type never changes (no stat needed to know it).
        let kind = node.kind;
        // A change of nothing (`chown(f, -1, -1)`) still marks the change time, as on any
        // filesystem: a chown to the same ids does that.
        if set.uid.is_some() || set.gid.is_some() || set.is_empty() {
            match obj.name {
                Some(n) => fd::chown_at(obj.dir, n, set.uid, set.gid)?,
                None => fd::chown_fd(obj.dir, set.uid, set.gid)?,
            }
        }
        if let Some(mode) = set.mode {
            if kind == FileType::Symlink {
                return Err(Errno::OPNOTSUPP);
            }
            obj.chmod(mode)?;
        }
        if let Some(size) = set.size {
            if kind == FileType::Directory {
                return Err(Errno::ISDIR);
            }
            match handle.as_ref().filter(|h| h.writable) {
                Some(h) => rustix::fs::ftruncate(&h.file, size)?,
                None => rustix::fs::ftruncate(obj.open(OFlags::WRONLY)?, size)?,
            }
        }
        // The stat taken to decide what a chown kills is the answer too if nothing changed since.
        let mut last = None;
        if let Some(caller) = set.kill_privs.filter(|_| set.mode.is_none() && kind == FileType::RegularFile) {
            let st = obj.stat()?;
            match super::passthrough::mode_after_write(&st, &caller) {
                Some(mode) => obj.chmod(mode)?,
                None => last = Some(st),
            }
        }
        if set.changes_times() {
            let (a, m) = (set.atime.unwrap_or(SetTime::Omit), set.mtime.unwrap_or(SetTime::Omit));
            fd::utimes_at(obj.dir, obj.name, a, m)?;
            last = None;
        }
        let st = match last {
            Some(st) => st,
            None => obj.stat()?,
        };
        Ok(super::attr::attr_of(node.ino, &node.src(), &st))
    }

    /// `readlink`.
    pub fn readlink(&self, ino: u64) -> Result<std::ffi::OsString> {
        let _tree = self.tree.read();
        let node = self.inodes.get(ino)?;
        let at = self.locate(&node)?;
        fd::readlink_at(at.dir(), at.name().ok_or(Errno::INVAL)?)
    }

    /// `statfs` of the upper filesystem (or of the top layer on a read-only mount).
    pub fn statfs(&self) -> Result<rustix::fs::StatVfs> {
        rustix::fs::fstatvfs(self.stack.layers[0].fd())
    }
}

/// Name of a node's object for messages.
pub fn display_name(name: Option<&OsStr>) -> String {
    name.map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "/".into())
}
