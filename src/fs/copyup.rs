//! Copy-up (SEMANTICS.md "Copy-up"): an object of a lower layer becomes an upper object.
//!
//! The copy is built in the work dir under a temp name (data by reflink, `copy_file_range` or a
//! hole-aware loop; then owner, mode, xattrs, times; fsync unless `volatile`) and renamed into
//! the upper dir, so a crash leaves the old view or the new one. Parents are copied first,
//! top-down; the parent's times are restored afterwards. Every name of a multiply-linked lower
//! file that the view still shows becomes a hardlink of the one upper copy.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags, RenameFlags, Stat, XattrFlags};

use super::inode::{DirLayer, Node, Src};
use super::layers;
use super::lookup::{At, Found, INO_XATTR};
use super::whiteout::is_private_xattr;
use super::{Errno, FaultPoint, Overlay, Result};
use crate::sys::copy::{Strategy, copy_data};
use crate::sys::fd;
use crate::sys::xattr;

impl Overlay {
    /// Whether `src` is shown from the upper layer.
    pub(crate) fn in_upper(&self, src: &Src) -> bool {
        self.stack.upper.is_some() && src.top() == 0
    }

    /// Makes sure `node` exists in the upper layer, copying it (and its parents) up if needed.
    ///
    /// `with_data: false` copies a regular file's metadata only (it is about to be truncated).
    pub(crate) fn copy_up(&self, node: &Arc<Node>, with_data: bool) -> Result<()> {
        self.stack.upper()?;
        if self.in_upper(&node.src()) {
            return Ok(());
        }
        let path = self.inodes.path_of(node)?;
        if node.is_dir() {
            self.ensure_upper_dir(&path)?;
            return Ok(());
        }
        let _one_at_a_time = node.copy_lock.lock();
        if self.in_upper(&node.src()) {
            return Ok(());
        }
        let found = match self.still_seen(node) {
            Some(f) => f,
            None => self.resolve_again(node, &path)?.ok_or(Errno::NOENT)?,
        };
        if found.ino != node.ino {
            return Err(Errno::STALE);
        }
        // Copied up already through another node of the object (see `InodeTable::renumber`).
        if self.in_upper(&found.src) {
            node.set_src(found.src);
            return Ok(());
        }
        self.copy_up_file(&path, &found, with_data)?;
        node.set_src(Src::File(0, Arc::from(path.as_path())));
        self.attr_changed(node.nodeid);
        Ok(())
    }

    /// Where the last lookup of `node` found it, if nothing changed since (no namespace
    /// operation, no copy-up) and the object is simple — a lower file with one name and one
    /// link: one stat there instead of a new walk through the layers.
    fn still_seen(&self, node: &Node) -> Option<Found> {
        let (src, seen_at, names) = {
            let state = node.state.lock();
            (state.src.clone(), state.seen_at?, state.names.len())
        };
        let Src::File(idx, path) = &src else { return None };
        if names != 1 || seen_at != self.generation() || self.in_upper(&src) {
            return None;
        }
        // A lower layer has no xattr whiteouts to tell apart: a whiteout there is a device.
        self.file_in_layer(*idx, path, false).ok().flatten().filter(|f| f.st.st_nlink == 1)
    }

    /// Resolves the object `node` shows at `path` again: one component under its parent's node
    /// when the parent is known there (the parent's layers are current: copy-ups and renames
    /// update them), else the whole path from the root.
    fn resolve_again(&self, node: &Node, path: &Path) -> Result<Option<Found>> {
        let (Some(parent_path), Some(name)) = (path.parent(), path.file_name()) else {
            return self.resolve_path(path);
        };
        let parents: Vec<u64> = node.state.lock().names.iter().filter(|(_, n)| n == name).map(|(p, _)| *p).collect();
        for p in parents {
            if let Ok((_, layers, ppath)) = self.dir_node(p)
                && ppath == parent_path
            {
                return self.find_child(&ppath, &layers, name);
            }
        }
        self.resolve_path(path)
    }

