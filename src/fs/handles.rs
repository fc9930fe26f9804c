//! Open files and directories: the handle tables and the I/O on them.
//!
//! Opening for writing (or with `O_TRUNC`) copies the object up first, so a write never reaches
//! a lower layer. A file opened read-only before a copy-up keeps reading the lower data, as with
//! kernel overlayfs. Directories need no handle (see `readdir.rs`).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use parking_lot::RwLock;
use rustix::fs::{Mode, OFlags};

use super::inode::Node;
use super::layers::LayerIdx;
use super::{Errno, Overlay, Result};
use crate::sys::{errno_of, fd};

/// An open regular file.
#[derive(Debug)]
pub struct FileHandle {
    /// The node it was opened on.
    pub node: Arc<Node>,
    /// The real file in its layer.
    pub file: File,
    /// The layer the real file is in.
    pub layer: LayerIdx,
    /// Whether it was opened for writing.
    pub writable: bool,
}

/// Open handles by number.
#[derive(Debug, Default)]
pub struct HandleTable {
    files: RwLock<HashMap<u64, Arc<FileHandle>>>,
    /// The last handle opened on each node's upper object, by node id: `chown`, `chmod` and
    /// `utimensat` name no handle, yet a file being unpacked is open while they come.
    upper_by_node: RwLock<HashMap<u64, Weak<FileHandle>>>,
    next: AtomicU64,
}

impl HandleTable {
    fn insert_file(&self, h: FileHandle, upper: bool) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        let h = Arc::new(h);
        if upper {
            self.upper_by_node.write().insert(h.node.nodeid, Arc::downgrade(&h));
        }
        self.files.write().insert(fh, h);
        fh
    }

    /// The open file `fh`, or `EBADF`.
    pub fn file(&self, fh: u64) -> Result<Arc<FileHandle>> {
        self.files.read().get(&fh).cloned().ok_or(Errno::BADF)
    }

    /// A handle open on `node`'s upper object, if one is (the last one opened).
    pub fn upper_of(&self, node: &Node) -> Option<Arc<FileHandle>> {
        let h = self.upper_by_node.read().get(&node.nodeid)?.upgrade()?;
        // A node id the kernel has let go of may name another node now.
        std::ptr::eq(Arc::as_ptr(&h.node), node).then_some(h)
    }

    fn remove(&self, fh: u64) -> Option<Arc<FileHandle>> {
        let h = self.files.write().remove(&fh)?;
        let mut by_node = self.upper_by_node.write();
        if by_node.get(&h.node.nodeid).is_some_and(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(&h))) {
            by_node.remove(&h.node.nodeid);
        }
        Some(h)
    }
}

/// Clears the bits of an open upper file that a write by `caller` (without `CAP_FSETID`) clears.
/// Returns whether it changed the mode.
fn kill_privs_fd(file: &File, caller: &super::Ctx) -> Result<bool> {
    match super::passthrough::mode_after_write(&fd::stat_fd(file.as_fd())?, caller) {
        Some(mode) => {
            rustix::fs::fchmod(file, Mode::from_raw_mode(mode & 0o7777))?;
            Ok(true)
        }
        None => Ok(false),
    }
}

/// Open flags passed on to the real file (creation and terminal flags are the kernel's business).
fn real_flags(flags: i32) -> OFlags {
    let keep = libc::O_ACCMODE | libc::O_APPEND | libc::O_SYNC | libc::O_DSYNC | libc::O_TRUNC;
    OFlags::from_bits_retain((flags & keep) as u32)
}

impl Overlay {
    /// `open`: copies up first when the file is opened for writing or truncated; `kill_privs`:
    /// an `O_TRUNC` by this caller without `CAP_FSETID` (clears suid/sgid as a write does).
    pub fn open(&self, ino: u64, flags: i32, kill_privs: Option<&super::Ctx>) -> Result<u64> {
        let _tree = self.tree.read();
        let node = self.inodes.get(ino)?;
        if node.is_dir() {
            return Err(Errno::ISDIR);
        }
        let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
        let trunc = flags & libc::O_TRUNC != 0;
        if writable || trunc {
            self.stack.upper()?;
            self.copy_up(&node, !trunc)?;
        }
        let at = self.locate(&node)?;
        let name = at.name().ok_or(Errno::INVAL)?;
        let layer = node.src().top();
        if let Some(fetcher) = &self.stack.layer(layer).lazy {
            super::lazy::ensure(fetcher.as_ref(), at.dir(), name)?;
        }
        if !self.stack.is_upper(layer)
            && super::lazy::recording()
            && let Ok(path) = self.inodes.path_of(&node)
        {
            super::lazy::record_open(&path);
        }
        let file = File::from(fd::open_at(at.dir(), name, real_flags(flags), Mode::empty())?);
        if let Some(caller) = kill_privs.filter(|_| trunc)
            && kill_privs_fd(&file, caller)?
        {
            self.attr_changed(node.nodeid);
        }
        Ok(self.add_file(node, file, writable))
    }

