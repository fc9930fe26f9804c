//! A bounded cache of directory fds, so that resolving names does not walk paths again.
//!
//! Lower layers never change while mounted, so their entries (keyed by layer and path) stay
//! valid for the life of the mount. Upper entries are keyed by merged path and dropped whenever
//! an operation removes, moves or replaces a directory there.

use std::num::NonZeroUsize;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use lru::LruCache;
use parking_lot::Mutex;

use super::layers::LayerIdx;

/// How many directory fds stay open at most (well under the usual `nofile` limit).
const CAPACITY: usize = 2048;

/// Cached `O_PATH` fds of layer directories.
pub struct DirCache {
    map: Mutex<LruCache<(LayerIdx, PathBuf), Arc<OwnedFd>>>,
    /// Inode numbers of upper directories marked `overlay.impure` (forgotten with the upper
    /// entries: a number may come back for another directory).
    impure: Mutex<std::collections::HashSet<u64>>,
    /// Whether a layer directory has `.wh.NAME` entries (learned by reading it once): where it
    /// has none, a name missing there needs no second look for its `.wh.` form.
    wh: Mutex<std::collections::HashMap<(LayerIdx, PathBuf), bool>>,
}

impl Default for DirCache {
    fn default() -> Self {
        DirCache {
            map: Mutex::new(LruCache::new(NonZeroUsize::new(CAPACITY).unwrap_or(NonZeroUsize::MIN))),
            impure: Mutex::default(),
            wh: Mutex::default(),
        }
    }
}

impl DirCache {
    /// The cached fd of directory `path` of layer `idx`.
    pub fn get(&self, idx: LayerIdx, path: &Path) -> Option<Arc<OwnedFd>> {
        self.map.lock().get(&(idx, path.to_path_buf())).cloned()
    }

    /// Remembers the fd of directory `path` of layer `idx`.
    pub fn put(&self, idx: LayerIdx, path: &Path, fd: Arc<OwnedFd>) {
        self.map.lock().put((idx, path.to_path_buf()), fd);
    }

    /// Whether the upper directory with inode number `ino` is known to be marked impure.
    pub fn known_impure(&self, ino: u64) -> bool {
        self.impure.lock().contains(&ino)
    }

    /// Remembers that the upper directory with inode number `ino` is marked impure.
    pub fn note_impure(&self, ino: u64) {
        let mut set = self.impure.lock();
        if set.len() >= CAPACITY * 8 {
            set.clear();
        }
        set.insert(ino);
    }

    /// Whether directory `path` of layer `idx` is known to have (`Some(true)`) or not have
    /// `.wh.` entries.
    pub fn has_wh(&self, idx: LayerIdx, path: &Path) -> Option<bool> {
        self.wh.lock().get(&(idx, path.to_path_buf())).copied()
    }

    /// Remembers whether directory `path` of layer `idx` has `.wh.` entries.
    pub fn note_wh(&self, idx: LayerIdx, path: &Path, has: bool) {
        let mut map = self.wh.lock();
        if map.len() >= CAPACITY * 8 {
            map.clear();
        }
        map.insert((idx, path.to_path_buf()), has);
    }

    /// Forgets every entry of layer `idx` (the upper layer, after a directory moved or went).
    pub fn forget_layer(&self, idx: LayerIdx) {
        self.impure.lock().clear();
        self.wh.lock().retain(|(l, _), _| *l != idx);
        let mut map = self.map.lock();
        let stale: Vec<_> = map.iter().filter(|((l, _), _)| *l == idx).map(|(k, _)| k.clone()).collect();
        for k in stale {
            map.pop(&k);
        }
    }
}
