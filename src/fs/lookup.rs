//! Resolving a name in a merged directory (SEMANTICS.md "Lookup of NAME in a merged directory").
//!
//! The layers of the directory are walked top-down; the first layer that has the name decides:
//! a whiteout hides it, a non-directory is the object, a directory starts a merge that goes on
//! through same-named directories below until one is opaque or a layer has a non-directory or a
//! whiteout there.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Stat};

use super::inode::{DirLayer, Node, Src};
use super::layers::LayerIdx;
use super::readdir::DirEntry;
use super::whiteout::{self, DirMarks};
use super::{Errno, Overlay, Result};
use crate::sys::{fd, xattr};

/// An object found by a lookup.
#[derive(Clone, Debug)]
pub struct Found {
    /// Where it is shown from.
    pub src: Src,
    /// Stat of the shown instance.
    pub st: Stat,
    /// Its inode number in the mount.
    pub ino: u64,
}

impl Found {
    /// The object's type.
    pub fn kind(&self) -> FileType {
        fd::kind_of(&self.st)
    }
}

/// An object addressed by its parent directory fd and its name (`None`: `dir` is the object).
#[derive(Debug)]
pub struct At {
    /// The parent directory (or the object itself when `name` is `None`).
    pub dir: Arc<OwnedFd>,
    /// The object's name in `dir`.
    pub name: Option<OsString>,
}

impl At {
    /// The parent fd.
    pub fn dir(&self) -> BorrowedFd<'_> {
        self.dir.as_fd()
    }

    /// The name as a borrowed `OsStr`, if any.
    pub fn name(&self) -> Option<&OsStr> {
        self.name.as_deref()
    }

    /// The same address, borrowed.
    pub fn borrowed(&self) -> AtRef<'_> {
        AtRef { dir: self.dir(), name: self.name() }
    }

    /// Stat of the object (never following a symlink).
    pub fn stat(&self) -> Result<Stat> {
        self.borrowed().stat()
    }
}

/// A borrowed [`At`]: an object by name in its directory, or (`name` is `None`) through an fd of
/// the object itself — an open file, or the pinned `O_PATH` fd of one with no name left.
#[derive(Clone, Copy, Debug)]
pub struct AtRef<'a> {
    /// The parent directory (or the object itself when `name` is `None`).
    pub dir: BorrowedFd<'a>,
    /// The object's name in `dir`.
    pub name: Option<&'a OsStr>,
}

impl AtRef<'_> {
    /// Stat of the object (never following a symlink).
    pub fn stat(&self) -> Result<Stat> {
        match self.name {
            Some(n) => fd::stat_at(self.dir, n),
            None => fd::stat_fd(self.dir),
        }
    }

    /// Sets its permission bits (not a symlink's).
    pub fn chmod(&self, mode: u32) -> Result<()> {
        match self.name {
            Some(n) => fd::chmod_at(self.dir, n, mode),
            None => fd::chmod_fd(self.dir, mode),
        }
    }

    /// Opens it with `flags` (never following a symlink).
    pub fn open(&self, flags: rustix::fs::OFlags) -> Result<OwnedFd> {
        match self.name {
            Some(n) => fd::open_at(self.dir, n, flags, rustix::fs::Mode::empty()),
            None => fd::reopen(self.dir, flags),
        }
    }
}

/// Name of the xattr in which Strata keeps the inode number an object had before copy-up.
pub const INO_XATTR: &str = "strata.ino";

impl Overlay {
    /// The instance of the directory at `path` in layer `idx` (an `O_PATH` fd, cached).
    pub(crate) fn open_layer_dir(&self, idx: LayerIdx, path: &Path) -> Result<Arc<OwnedFd>> {
        if let Some(fd) = self.dirs.get(idx, path) {
            return Ok(fd);
        }
        let fd = Arc::new(fd::open_dir(self.stack.layer(idx).fd(), path)?);
        self.dirs.put(idx, path, fd.clone());
        Ok(fd)
    }

    /// Drops cached upper directory fds (a directory there was removed, moved or replaced).
    pub(crate) fn upper_dirs_changed(&self) {
        if self.stack.upper.is_some() {
            self.dirs.forget_layer(0);
        }
    }