    /// Registers an open file (for `open` and `create`).
    pub fn add_file(&self, node: Arc<Node>, file: File, writable: bool) -> u64 {
        node.opened();
        let layer = node.src().top();
        let upper = self.stack.is_upper(layer);
        self.handles.insert_file(FileHandle { node, file, layer, writable }, upper)
    }

    /// `read`.
    pub fn read(&self, fh: u64, offset: u64, size: u32) -> Result<Vec<u8>> {
        let h = self.handles.file(fh)?;
        let mut buf = vec![0u8; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match h.file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(errno_of(&e)),
            }
        }
        buf.truncate(done);
        Ok(buf)
    }

    /// `write`; `kill_privs`: by this caller without `CAP_FSETID` (clears suid/sgid first).
    pub fn write(&self, fh: u64, offset: u64, data: &[u8], kill_privs: Option<&super::Ctx>) -> Result<u32> {
        let h = self.handles.file(fh)?;
        if !h.writable || !self.stack.is_upper(h.layer) {
            return Err(Errno::BADF);
        }
        // The kernel keeps the attributes it has: tell it the mode changed.
        if let Some(caller) = kill_privs
            && kill_privs_fd(&h.file, caller)?
        {
            self.attr_changed(h.node.nodeid);
        }
        h.file.write_all_at(data, offset).map_err(|e| errno_of(&e))?;
        Ok(data.len() as u32)
    }

    /// `fsync` (skipped on a `volatile` mount).
    pub fn fsync(&self, fh: u64, datasync: bool) -> Result<()> {
        let h = self.handles.file(fh)?;
        if self.stack.upper.as_ref().is_some_and(|u| u.volatile) {
            return Ok(());
        }
        fd::sync_fd(h.file.as_fd(), datasync)
    }

    /// `fsyncdir`: syncs the directory's instance in the upper dir, where the names created,
    /// removed and renamed in it are (with their whiteouts). A directory not in the upper dir
    /// has nothing of the mount's to sync: kernel overlayfs does the same.
    pub fn fsyncdir(&self, nodeid: u64, datasync: bool) -> Result<()> {
        let node = self.inodes.get(nodeid)?;
        if self.stack.upper.as_ref().is_none_or(|u| u.volatile) || !self.in_upper(&node.src()) {
            return Ok(());
        }
        let path = self.inodes.path_of(&node)?;
        // fsync needs an fd opened for reading (`O_PATH` answers EBADF).
        let dir = fd::open_dir_read(self.stack.upper_root()?, &path)?;
        fd::sync_fd(dir.as_fd(), datasync)
    }

    /// `fallocate`.
    pub fn fallocate(&self, fh: u64, offset: u64, length: u64, mode: i32) -> Result<()> {
        let h = self.handles.file(fh)?;
        if !h.writable {
            return Err(Errno::BADF);
        }
        let flags = rustix::fs::FallocateFlags::from_bits_retain(mode as u32);
        rustix::fs::fallocate(&h.file, flags, offset, length)
    }

    /// `lseek` for `SEEK_DATA`/`SEEK_HOLE`.
    pub fn lseek(&self, fh: u64, offset: i64, whence: i32) -> Result<i64> {
        let h = self.handles.file(fh)?;
        let pos = match whence {
            libc::SEEK_DATA => rustix::fs::SeekFrom::Data(offset.max(0) as u64),
            libc::SEEK_HOLE => rustix::fs::SeekFrom::Hole(offset.max(0) as u64),
            libc::SEEK_SET => rustix::fs::SeekFrom::Start(offset as u64),
            libc::SEEK_END => rustix::fs::SeekFrom::End(offset),
            _ => return Err(Errno::INVAL),
        };
        Ok(rustix::fs::seek(&h.file, pos)? as i64)
    }

    /// `copy_file_range` between two open files of the mount.
    pub fn copy_file_range(&self, fh_in: u64, off_in: u64, fh_out: u64, off_out: u64, len: u64) -> Result<u32> {
        let (i, o) = (self.handles.file(fh_in)?, self.handles.file(fh_out)?);
        if !o.writable {
            return Err(Errno::BADF);
        }
        let (mut a, mut b) = (off_in, off_out);
        let n = rustix::fs::copy_file_range(&i.file, Some(&mut a), &o.file, Some(&mut b), len.min(1 << 30) as usize)?;
        Ok(n as u32)
    }

    /// `release`.
    pub fn release(&self, fh: u64) {
        if let Some(h) = self.handles.remove(fh) {
            self.inodes.closed(&h.node);
        }
    }
}
