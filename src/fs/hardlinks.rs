//! The other names of a multiply-linked lower file (SEMANTICS.md "hardlinks"): at its copy-up,
//! every name the view still shows becomes a hardlink of the one upper copy.
//!
//! A layer knows the names of one of its inodes only as paths in that layer, and the view may
//! show them elsewhere: a directory on the way may have been renamed, its instances in the
//! layers below reached through an `overlay.redirect`. A layer path is mapped to merged paths
//! through *anchors* — merged directories with the places of their instances in the layers:
//! first the directories on the way to the copied name; for a name those do not reach, every
//! redirected directory of the layers above. Each candidate is checked by a lookup: it must
//! show this very object of this layer.
//!
//! Names of the original that the view does not show (a layer above hides them) still count in
//! its link count, as kernel overlayfs counts them (`index=on`): the copy keeps one link for each
//! in [`HIDDEN_LINKS`], so its link count is the original's, under Strata and under the kernel.
//!
//! Placing the copy and linking the other names are several steps: a record in
//! [`HIDDEN_LINKS`], written before the copy is placed and removed after the last link, lets the
//! next mount finish the links if the daemon died in between (kernel overlayfs keeps its index
//! for the same purpose), so that a crash never leaves the names of one file as two objects.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::FileType;

use super::inode::{DirLayer, Src};
use super::layers::LayerIdx;
use super::lookup::{Found, redirect_of};
use super::{Errno, Overlay, Result};
use crate::sys::fd::{self, RawEntry};

/// The directory beside the work dir that holds a link to a copied-up file for each name of its
/// original the view does not show. A file left with no other link is removed at mount.
pub const HIDDEN_LINKS: &str = "hidden-links";

/// Name prefix of a record in [`HIDDEN_LINKS`] of the copy-up of a file with other names, in
/// progress: `pending.INO` holds the lower layer's index, the file's path there and the merged
/// path of the copy, separated by NUL bytes.
const PENDING: &str = "pending.";

/// A merged directory and where its instances are in their layers.
struct Anchor {
    merged: PathBuf,
    layers: Vec<DirLayer>,
}

impl Overlay {
    /// After the lower file `found` was copied up to `path`: links every other name of it that
    /// the view shows to the copy, and keeps a link in [`HIDDEN_LINKS`] for each other one. A
    /// name that cannot be linked is logged and keeps showing the lower file.
    pub(crate) fn link_other_names(&self, path: &Path, found: &Found) {
        let Src::File(idx, lower) = &found.src else { return };
        if found.st.st_nlink <= 1 {
            return;
        }
        let mut linked = 0;
        for name in self.other_names(*idx, lower, path, found.st.st_ino) {
            match self.link_alias(path, &name) {
                Ok(()) => {
                    linked += 1;
                    self.trace(format_args!("copy-up   /{}  (hardlink of /{})", name.display(), path.display()));
                }
                Err(e) => {
                    log::warn!("hardlink /{} of /{} not linked after copy-up: {e}", name.display(), path.display())
                }
            }
        }
        if let Err(e) = self.keep_hidden_links(path, found.ino, found.st.st_nlink) {
            log::warn!("/{}: hidden names not counted after copy-up ({linked} linked): {e}", path.display());
        }
    }

    /// Before the copy of `found` (a lower file with other names) is placed at `path`: writes the
    /// record the next mount finishes its links from. Its name, if written.
    pub(crate) fn note_pending_links(&self, path: &Path, found: &Found) -> Result<Option<OsString>> {
        let Src::File(idx, lower) = &found.src else { return Ok(None) };
        if found.st.st_nlink <= 1 || self.stack.is_upper(*idx) {
            return Ok(None);
        }
        let hidden = self.stack.upper()?.hidden.as_fd();
        let name = OsString::from(format!("{PENDING}{:016x}", found.ino));
        let mut record = idx.to_string().into_bytes();
        for part in [lower.as_os_str(), path.as_os_str()] {
            record.push(0);
            record.extend_from_slice(part.as_bytes());
        }
        fd::ok_if_missing(fd::unlink_at(hidden, &name))?;
        let flags = rustix::fs::OFlags::CREATE | rustix::fs::OFlags::EXCL | rustix::fs::OFlags::WRONLY;
        let file = fd::open_at(hidden, &name, flags, rustix::fs::Mode::from_raw_mode(0o600))?;
        std::fs::File::from(file).write_all(&record).map_err(|e| crate::sys::errno_of(&e))?;
        Ok(Some(name))
    }