    /// Copies up what a rename moves: a file with its hardlinks, or a directory (not its content).
    pub(crate) fn copy_up_moving(&self, path: &Path, found: &Found) -> Result<()> {
        if self.in_upper(&found.src) {
            return Ok(());
        }
        match (&found.src, self.inodes.find_object(found.ino)) {
            (Src::Dir(_), _) => self.ensure_upper_dir(path).map(drop),
            (Src::File(..), Some(node)) => self.copy_up(&node, true),
            (Src::File(..), None) => self.copy_up_file(path, found, true),
        }
    }

    /// The upper instance of the merged directory at `path`, copied up (with its parents) if
    /// it is not there yet. Returns an `O_PATH` fd of it.
    pub(crate) fn ensure_upper_dir(&self, path: &Path) -> Result<Arc<OwnedFd>> {
        let root = self.stack.upper_root()?;
        match self.open_layer_dir(0, path) {
            Ok(f) => return Ok(f),
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
        let _dirs = self.dir_copy.lock();
        let Src::Dir(mut layers) = self.inodes.get(super::inode::ROOT)?.src() else {
            return Err(Errno::NOTDIR);
        };
        let mut cur = fd::dup(root)?;
        let mut cur_path = PathBuf::new();
        for comp in path.iter() {
            let found = self.find_child(&cur_path, &layers, comp)?.ok_or(Errno::NOENT)?;
            let Src::Dir(found_layers) = &found.src else {
                return Err(Errno::NOTDIR);
            };
            cur_path.push(comp);
            let next = if self.in_upper(&found.src) {
                layers = found_layers.clone();
                fd::open_dir(cur.as_fd(), Path::new(comp))?
            } else {
                let fd = self.copy_up_dir(cur.as_fd(), &cur_path, &found)?;
                layers =
                    std::iter::once(DirLayer::new(0, false, &cur_path)).chain(found_layers.iter().cloned()).collect();
                if let Some(node) = self.inodes.find_object(found.ino) {
                    node.set_src(Src::Dir(layers.clone()));
                    self.attr_changed(node.nodeid);
                }
                fd
            };
            cur = next;
        }
        Ok(Arc::new(cur))
    }

    /// Copies one directory (not its content) into the upper dir `parent` under its name.
    fn copy_up_dir(&self, parent: BorrowedFd<'_>, path: &Path, found: &Found) -> Result<OwnedFd> {
        let upper = self.stack.upper()?;
        let name = path.file_name().ok_or(Errno::INVAL)?;
        let from = self.at_in_layer(found.src.top(), &self.top_path(path, &found.src))?;
        let tmp = self.tmp_name();
        let work = upper.work.as_fd();
        fd::mkdir_at(work, &tmp, 0o700)?;
        let built = self.finish_copy(&from, work, &tmp, &found.st, found.ino);
        let placed = built.and_then(|()| self.place(work, &tmp, parent, name));
        if let Err(e) = placed {
            let _ = layers::remove_tree(work, &tmp);
            return Err(e);
        }
        self.trace(format_args!("copy-up   /{}  from {}", path.display(), self.stack.describe(found.src.top())));
        fd::open_dir(parent, Path::new(name))
    }

    /// Copies the non-directory `found` at `path` up, then links its other visible names.
    pub(crate) fn copy_up_file(&self, path: &Path, found: &Found, with_data: bool) -> Result<()> {
        let upper = self.stack.upper()?;
        let layer = found.src.top();
        let name = path.file_name().ok_or(Errno::INVAL)?;
        let parent_path = path.parent().unwrap_or(Path::new(""));
        let parent = self.ensure_upper_dir(parent_path)?;
        let lower_path = self.top_path(path, &found.src);
        let from = self.at_in_layer(layer, &lower_path)?;
        if let Some(fetcher) = self.stack.layer(layer).lazy.as_ref().filter(|_| with_data)
            && fd::kind_of(&found.st) == FileType::RegularFile
        {
            super::lazy::ensure(fetcher.as_ref(), from.dir(), from.name().ok_or(Errno::INVAL)?)?;
        }
        let tmp = self.tmp_name();
        let work = upper.work.as_fd();
        let built = self.build_copy(&from, work, &tmp, found, with_data);
        // A file with other names: what the next mount needs to link them, should the daemon
        // die between placing the copy and linking the last of them.
        let pending = match built.and_then(|()| self.note_pending_links(path, found)) {
            Ok(pending) => pending,
            Err(e) => {
                let _ = layers::remove_tree(work, &tmp);
                return Err(e);
            }
        };
        let placed =
            self.take_fault(FaultPoint::BeforeRename).and_then(|()| self.place(work, &tmp, parent.as_fd(), name));
        if let Err(e) = placed {
            let _ = layers::remove_tree(work, &tmp);
            self.done_pending_links(pending);
            return Err(e);
        }
        self.trace(format_args!("copy-up   /{}  from {}", path.display(), self.stack.describe(layer)));
        self.link_other_names(path, found);
        self.done_pending_links(pending);
        Ok(())
    }

    /// Builds the copy of `from` in the work dir as `tmp`.
    fn build_copy(&self, from: &At, work: BorrowedFd<'_>, tmp: &OsStr, found: &Found, with_data: bool) -> Result<()> {
        let st = &found.st;
        let name = from.name().ok_or(Errno::INVAL)?;
        match fd::kind_of(st) {
            FileType::RegularFile => {
                let src = File::from(open_lower_for_copy(from.dir(), name)?);
                let dst = File::from(fd::open_at(
                    work,
                    tmp,
                    OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
                    Mode::from_raw_mode(0o600),
                )?);
                let mut strategy = None;
                if with_data {
                    let between = &mut || self.take_fault(FaultPoint::MidData);
                    let sparse = crate::sys::copy::may_be_sparse(st.st_size, st.st_blocks);
                    let first =
                        if self.no_reflink(found.src.top()) { Strategy::CopyFileRange } else { Strategy::Reflink };
                    let used = copy_data(&src, &dst, st.st_size as u64, first, sparse, between)?;
                    if first == Strategy::Reflink && used != Strategy::Reflink && st.st_size > 0 {
                        self.reflink_failed(found.src.top());
                    }
                    strategy = Some(used);
                }
                // The data is made durable before the metadata and the rename, whose journal
                // entries the filesystem commits in order (as the kernel's copy-up does). A
                // reflink writes no data blocks, only such metadata: nothing to sync.
                if strategy != Some(Strategy::Reflink) && !self.stack.upper()?.volatile {
                    fd::sync_fd(dst.as_fd(), false)?;
                }
                self.finish_copy(from, work, tmp, st, found.ino)
            }
            FileType::Symlink => {
                fd::symlink_at(&fd::readlink_at(from.dir(), name)?, work, tmp)?;
                self.finish_copy(from, work, tmp, st, found.ino)
            }
            FileType::Directory => Err(Errno::ISDIR),
            _ => {
                fd::mknod_at(work, tmp, st.st_mode, st.st_rdev)?;
                self.finish_copy(from, work, tmp, st, found.ino)
            }
        }
    }

    /// Gives the temp copy `tmp` the owner, mode, xattrs and times of the original (a regular file's data is synced before).
    fn finish_copy(&self, from: &At, work: BorrowedFd<'_>, tmp: &OsStr, st: &Stat, ino: u64) -> Result<()> {
        let kind = fd::kind_of(st);
        let upper = self.stack.upper()?;
        if upper.new_owner != Some((st.st_uid, st.st_gid)) {
            self.give_owner(work, tmp, st.st_uid, st.st_gid)?;
        }
        if kind != FileType::Symlink {
            fd::chmod_at(work, tmp, st.st_mode)?;
        }
        copy_xattrs(from.dir(), from.name(), work, Some(tmp))?;
        let key = upper.ns.name(INO_XATTR);
        match xattr::set(work, Some(tmp), OsStr::new(&key), &ino.to_le_bytes(), XattrFlags::empty()) {
            Ok(()) => {}
            // user.* xattrs cannot go on symlinks and device nodes: such a copy gets a new number.
            Err(Errno::PERM) | Err(Errno::OPNOTSUPP)
                if kind != FileType::RegularFile && kind != FileType::Directory => {}
            Err(e) => return Err(e),
        }
        let (atime, mtime) = fd::times_of(st);
        fd::utimes_at(work, Some(tmp), atime, mtime)?;
        Ok(())
    }

    /// Sets owner `uid:gid` on `name` in `dir`; an unprivileged daemon keeps its own ids.
    pub(crate) fn give_owner(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32) -> Result<()> {
        match fd::chown_at(dir, name, Some(uid), Some(gid)) {
            Err(Errno::PERM) | Err(Errno::INVAL) if !self.privileged => Ok(()),
            // In a user namespace, ids the namespace does not map cannot be set: keep the mapped ones.
            Err(Errno::INVAL) | Err(Errno::OVERFLOW) => Ok(()),
            other => other,
        }
    }

    /// Renames `tmp` from the work dir into `parent` as `name`, keeping the parent's times.
    pub(crate) fn place(&self, work: BorrowedFd<'_>, tmp: &OsStr, parent: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
        let pst = fd::stat_fd(parent)?;
        self.changed();
        fd::rename_at(work, tmp, parent, name, RenameFlags::NOREPLACE)?;
        self.restore_times(parent, &pst);
        self.mark_impure_known(parent, &pst);
        self.dir_changed(parent, &pst);
        Ok(())
    }

    /// [`Self::mark_impure`] for an upper directory whose stat is at hand: one already known to
    /// be marked is not asked again.
    pub(crate) fn mark_impure_known(&self, dir: BorrowedFd<'_>, st: &Stat) {
        if !self.dirs.known_impure(st.st_ino) {
            self.mark_impure(dir);
            self.dirs.note_impure(st.st_ino);
        }
    }

    /// Drops the kernel's cached attributes of the upper directory `dir` (stat `st`): an entry
    /// Strata placed in it changed its change time behind the kernel's back.
    pub(crate) fn dir_changed(&self, dir: BorrowedFd<'_>, st: &Stat) {
        if self.invalidate.get().is_none() {
            return;
        }
        let ino = self.ino_of(0, dir, None, st);
        let nodeid = match self.inodes.get(super::inode::ROOT) {
            Ok(root) if root.ino == ino => Some(root.nodeid),
            _ => self.inodes.find_object(ino).map(|n| n.nodeid),
        };
        if let Some(n) = nodeid {
            self.attr_changed(n);
        }
    }

    /// Puts back a directory's times after Strata changed an entry the user did not.
    pub(crate) fn restore_times(&self, dir: BorrowedFd<'_>, st: &Stat) {
        let (atime, mtime) = fd::times_of(st);
        if let Err(e) = fd::utimes_at(dir, None, atime, mtime) {
            log::debug!("restoring directory times: {e}");
        }
    }

    /// Marks an upper directory as holding entries that keep a pre-copy-up inode number.
    pub(crate) fn mark_impure(&self, dir: BorrowedFd<'_>) {
        let Some(upper) = &self.stack.upper else {
            return;
        };
        if self.is_impure(dir) {
            return;
        }
        let key = upper.ns.name("impure");
        if let Err(e) = xattr::set(dir, None, OsStr::new(&key), b"y", XattrFlags::empty()) {
            log::debug!("marking directory impure: {e}");
        }
    }
}

/// Opens a lower file to copy its data without touching its access time (as the kernel's
/// copy-up does); `O_NOATIME` needs ownership, so without it the plain open is used.
fn open_lower_for_copy(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OwnedFd> {
    match fd::open_at(dir, name, OFlags::RDONLY | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => fd::open_at(dir, name, OFlags::RDONLY, Mode::empty()),
        other => other,
    }
}

/// Copies every non-private xattr of `from_dir/from_name` to `to_dir/to_name` (a `None` name is
/// the directory itself).
pub(crate) fn copy_xattrs(
    from_dir: BorrowedFd<'_>,
    from_name: Option<&OsStr>,
    to_dir: BorrowedFd<'_>,
    to_name: Option<&OsStr>,
) -> Result<()> {
    let keys = match xattr::list(from_dir, from_name) {
        Ok(k) => k,
        Err(Errno::OPNOTSUPP) => return Ok(()),
        Err(e) => return Err(e),
    };
    for key in keys.iter().filter(|k| !is_private_xattr(k)) {
        let Some(value) = xattr::get(from_dir, from_name, key)? else {
            continue;
        };
        match xattr::set(to_dir, to_name, key, &value, XattrFlags::empty()) {
            Ok(()) => {}
            // Namespaces the upper filesystem or our privileges do not allow are skipped, as the kernel does.
            Err(Errno::OPNOTSUPP) | Err(Errno::PERM) | Err(Errno::ACCESS) => {
                log::debug!("xattr {} not copied up", key.to_string_lossy());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
