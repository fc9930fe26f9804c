//! Merged directory listings (SEMANTICS.md "Readdir").
//!
//! The union of names over the directory's layers, top-most instance wins, whiteouts and `.wh.*`
//! hidden. Entries are not stat'ed except where the type alone cannot tell (device nodes, which
//! may be whiteouts; empty files in xattr-whiteout dirs).
//!
//! Listings need no open handle (the kernel skips OPENDIR and RELEASEDIR when the daemon lets
//! it): a reader's offset is the cookie of the last entry it got — a keyed hash of the name —
//! and a listing is served in cookie order, so any listing of the directory, the one the reader
//! began or a newer one, goes on from there. A name that stays is never given twice or missed,
//! even across changes (POSIX leaves names added or removed meanwhile open), as with ext4's hash
//! cookies. Recent listings are kept ([`Listings`]), so a reader's next chunk is not a new
//! listing.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::hash::{BuildHasher, RandomState};
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Arc, Weak};

use lru::LruCache;
use parking_lot::Mutex;
use rustix::fs::FileType;

use super::inode::{DirLayer, Node, ROOT, Src};
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
    /// Its place in a listing (READDIR's offset): set by [`Overlay::readdir`], 0 elsewhere.
    pub cookie: u64,
}

/// The cookies of `.` and `..`; a name's cookie is above them (0 starts a listing).
const DOT: u64 = 1;
const DOTDOT: u64 = 2;

/// Entries the kept listings may hold together (about 5 MiB); the newest is kept whatever its
/// size.
const LISTINGS_BUDGET: usize = 64 * 1024;

/// A merged listing of one directory as READDIR serves it.
#[derive(Debug)]
pub struct Listing {
    /// `.`, `..`, then the merged entries, in increasing cookie order.
    pub entries: Vec<DirEntry>,
    /// The change count it was taken at ([`Overlay::lookup_listed`] uses it).
    pub generation: u64,
    /// The directory's node (a node id may come back for another directory).
    node: Weak<Node>,
}

/// Recent listings by node id, and the key of the cookie hash (per mount).
pub struct Listings {
    map: Mutex<(LruCache<u64, Arc<Listing>>, usize)>,
    keys: RandomState,
}

impl Default for Listings {
    fn default() -> Self {
        Listings { map: Mutex::new((LruCache::unbounded(), 0)), keys: RandomState::new() }
    }
}

impl Listings {
    /// The cookie of `name`: 3 ..= `i64::MAX` (positive for `telldir`).
    fn cookie(&self, name: &OsStr) -> u64 {
        (self.keys.hash_one(name.as_bytes()) >> 1).max(DOTDOT + 1)
    }

    /// The kept listing of `node`, if any.
    fn get(&self, node: &Arc<Node>) -> Option<Arc<Listing>> {
        let mut map = self.map.lock();
        let l = map.0.get(&node.nodeid)?;
        std::ptr::eq(l.node.as_ptr(), Arc::as_ptr(node)).then(|| l.clone())
    }

    /// Keeps `listing` of node `nodeid`, dropping the least recent ones over the budget.
    fn put(&self, nodeid: u64, listing: Arc<Listing>) {
        let mut guard = self.map.lock();
        let (map, held) = &mut *guard;
        *held += listing.entries.len();
        if let Some(old) = map.put(nodeid, listing) {
            *held -= old.entries.len();
        }
        while *held > LISTINGS_BUDGET && map.len() > 1 {
            match map.pop_lru() {
                Some((_, old)) => *held -= old.entries.len(),
                None => break,
            }
        }
    }
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
                return Ok(Some(DirEntry { name: e.name, ino: 0, kind, pos, cookie: 0 }));
            }
            kind = fd::kind_of(&s);
            st = Some(s);
        }
        let mut ino = self.stack.compose_ino(dl.idx, st.map(|s| s.st_ino).unwrap_or(e.ino));
        if impure && let Some(saved) = self.saved_ino(dir, Some(&e.name)) {
            ino = saved;
        }
        Ok(Some(DirEntry { name: e.name, ino, kind, pos, cookie: 0 }))
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

    /// The listing of directory `nodeid` that READDIR at `offset` (0, or the cookie of the last
    /// entry a reader got) goes on from, and where in it to go on.
    pub fn readdir(&self, nodeid: u64, offset: u64) -> Result<(Arc<Listing>, usize)> {
        let node = self.inodes.get(nodeid)?;
        // Read first: a change made while listing makes the listing look older, not newer.
        let generation = self.generation();
        let listing = match self.listings.get(&node) {
            // A reader going on keeps to the listing it began, as a handle's snapshot would; one
            // starting (or rewinding) sees the directory as it is now.
            Some(l) if offset != 0 || l.generation == generation => l,
            _ => {
                let l = Arc::new(self.listing(nodeid, generation)?);
                self.listings.put(nodeid, l.clone());
                l
            }
        };
        let start = listing.entries.partition_point(|e| e.cookie <= offset);
        Ok((listing, start))
    }

    /// A fresh full listing of directory `nodeid` (`.`, `..`, then the merged names in cookie
    /// order), not kept: what a reader from offset 0 would get after any change.
    pub fn list_dir(&self, nodeid: u64) -> Result<Vec<DirEntry>> {
        Ok(self.listing(nodeid, self.generation())?.entries)
    }

    /// A full listing of directory `nodeid` in cookie order, `.` and `..` first.
    fn listing(&self, nodeid: u64, generation: u64) -> Result<Listing> {
        let _tree = self.tree.read();
        let (node, layers, path) = self.dir_node(nodeid)?;
        let parent = node.state.lock().names.first().map(|(p, _)| *p).unwrap_or(ROOT);
        let parent_ino = self.inodes.find(parent).map(|p| p.ino).unwrap_or(ROOT);
        let mut entries = self.merged_entries(&path, &layers)?;
        for e in &mut entries {
            e.cookie = self.listings.cookie(&e.name);
        }
        entries.sort_unstable_by(|a, b| (a.cookie, &a.name).cmp(&(b.cookie, &b.name)));
        // Two names with one hash (about one directory in 10^7 at a million entries): the later
        // takes the next free cookie.
        for i in 1..entries.len() {
            if entries[i].cookie <= entries[i - 1].cookie {
                entries[i].cookie = entries[i - 1].cookie.saturating_add(1);
            }
        }
        let dots = [
            DirEntry { name: ".".into(), ino: node.ino, kind: FileType::Directory, pos: usize::MAX, cookie: DOT },
            DirEntry { name: "..".into(), ino: parent_ino, kind: FileType::Directory, pos: usize::MAX, cookie: DOTDOT },
        ];
        entries.splice(0..0, dots);
        Ok(Listing { entries, generation, node: Arc::downgrade(&node) })
    }

    /// The layers of directory `ino` (for callers that only need to know its make-up).
    pub fn dir_layers(&self, ino: u64) -> Result<Vec<DirLayer>> {
        match self.inodes.get(ino)?.src() {
            Src::Dir(ls) => Ok(ls),
            Src::File(..) => Err(Errno::NOTDIR),
        }
    }
}
