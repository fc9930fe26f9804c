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

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::FileType;

use super::inode::{DirLayer, Src};
use super::layers::LayerIdx;
use super::lookup::{Found, redirect_of};
use super::{Errno, Overlay, Result};
use crate::sys::fd::{self, RawEntry};

/// A merged directory and where its instances are in their layers.
struct Anchor {
    merged: PathBuf,
    layers: Vec<DirLayer>,
}

impl Overlay {
    /// After the lower file `found` was copied up to `path`: links every other name of it that
    /// the view shows to the copy. A name that cannot be linked is logged and keeps showing
    /// the lower file.
    pub(crate) fn link_other_names(&self, path: &Path, found: &Found) {
        let Src::File(idx, lower) = &found.src else { return };
        if found.st.st_nlink <= 1 {
            return;
        }
        let aliases = self.hardlink_aliases(*idx, found.st.st_ino, lower);
        if aliases.is_empty() {
            return;
        }
        let mut along = Vec::new();
        let walked = self.resolve_path_with(path, |merged, layers| {
            along.push(Anchor { merged: merged.to_path_buf(), layers: layers.to_vec() })
        });
        if let Err(e) = walked {
            log::warn!("hardlinks of /{} not linked after copy-up: {e}", path.display());
            return;
        }
        let mut redirected = None;
        for alias in aliases {
            let mut names = self.shown_at(*idx, &alias, &along);
            if names.is_empty() {
                names = self.shown_at(*idx, &alias, redirected.get_or_insert_with(|| self.redirect_anchors(*idx)));
            }
            for name in names {
                match self.link_alias(path, &name) {
                    Ok(()) => {
                        self.trace(format_args!("copy-up   /{}  (hardlink of /{})", name.display(), path.display()))
                    }
                    Err(e) => {
                        log::warn!("hardlink /{} of /{} not linked after copy-up: {e}", name.display(), path.display())
                    }
                }
            }
        }
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
