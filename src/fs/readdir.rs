//! Merged directory listings (SEMANTICS.md "Readdir").
//!
//! The union of names over the directory's layers, top-most instance wins, whiteouts and `.wh.*`
//! hidden. A listing is a snapshot taken when a handle reads from offset 0, so offsets (index + 1)
//! stay stable for the life of the handle. Entries are not stat'ed except where the type alone
//! cannot tell (device nodes, which may be whiteouts; empty files in xattr-whiteout dirs).

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::Path;

use rustix::fs::FileType;

use super::inode::{DirLayer, ROOT, Src};
use super::whiteout::{self, OPAQUE_MARKER};
use super::{Errno, Overlay, Result};
use crate::sys::{fd, xattr};

/// One entry of a merged listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirEntry {
    /// The name.
    pub name: OsString,
    /// Inode number in the mount (the same `stat` reports).
    pub ino: u64,
    /// File type.
    pub kind: FileType,
    /// Where in the directory's layers the shown instance is (`usize::MAX` for `.` and `..`).
    pub pos: usize,
}

impl Overlay {
    /// Lists the merged directory at `path` made of `layers` (without `.` and `..`).
    pub(crate) fn merged_entries(&self, path: &Path, layers: &[DirLayer]) -> Result<Vec<DirEntry>> {
        let mut seen: HashSet<OsString> = HashSet::new();
        let mut out = Vec::new();
        for (pos, dl) in layers.iter().enumerate() {
            let dir = match fd::open_dir_read(self.stack.layer(dl.idx).fd(), &self.inst_path(path, dl)) {
                Ok(f) => f,
                Err(Errno::NOENT) | Err(Errno::NOTDIR) => continue,
                Err(e) => return Err(e),
            };
            let impure = self.stack.is_upper(dl.idx) && self.is_impure(dir.as_fd());
            let mut hides = Vec::new();
            for e in fd::read_dir(fd::dup(dir.as_fd())?)? {
                if let Some(target) = whiteout::wh_target(&e.name) {
                    hides.push(target.to_owned());
                    continue;
                }
                if e.name == OPAQUE_MARKER || seen.contains(&e.name) {
                    continue;
                }
                let Some(entry) = self.entry_of(dir.as_fd(), dl, pos, impure, e)? else {
                    continue;
                };
                seen.insert(entry.name.clone());
                if entry.ino != 0 {
                    out.push(entry);
                }
            }
            if !self.writes_wh_files(dl.idx) {
                self.dirs.note_wh(dl.idx, &self.inst_path(path, dl), !hides.is_empty());
            }
            seen.extend(hides);
        }
        Ok(out)
    }

    /// Classifies one raw entry: `None` if it vanished, `ino == 0` for a whiteout (hides only).
    fn entry_of(
        &self,
        dir: BorrowedFd<'_>,
        dl: &DirLayer,
        pos: usize,
        impure: bool,
        e: fd::RawEntry,
    ) -> Result<Option<DirEntry>> {
        let mut kind = e.kind;
        let needs_stat =
            matches!(kind, FileType::Unknown | FileType::CharacterDevice) || (dl.xwh && kind == FileType::RegularFile);
        let mut st = None;
        if needs_stat {
            let Some(s) = fd::try_stat_at(dir, &e.name)? else {
                return Ok(None);
            };
            if whiteout::is_whiteout(dir, &e.name, &s, dl.xwh) {
                return Ok(Some(DirEntry { name: e.name, ino: 0, kind, pos }));
            }
            kind = fd::kind_of(&s);
            st = Some(s);
        }
        let mut ino = self.stack.compose_ino(dl.idx, st.map(|s| s.st_ino).unwrap_or(e.ino));
        if impure && let Some(saved) = self.saved_ino(dir, Some(&e.name)) {
            ino = saved;
        }
        Ok(Some(DirEntry { name: e.name, ino, kind, pos }))
    }

    /// Whether an upper directory may hold copied-up entries (`overlay.impure`).
    pub(crate) fn is_impure(&self, dir: BorrowedFd<'_>) -> bool {
        let Some(upper) = &self.stack.upper else {
            return false;
        };
        xattr::equals(dir, None, OsStr::new(&upper.ns.name("impure")), b"y")
    }

    /// Whether the merged directory at `path` made of `layers` has no entries.
    pub(crate) fn is_empty_dir(&self, path: &Path, layers: &[DirLayer]) -> Result<bool> {
        Ok(self.merged_entries(path, layers)?.is_empty())
    }

    /// A full listing of directory `ino`, with `.` and `..` first.
    pub fn list_dir(&self, nodeid: u64) -> Result<Vec<DirEntry>> {
        let _tree = self.tree.read();
        let (node, layers, path) = self.dir_node(nodeid)?;
        let parent = node.state.lock().names.first().map(|(p, _)| *p).unwrap_or(ROOT);
        let parent_ino = self.inodes.find(parent).map(|p| p.ino).unwrap_or(ROOT);
        let mut out = vec![
            DirEntry { name: ".".into(), ino: node.ino, kind: FileType::Directory, pos: usize::MAX },
            DirEntry { name: "..".into(), ino: parent_ino, kind: FileType::Directory, pos: usize::MAX },
        ];
        out.extend(self.merged_entries(&path, &layers)?);
        Ok(out)
    }

    /// The layers of directory `ino` (for callers that only need to know its make-up).
    pub fn dir_layers(&self, ino: u64) -> Result<Vec<DirLayer>> {
        match self.inodes.get(ino)?.src() {
            Src::Dir(ls) => Ok(ls),
            Src::File(..) => Err(Errno::NOTDIR),
        }
    }
}