    /// Removes the record [`Self::note_pending_links`] wrote: the links are made.
    pub(crate) fn done_pending_links(&self, record: Option<OsString>) {
        let (Some(name), Some(upper)) = (record, &self.stack.upper) else { return };
        if let Err(e) = fd::ok_if_missing(fd::unlink_at(upper.hidden.as_fd(), &name)) {
            log::warn!("removing the record of a finished copy-up: {e}");
        }
    }

    /// At mount: finishes the copy-ups that a dead daemon left between placing the copy of a
    /// file with other names and linking them, from the records they left.
    pub(crate) fn finish_pending_links(&self) {
        let Some(upper) = &self.stack.upper else { return };
        let hidden = upper.hidden.as_fd();
        let entries = fd::open_dir_read(hidden, Path::new("")).and_then(fd::read_dir).unwrap_or_default();
        for e in entries.iter().filter(|e| e.name.as_bytes().starts_with(PENDING.as_bytes())) {
            match self.finish_pending(hidden, &e.name) {
                Ok(Some(path)) => {
                    log::warn!("/{}: linked its other names, which a crash left unlinked", path.display())
                }
                Ok(None) => {}
                Err(err) => log::warn!("an interrupted copy-up left a record that cannot be used: {err}"),
            }
            let _ = fd::ok_if_missing(fd::unlink_at(hidden, &e.name));
        }
    }

