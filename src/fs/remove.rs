//! Removing names (SEMANTICS.md "Namespace operations"): unlink and rmdir.
//!
//! The upper entry goes (atomically: swapped for a whiteout, or moved into the work dir and
//! deleted there); where a lower layer still shows the name, a whiteout stays. A lower file with
//! other names is copied up first, so the names left keep the true link count.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags, RenameFlags};

use super::inode::{DirLayer, Node, Src};
use super::layers::{self, WhiteoutMode};
use super::lookup::Found;
use super::whiteout;
use super::{Errno, Overlay, Result};
use crate::sys::fd;

impl Overlay {
    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        let _tree = self.change_tree();
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        let found = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
        if found.kind() == FileType::Directory {
            return Err(Errno::ISDIR);
        }
        // A lower file with other names is copied up (all its names) first, so that removing
        // one name leaves the others with the true link count (as the kernel does with index=on).
        if found.st.st_nlink > 1 && !self.in_upper(&found.src) {
            self.copy_up_moving(&ppath.join(name), &found)?;
            let (pnode, layers, ppath) = self.dir_node(parent)?;
            let found = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
            return self.remove(&pnode, &layers, &ppath, name, &found);
        }
        self.remove(&pnode, &layers, &ppath, name, &found)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        let _tree = self.change_tree();
        let r = self.rmdir_locked(parent, name);
        self.upper_dirs_changed();
        r
    }

    fn rmdir_locked(&self, parent: u64, name: &OsStr) -> Result<()> {
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        let found = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
        let Src::Dir(child_layers) = &found.src else {
            return Err(Errno::NOTDIR);
        };
        if !self.is_empty_dir(&ppath.join(name), child_layers)? {
            return Err(Errno::NOTEMPTY);
        }
        self.remove(&pnode, &layers, &ppath, name, &found)
    }

    /// Takes `name` out of the view: the upper entry goes, a whiteout stays if a lower layer shows it.
    fn remove(&self, pnode: &Arc<Node>, layers: &[DirLayer], ppath: &Path, name: &OsStr, found: &Found) -> Result<()> {
        let node = self.inodes.find_object(found.ino);
        if let Some(n) = &node {
            self.pin_if_last(n, pnode.nodeid, name);
        }
        // An object found in a lower layer is shown by it; an upper one may hide a lower one.
        let below = !self.in_upper(&found.src) || self.lower_shows(ppath, layers, name)?.is_some();
        self.copy_up(pnode, true)?;
        let dir = self.ensure_upper_dir(ppath)?;
        if self.in_upper(&found.src) {
            self.remove_upper(dir.as_fd(), name, found.kind() == FileType::Directory, below)?;
        } else if below {
            whiteout::create(self.stack.upper()?, dir.as_fd(), name)?;
        }
        if below {
            self.trace(format_args!("whiteout  /{}", ppath.join(name).display()));
        }
        if let Some(n) = node {
            n.state.lock().names.remove(pnode.nodeid, name);
        }
        Ok(())
    }

    /// Removes the upper entry `name` (a directory if `is_dir`) of `dir` atomically, leaving a
    /// whiteout when `whiteout`.
    fn remove_upper(&self, dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool, whiteout: bool) -> Result<()> {
        let upper = self.stack.upper()?;
        let work = upper.work.as_fd();
        if !is_dir && !whiteout {
            return fd::unlink_at(dir, name);
        }
        let tmp = self.tmp_name();
        if whiteout && upper.whiteouts == WhiteoutMode::Device {
            whiteout::create(upper, work, &tmp)?;
            if let Err(e) = fd::rename_at(work, &tmp, dir, name, RenameFlags::EXCHANGE) {
                let _ = fd::unlink_at(work, &tmp);
                return Err(e);
            }
        } else {
            fd::rename_at(dir, name, work, &tmp, RenameFlags::NOREPLACE)?;
            if whiteout {
                whiteout::create(upper, dir, name)?;
            }
        }
        layers::remove_tree(work, &tmp)
    }

    /// Keeps an `O_PATH` fd of an open object whose last name is going away. FIFOs, sockets and
    /// devices are opened by the kernel alone (no handle here), so one the kernel still knows
    /// is kept too: `fstat`/`fchmod` on it must keep working.
    pub(crate) fn pin_if_last(&self, node: &Arc<Node>, parent: u64, name: &OsStr) {
        let special = !matches!(node.kind, FileType::RegularFile | FileType::Directory | FileType::Symlink);
        if node.open_count() == 0 && !(special && node.is_looked_up()) {
            return;
        }
        let last = {
            let st = node.state.lock();
            st.names.iter().all(|(p, n)| *p == parent && n == name)
        };
        if !last {
            return;
        }
        if let Ok(at) = self.locate(node) {
            let pinned = match at.name() {
                Some(n) => fd::open_at(at.dir(), n, OFlags::PATH, Mode::empty()),
                None => fd::dup(at.dir()),
            };
            if let Ok(p) = pinned {
                node.state.lock().pinned = Some(Arc::new(p));
            }
        }
    }
}