    /// Addresses the object at `path` in layer `idx` by its parent fd and name.
    pub(crate) fn at_in_layer(&self, idx: LayerIdx, path: &Path) -> Result<At> {
        match (path.parent(), path.file_name()) {
            (Some(parent), Some(name)) => {
                Ok(At { dir: self.open_layer_dir(idx, parent)?, name: Some(name.to_owned()) })
            }
            _ => Ok(At { dir: Arc::new(fd::dup(self.stack.layer(idx).fd())?), name: None }),
        }
    }

    /// Where instance `dl` of the merged directory at `merged` is in its layer.
    pub(crate) fn inst_path(&self, merged: &Path, dl: &DirLayer) -> PathBuf {
        if self.stack.is_upper(dl.idx) { merged.to_path_buf() } else { dl.path.to_path_buf() }
    }

    /// Resolves `name` in the merged directory at `dir_path` made of `layers`.
    ///
    /// A directory instance with an `overlay.redirect` sends the walk of the layers below to
    /// the path it names (absolute: from each layer's root; relative: a sibling name).
    pub(crate) fn find_child(&self, dir_path: &Path, layers: &[DirLayer], name: &OsStr) -> Result<Option<Found>> {
        fd::check_name(name)?;
        if whiteout::is_wh_name(name) {
            return Ok(None);
        }
        let mut cands: Vec<(LayerIdx, PathBuf, bool)> =
            layers.iter().map(|dl| (dl.idx, self.inst_path(dir_path, dl).join(name), dl.xwh)).collect();
        let mut dirs: Vec<DirLayer> = Vec::new();
        let mut top: Option<(Stat, u64)> = None;
        let mut i = 0;
        while i < cands.len() {
            let (idx, path, xwh) = cands[i].clone();
            i += 1;
            let (parent, leaf) = split(&path)?;
            let dfd = match self.open_layer_dir(idx, parent) {
                Ok(f) => f,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) | Err(Errno::LOOP) => continue,
                Err(e) => return Err(e),
            };
            let dfd = dfd.as_fd();
            let Some(st) = fd::try_stat_at(dfd, leaf)? else {
                if self.may_hold_wh(idx, parent, dfd)? && whiteout::has_wh_file(dfd, leaf)? {
                    break;
                }
                continue;
            };
            if whiteout::is_whiteout(dfd, leaf, &st, xwh) {
                break;
            }
            if fd::kind_of(&st) != FileType::Directory {
                if dirs.is_empty() {
                    let ino = self.ino_of(idx, dfd, Some(leaf), &st);
                    let st = self.shown_owner(idx, dfd, Some(leaf), st);
                    return Ok(Some(Found { src: Src::File(idx, Arc::from(path.as_path())), st, ino }));
                }
                break;
            }
            let sub = fd::open_dir(dfd, Path::new(leaf))?;
            let marks = whiteout::dir_marks(sub.as_fd())?;
            // `.wh.NAME` beside NAME hides the layers below, as an opaque mark would.
            let opaque = marks.opaque || (self.may_hold_wh(idx, parent, dfd)? && whiteout::has_wh_file(dfd, leaf)?);
            if top.is_none() {
                top = Some((self.shown_owner(idx, dfd, Some(leaf), st), self.ino_of(idx, dfd, Some(leaf), &st)));
            }
            dirs.push(DirLayer::new(idx, marks.xwhiteouts, &path));
            if opaque {
                break;
            }
            if let Some(target) = redirect_of(sub.as_fd()) {
                self.follow_redirect(&mut cands, i, idx, &target)?;
            }
        }
        Ok(top.map(|(st, ino)| Found { src: Src::Dir(dirs), st, ino }))
    }

    /// Whether directory `path` of layer `idx` (fd `dir`) may have `.wh.NAME` entries. A small
    /// directory is read once to know; it stays true where Strata may write `.wh.` files (an
    /// upper dir in the `.wh.` fallback) — nothing else adds such names while mounted.
    pub(crate) fn may_hold_wh(&self, idx: LayerIdx, path: &Path, dir: BorrowedFd<'_>) -> Result<bool> {
        /// Larger directories are not read just for this (ext4: about 10k entries).
        const MAX_SCAN: i64 = 256 << 10;
        if self.writes_wh_files(idx) {
            return Ok(true);
        }
        if let Some(has) = self.dirs.has_wh(idx, path) {
            return Ok(has);
        }
        if fd::stat_fd(dir)?.st_size > MAX_SCAN {
            return Ok(true);
        }
        let entries = fd::read_dir(fd::open_dir_read(dir, Path::new(""))?)?;
        let has = entries.iter().any(|e| whiteout::is_wh_name(&e.name) && e.name != whiteout::OPAQUE_MARKER);
        self.dirs.note_wh(idx, path, has);
        Ok(has)
    }

    /// `st` of entry `name` of `dir` in layer `idx`, with the owner a rootless unpack recorded
    /// for it (`user.strata.owner`) where the layer has such owners and this user namespace
    /// maps them: the owner the image gives it, which the real one could not be.
    pub(crate) fn shown_owner(&self, idx: LayerIdx, dir: BorrowedFd<'_>, name: Option<&OsStr>, mut st: Stat) -> Stat {
        let Some(maps) = &self.stack.id_maps else {
            return st;
        };
        let kind = fd::kind_of(&st);
        if self.stack.is_upper(idx)
            || !self.stack.layer(idx).recorded_owners
            || !matches!(kind, FileType::RegularFile | FileType::Directory)
        {
            return st;
        }
        if let Ok(Some(v)) = xattr::get(dir, name, OsStr::new(crate::fs::layers::OWNER_XATTR))
            && let Some((uid, gid)) = std::str::from_utf8(&v).ok().and_then(|t| t.split_once(':'))
            && let (Ok(uid), Ok(gid)) = (uid.parse(), gid.parse())
            && maps.maps(uid, gid)
        {
            (st.st_uid, st.st_gid) = (uid, gid);
        }
        st
    }

    /// Whether Strata itself may add `.wh.` names to layer `idx` (an upper dir in the fallback).
    pub(crate) fn writes_wh_files(&self, idx: LayerIdx) -> bool {
        self.stack.is_upper(idx)
            && self.stack.upper.as_ref().is_some_and(|u| u.whiteouts == super::layers::WhiteoutMode::WhFile)
    }

    /// Points the candidates after `from` (the layers below `idx`) at a redirect target.
    ///
    /// An absolute target is looked up from the root of each layer below, as the kernel does:
    /// a layer where a directory on the way is missing has no part; one where something else
    /// is on the way (a file, a whiteout) ends the walk, and so does one where a directory on
    /// the way is opaque, after its own part.
    fn follow_redirect(
        &self,
        cands: &mut Vec<(LayerIdx, PathBuf, bool)>,
        from: usize,
        idx: LayerIdx,
        target: &[u8],
    ) -> Result<()> {
        let Some(abs) = target.strip_prefix(b"/") else {
            let name = OsStr::from_bytes(target);
            for c in cands.iter_mut().skip(from) {
                c.1.set_file_name(name);
            }
            return Ok(());
        };
        let path = PathBuf::from(OsStr::from_bytes(abs));
        cands.truncate(from);
        for l in (idx as usize + 1)..self.stack.layers.len() {
            let l = l as LayerIdx;
            let (present, last) = self.walk_to_redirect(l, &path)?;
            if present {
                cands.push((l, path.clone(), false));
            }
            if last {
                break;
            }
        }
        Ok(())
    }

    /// Walks the directories on the way to `path` in layer `idx`: whether they are all there,
    /// and whether the layers below must not be walked (something else is on the way, or a
    /// directory on the way is opaque).
    fn walk_to_redirect(&self, idx: LayerIdx, path: &Path) -> Result<(bool, bool)> {
        let mut cur = PathBuf::new();
        let mut last = false;
        for comp in path.parent().into_iter().flat_map(Path::iter) {
            let dir = self.open_layer_dir(idx, &cur)?;
            let hidden = self.may_hold_wh(idx, &cur, dir.as_fd())? && whiteout::has_wh_file(dir.as_fd(), comp)?;
            match fd::try_stat_at(dir.as_fd(), comp)? {
                None if hidden => return Ok((false, true)),
                None => return Ok((false, last)),
                Some(st) if fd::kind_of(&st) != FileType::Directory => return Ok((false, true)),
                Some(_) => {}
            }
            cur.push(comp);
            last |= hidden || whiteout::dir_marks(self.open_layer_dir(idx, &cur)?.as_fd())?.opaque;
        }
        Ok((true, last))
    }

    /// Whether a layer below the upper one shows `name` in the directory at `dir_path`.
    pub(crate) fn lower_shows(&self, dir_path: &Path, layers: &[DirLayer], name: &OsStr) -> Result<Option<Found>> {
        let lowers: Vec<DirLayer> = layers.iter().filter(|d| !self.stack.is_upper(d.idx)).cloned().collect();
        if lowers.is_empty() {
            return Ok(None);
        }
        self.find_child(dir_path, &lowers, name)
    }

    /// Resolves a whole path from the root (used for hardlink aliases and directory trees).
    pub(crate) fn resolve_path(&self, path: &Path) -> Result<Option<Found>> {
        self.resolve_path_with(path, |_, _| {})
    }

    /// [`Self::resolve_path`], telling `dir` each directory it walks through (the root first)
    /// with its merged path and layers.
    pub(crate) fn resolve_path_with(
        &self,
        path: &Path,
        mut dir: impl FnMut(&Path, &[DirLayer]),
    ) -> Result<Option<Found>> {
        let root = self.inodes.get(super::inode::ROOT)?;
        let Src::Dir(mut layers) = root.src() else {
            return Err(Errno::NOTDIR);
        };
        let mut cur = PathBuf::new();
        let mut found = None;
        for comp in path.iter() {
            if found.is_some() && !matches!(found, Some(Found { src: Src::Dir(_), .. })) {
                return Ok(None);
            }
            dir(&cur, &layers);
            let Some(f) = self.find_child(&cur, &layers, comp)? else {
                return Ok(None);
            };
            if let Src::Dir(ls) = &f.src {
                layers = ls.clone();
            }
            cur.push(comp);
            found = Some(f);
        }
        Ok(found)
    }

    /// The mount-wide inode number of an object found in layer `idx`.
    ///
    /// An upper object copied up from a lower layer keeps the number it had there.
    pub(crate) fn ino_of(&self, idx: LayerIdx, dir: BorrowedFd<'_>, name: Option<&OsStr>, st: &Stat) -> u64 {
        if self.stack.is_upper(idx)
            && let Some(ino) = self.saved_ino(dir, name)
        {
            return ino;
        }
        self.stack.compose_ino(idx, st.st_ino)
    }

    /// The inode number kept in an upper object's `strata.ino` xattr.
    pub(crate) fn saved_ino(&self, dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Option<u64> {
        let ns = self.stack.upper.as_ref()?.ns;
        match xattr::get(dir, name, OsStr::new(&ns.name(INO_XATTR))) {
            Ok(Some(v)) if v.len() == 8 => Some(u64::from_le_bytes(v.try_into().ok()?)),
            _ => None,
        }
    }

    /// The directory node `ino` with its layers and path.
    pub(crate) fn dir_node(&self, ino: u64) -> Result<(Arc<Node>, Vec<DirLayer>, std::path::PathBuf)> {
        let node = self.inodes.get(ino)?;
        let Src::Dir(layers) = node.src() else {
            return Err(Errno::NOTDIR);
        };
        let path = self.inodes.path_of(&node)?;
        Ok((node, layers, path))
    }

    /// Where the shown instance of `node` (merged path `merged`) is in its layer.
    pub(crate) fn top_path(&self, merged: &Path, src: &Src) -> PathBuf {
        if self.stack.is_upper(src.top()) {
            return merged.to_path_buf();
        }
        src.top_path().map(Path::to_path_buf).unwrap_or_else(|| merged.to_path_buf())
    }

    /// Addresses the shown instance of `node` (the pinned fd if it has no name left).
    pub(crate) fn locate(&self, node: &Node) -> Result<At> {
        match self.inodes.path_of(node) {
            Ok(path) => {
                let src = node.src();
                self.at_in_layer(src.top(), &self.top_path(&path, &src))
            }
            Err(e) => match node.state.lock().pinned.clone() {
                Some(fdp) => Ok(At { dir: fdp, name: None }),
                None => Err(e),
            },
        }
    }

    /// Resolves `name` in directory `parent` and records the result in the inode table.
    pub fn lookup(&self, parent: u64, name: &OsStr) -> Result<(Arc<Node>, Stat)> {
        let _tree = self.tree.read();
        self.lookup_locked(parent, name)
    }

    pub(crate) fn lookup_locked(&self, parent: u64, name: &OsStr) -> Result<(Arc<Node>, Stat)> {
        let generation = self.generation();
        let (_, layers, path) = self.dir_node(parent)?;
        let found = self.find_child(&path, &layers, name)?.ok_or(Errno::NOENT)?;
        let node = self.inodes.remember(found.ino, found.kind(), parent, name, found.src.clone());
        node.state.lock().seen_at = Some(generation);
        Ok((node, found.st))
    }

    /// Looks up entry `e` of a listing of directory `parent` taken at change count
    /// `generation` (for readdirplus). While nothing changed since, the listing tells where
    /// the name is: no layer above `e.pos` has it or hides it, so a non-directory costs one
    /// stat in its own layer and a directory's merge starts there. Anything changed: a full lookup.
    pub fn lookup_listed(&self, parent: u64, e: &DirEntry, generation: u64) -> Result<(Arc<Node>, Stat)> {
        let _tree = self.tree.read();
        let found = match self.find_listed(parent, e, generation)? {
            Some(f) => f,
            None => return self.lookup_locked(parent, &e.name),
        };
        let node = self.inodes.remember(found.ino, found.kind(), parent, &e.name, found.src.clone());
        // A copy-up counts the change before it points the object's node at its copy: seen
        // here, the node may have been given the old place, which a full lookup corrects.
        if self.generation() != generation {
            self.inodes.forget(node.nodeid, 1);
            return self.lookup_locked(parent, &e.name);
        }
        node.state.lock().seen_at = Some(generation);
        Ok((node, found.st))
    }

    /// Where the listing says `e` is, if the listing still holds and the entry is simple.
    fn find_listed(&self, parent: u64, e: &DirEntry, generation: u64) -> Result<Option<Found>> {
        if self.generation() != generation {
            return Ok(None);
        }
        let (_, layers, path) = self.dir_node(parent)?;
        let Some(dl) = layers.get(e.pos) else {
            return Ok(None);
        };
        if e.kind == FileType::Directory {
            return self.find_child(&path, &layers[e.pos..], &e.name);
        }
        let found = self.file_in_layer(dl.idx, &self.inst_path(&path, dl).join(&e.name), dl.xwh)?;
        Ok(found.filter(|f| f.kind() == e.kind))
    }

    /// The non-directory at `path` of layer `idx`, where something else already says it is shown
    /// from there: one stat (`None` if it is gone, a directory or a whiteout — `xwh`: the
    /// directory may hold xattr whiteouts).
    pub(crate) fn file_in_layer(&self, idx: LayerIdx, path: &Path, xwh: bool) -> Result<Option<Found>> {
        let (dir, leaf) = split(path)?;
        let dfd = self.open_layer_dir(idx, dir)?;
        let Some(st) = fd::try_stat_at(dfd.as_fd(), leaf)? else {
            return Ok(None);
        };
        if fd::kind_of(&st) == FileType::Directory || whiteout::is_whiteout(dfd.as_fd(), leaf, &st, xwh) {
            return Ok(None);
        }
        let ino = self.ino_of(idx, dfd.as_fd(), Some(leaf), &st);
        let st = self.shown_owner(idx, dfd.as_fd(), Some(leaf), st);
        Ok(Some(Found { src: Src::File(idx, Arc::from(path)), st, ino }))
    }

    /// Path of a node (for tests and tools).
    pub fn path(&self, ino: u64) -> Result<PathBuf> {
        let node = self.inodes.get(ino)?;
        self.inodes.path_of(&node)
    }

    /// Gives the object of node `nodeid` a new node id (see [`super::inode::InodeTable::renumber`]).
    pub fn renumber(&self, nodeid: u64) -> Result<()> {
        let node = self.inodes.get(nodeid)?;
        let new = self.inodes.renumber(node.ino);
        log::debug!("object {} now answers as node {new:#x} (node {nodeid:#x} stays for open files)", node.ino);
        Ok(())
    }

    /// Drops `n` kernel lookups of `ino`.
    pub fn forget(&self, ino: u64, n: u64) {
        self.inodes.forget(ino, n);
    }
}

/// Splits a layer path into its parent and last component.
fn split(path: &Path) -> Result<(&Path, &OsStr)> {
    match (path.parent(), path.file_name()) {
        (Some(p), Some(n)) => Ok((p, n)),
        _ => Err(Errno::INVAL),
    }
}

/// The `overlay.redirect` of a directory instance (either namespace), if any.
pub fn redirect_of(dir: BorrowedFd<'_>) -> Option<Vec<u8>> {
    for key in ["trusted.overlay.redirect", "user.overlay.redirect"] {
        if let Ok(Some(v)) = xattr::get(dir, None, OsStr::new(key))
            && !v.is_empty()
        {
            return Some(v);
        }
    }
    None
}

/// Marks of a directory instance, for callers that hold its fd.
pub fn marks_of(dir: BorrowedFd<'_>) -> Result<DirMarks> {
    whiteout::dir_marks(dir)
}