    /// Finishes the copy-up of one record, if its copy was placed: the merged path, if so.
    fn finish_pending(&self, hidden: BorrowedFd<'_>, record: &OsStr) -> Result<Option<PathBuf>> {
        let file = fd::open_at(hidden, record, rustix::fs::OFlags::RDONLY, rustix::fs::Mode::empty())?;
        let mut bytes = Vec::new();
        std::fs::File::from(file).read_to_end(&mut bytes).map_err(|e| crate::sys::errno_of(&e))?;
        let mut parts = bytes.split(|b| *b == 0);
        let (Some(idx), Some(lower), Some(merged), None) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(Errno::INVAL);
        };
        let idx: LayerIdx = std::str::from_utf8(idx).ok().and_then(|i| i.parse().ok()).ok_or(Errno::INVAL)?;
        if idx as usize >= self.stack.layers.len() || self.stack.is_upper(idx) {
            return Err(Errno::INVAL);
        }
        let (lower, merged) = (Path::new(OsStr::from_bytes(lower)), PathBuf::from(OsStr::from_bytes(merged)));
        let Some(original) = self.file_in_layer(idx, lower, false)? else { return Ok(None) };
        // Not placed (the daemon died before): the work dir held the copy, and was emptied.
        match self.file_in_layer(0, &merged, true)? {
            Some(copy) if copy.ino == original.ino => {
                self.link_other_names(&merged, &original);
                Ok(Some(merged))
            }
            _ => Ok(None),
        }
    }

    /// The merged paths of the other names of inode `ino` at `lower` in layer `idx`, shown at
    /// `path`, that the view still shows from there.
    fn other_names(&self, idx: LayerIdx, lower: &Path, path: &Path, ino: u64) -> Vec<PathBuf> {
        let aliases = self.hardlink_aliases(idx, ino, lower);
        if aliases.is_empty() {
            return Vec::new();
        }
        let mut along = Vec::new();
        let walked = self.resolve_path_with(path, |merged, layers| {
            along.push(Anchor { merged: merged.to_path_buf(), layers: layers.to_vec() })
        });
        if let Err(e) = walked {
            log::warn!("hardlinks of /{} not found after copy-up: {e}", path.display());
            return Vec::new();
        }
        let mut redirected = None;
        let mut names = Vec::new();
        for alias in aliases {
            let mut shown = self.shown_at(idx, &alias, &along);
            if shown.is_empty() {
                shown = self.shown_at(idx, &alias, redirected.get_or_insert_with(|| self.redirect_anchors(idx)));
            }
            names.extend(shown);
        }
        names
    }

    /// Links the upper copy at `copied` (object `ino`) into [`HIDDEN_LINKS`] until it has the
    /// `nlink` links of its original (links made before, by a copy-up a crash interrupted,
    /// count).
    fn keep_hidden_links(&self, copied: &Path, ino: u64, nlink: u64) -> Result<()> {
        let upper = self.stack.upper()?;
        let from = self.at_in_layer(0, copied)?;
        let name = from.name().ok_or(Errno::INVAL)?;
        let st = fd::stat_at(from.dir(), name)?;
        let mut missing = nlink.saturating_sub(st.st_nlink);
        let mut k = 0;
        while missing > 0 {
            let link = OsString::from(format!("{ino:016x}.{k}"));
            k += 1;
            match fd::link_at(from.dir(), name, upper.hidden.as_fd(), &link) {
                Ok(()) => {}
                Err(Errno::EXIST) => {
                    let there = fd::stat_at(upper.hidden.as_fd(), &link)?;
                    if (there.st_dev, there.st_ino) == (st.st_dev, st.st_ino) {
                        continue;
                    }
                    // Left by an earlier copy of an object with this number: replaced.
                    fd::unlink_at(upper.hidden.as_fd(), &link)?;
                    fd::link_at(from.dir(), name, upper.hidden.as_fd(), &link)?;
                }
                Err(e) => return Err(e),
            }
            missing -= 1;
        }
        Ok(())
    }

    /// Links the merged name `alias` (which shows a lower file) to the upper copy at `copied`.
    fn link_alias(&self, copied: &Path, alias: &Path) -> Result<()> {
        let name = alias.file_name().ok_or(Errno::INVAL)?;
        let parent = self.ensure_upper_dir(alias.parent().unwrap_or(Path::new("")))?;
        let from = self.at_in_layer(0, copied)?;
        let pst = fd::stat_fd(parent.as_fd())?;
        self.changed();
        fd::link_at(from.dir(), from.name().ok_or(Errno::INVAL)?, parent.as_fd(), name)?;
        self.restore_times(parent.as_fd(), &pst);
        self.mark_impure_known(parent.as_fd(), &pst);
        self.dir_changed(parent.as_fd(), &pst);
        Ok(())
    }

    /// Other names of inode `ino` in layer `idx` (the layer is scanned once, on first need).
    fn hardlink_aliases(&self, idx: LayerIdx, ino: u64, except: &Path) -> Vec<PathBuf> {
        let layer = self.stack.layer(idx);
        let map = layer.hardlinks.get_or_init(|| scan_hardlinks(layer.fd()));
        map.get(&ino).map(|v| v.iter().filter(|p| p.as_path() != except).cloned().collect()).unwrap_or_default()
    }

    /// The merged paths, reached through `anchors`, that show the object at `path` of layer `idx`.
    fn shown_at(&self, idx: LayerIdx, path: &Path, anchors: &[Anchor]) -> Vec<PathBuf> {
        let mut tried: Vec<PathBuf> = Vec::new();
        let mut shown = Vec::new();
        for a in anchors {
            for dl in a.layers.iter().filter(|d| d.idx == idx) {
                let Ok(rest) = path.strip_prefix(&dl.path) else { continue };
                let merged = if rest.as_os_str().is_empty() { a.merged.clone() } else { a.merged.join(rest) };
                if tried.contains(&merged) {
                    continue;
                }
                if let Ok(Some(f)) = self.resolve_path(&merged)
                    && shows(&f, idx, path)
                {
                    shown.push(merged.clone());
                }
                tried.push(merged);
            }
        }
        shown
    }

    /// The root and every redirected directory of the upper layer and of the lower layers
    /// above `below`, where the view shows them.
    fn redirect_anchors(&self, below: LayerIdx) -> Vec<Anchor> {
        let dir_at = |merged: PathBuf| match self.resolve_path(&merged) {
            Ok(Some(Found { src: Src::Dir(layers), .. })) => Some(Anchor { merged, layers }),
            _ => None,
        };
        let mut anchors: Vec<Anchor> = match self.inodes.get(super::inode::ROOT).map(|r| r.src()) {
            Ok(Src::Dir(layers)) => vec![Anchor { merged: PathBuf::new(), layers }],
            _ => Vec::new(),
        };
        if let Ok(root) = self.stack.upper_root() {
            // In the upper layer a directory's path is its merged path.
            anchors.extend(scan_redirects(root).into_iter().filter_map(dir_at));
        }
        for k in self.stack.first_lower()..below {
            let layer = self.stack.layer(k);
            for path in layer.redirects.get_or_init(|| scan_redirects(layer.fd())) {
                let shown: Vec<Anchor> = self.shown_at(k, path, &anchors).into_iter().filter_map(dir_at).collect();
                anchors.extend(shown);
            }
        }
        anchors
    }
}

/// Opens (creating it if needed) [`HIDDEN_LINKS`] in the work dir `workdir`, and removes the
/// links of files that have no other link left (every name the view showed was removed).
pub fn open_hidden_links(workdir: BorrowedFd<'_>) -> Result<OwnedFd> {
    match fd::mkdir_at(workdir, OsStr::new(HIDDEN_LINKS), 0o700) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(e) => return Err(e),
    }
    let dir = fd::open_dir(workdir, Path::new(HIDDEN_LINKS))?;
    let mut by_file: HashMap<u64, (u64, Vec<OsString>)> = HashMap::new();
    for e in fd::read_dir(fd::open_dir_read(dir.as_fd(), Path::new(""))?)? {
        if e.name.as_bytes().starts_with(PENDING.as_bytes()) {
            continue; // read once the mount is ready (see `Overlay::finish_pending_links`)
        }
        let st = fd::stat_at(dir.as_fd(), &e.name)?;
        let file = by_file.entry(st.st_ino).or_insert((st.st_nlink, Vec::new()));
        file.1.push(e.name);
    }
    for (nlink, names) in by_file.into_values() {
        if nlink <= names.len() as u64 {
            for name in names {
                fd::ok_if_missing(fd::unlink_at(dir.as_fd(), &name))?;
            }
        }
    }
    Ok(dir)
}

/// Whether `found` is the object at `path` of layer `idx` (a file shown from there, or a
/// directory with an instance there).
fn shows(found: &Found, idx: LayerIdx, path: &Path) -> bool {
    match &found.src {
        Src::File(i, p) => *i == idx && **p == *path,
        Src::Dir(layers) => layers.iter().any(|d| d.idx == idx && *d.path == *path),
    }
}

/// Finds every multiply-linked non-directory of a layer, by inode number.
fn scan_hardlinks(root: BorrowedFd<'_>) -> HashMap<u64, Vec<PathBuf>> {
    let mut map: HashMap<u64, Vec<PathBuf>> = HashMap::new();
    walk_dirs(root, |dir, dfd, entries| {
        for e in entries.iter().filter(|e| e.kind != FileType::Directory) {
            if let Ok(st) = fd::stat_at(dfd, &e.name)
                && fd::kind_of(&st) != FileType::Directory
                && st.st_nlink > 1
                && !fd::is_whiteout_dev(&st)
            {
                map.entry(st.st_ino).or_default().push(dir.join(&e.name));
            }
        }
    });
    map
}

/// The paths of a layer's directories that carry an `overlay.redirect`.
fn scan_redirects(root: BorrowedFd<'_>) -> Vec<PathBuf> {
    let mut found = Vec::new();
    walk_dirs(root, |dir, dfd, _| {
        if !dir.as_os_str().is_empty() && redirect_of(dfd).is_some() {
            found.push(dir.to_path_buf());
        }
    });
    found
}

/// Visits every directory of the tree at `root` (the root first) with its path, an fd of it
/// and its entries. Each directory is opened from its parent's fd by its one name, so the
/// depth of a tree is no limit; unreadable directories are skipped.
fn walk_dirs(root: BorrowedFd<'_>, mut visit: impl FnMut(&Path, BorrowedFd<'_>, &[RawEntry])) {
    let Ok(top) = fd::dup(root) else { return };
    let mut pending: Vec<(Arc<OwnedFd>, OsString, PathBuf)> = Vec::new();
    let mut next = Some((Arc::new(top), None, PathBuf::new()));
    while let Some((parent, name, path)) = next.take().or_else(|| pending.pop().map(|(p, n, a)| (p, Some(n), a))) {
        let opened = fd::open_dir_read(parent.as_fd(), name.as_deref().map(Path::new).unwrap_or(Path::new("")));
        let Ok(rfd) = opened else { continue };
        let Ok(dfd) = fd::dup(rfd.as_fd()) else { continue };
        let Ok(entries) = fd::read_dir(rfd) else { continue };
        visit(&path, dfd.as_fd(), &entries);
        let dfd = Arc::new(dfd);
        for e in entries {
            let is_dir = match e.kind {
                FileType::Directory => true,
                FileType::Unknown => {
                    fd::stat_at(dfd.as_fd(), &e.name).is_ok_and(|st| fd::kind_of(&st) == FileType::Directory)
                }
                _ => false,
            };
            if is_dir {
                pending.push((dfd.clone(), e.name.clone(), path.join(&e.name)));
            }
        }
    }
}
