//! The inode table: one node per object of the merged view, keyed by its FUSE node id.
//!
//! An object's node id is its stable inode number (`st_ino`), except after [`InodeTable::renumber`]:
//! an object copied up while files of it were open in passthrough mode on its lower file gets a
//! fresh node id — a fresh kernel inode, free to pass through to the upper copy — and keeps its
//! `st_ino`. Names of one real inode (hardlinks) share a node. Nodes live while the kernel holds
//! lookups on them or a handle is open; `forget` drops them.

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};
use rustix::fs::FileType;

use super::layers::LayerIdx;
use crate::sys::{Errno, Result};

/// FUSE's root node id.
pub const ROOT: u64 = 1;

/// One layer's instance of a merged directory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirLayer {
    /// The layer.
    pub idx: LayerIdx,
    /// Whether empty files in this instance may be xattr whiteouts.
    pub xwh: bool,
    /// Where the instance is in its layer. In a lower layer this may differ from the merged
    /// path (a renamed directory follows its `overlay.redirect`); in the upper layer the merged
    /// path is authoritative and this is only what it was when looked up.
    pub path: Arc<Path>,
}

impl DirLayer {
    /// An instance in `idx` at `path`.
    pub fn new(idx: LayerIdx, xwh: bool, path: &Path) -> DirLayer {
        DirLayer { idx, xwh, path: Arc::from(path) }
    }
}

/// Where an object of the merged view comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Src {
    /// A non-directory, shown from this layer, at this path in it (see [`DirLayer::path`]).
    File(LayerIdx, Arc<Path>),
    /// A directory merged from these instances, top first.
    Dir(Vec<DirLayer>),
}

impl Src {
    /// The layer whose instance is shown (the top one).
    pub fn top(&self) -> LayerIdx {
        match self {
            Src::File(l, _) => *l,
            Src::Dir(ls) => ls.first().map(|d| d.idx).unwrap_or(0),
        }
    }

    /// The path of the shown instance in its layer, as recorded.
    pub fn top_path(&self) -> Option<&Path> {
        match self {
            Src::File(_, p) => Some(p),
            Src::Dir(ls) => ls.first().map(|d| &*d.path),
        }
    }

    /// A source in the upper layer only.
    pub fn upper(kind: FileType, path: &Path) -> Src {
        if kind == FileType::Directory {
            Src::Dir(vec![DirLayer::new(0, false, path)])
        } else {
            Src::File(0, Arc::from(path))
        }
    }
}

/// Mutable facts about a node.
#[derive(Debug)]
pub struct NodeState {
    /// The names it is known by; none once the object is unlinked.
    pub names: Names,
    /// Where the object is shown from.
    pub src: Src,
    /// An `O_PATH` fd kept when the last name went while handles were open.
    pub pinned: Option<Arc<OwnedFd>>,
    /// The overlay's change count read before the last lookup: while the count stays, the
    /// node's `src` is where the object is (see `Overlay::copy_up`).
    pub seen_at: Option<u64>,
    /// What is known of the xattrs of the instance `src` shows (kept for lower layers only,
    /// which never change under a mount; forgotten whenever `src` changes).
    pub xattrs: XattrsKnown,
    /// Strata made this object and no xattr was set or removed through it since, so it has no
    /// `security.capability`: only a `setxattr` puts one on a file, and the kernel asks for it
    /// at each `chown` and at a file's first write (see `Overlay::getxattr`).
    pub no_capability: bool,
    /// A directory Strata made under a parent that had no default ACL, with no xattr set or
    /// removed since: it has none either (a new directory inherits its parent's).
    pub no_default_acl: bool,
}

/// Whether an object's shown instance has xattrs a caller can see (see `Overlay::getxattr`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrsKnown {
    /// Not looked at yet.
    Unknown,
    /// None: every `getxattr` is `ENODATA`, every list is empty, without asking the disk.
    Bare,
    /// Some: ask the disk.
    Some,
}

impl NodeState {
    /// Points the node at a new source; what was known about the old one goes.
    pub fn set_src(&mut self, src: Src) {
        if self.src != src {
            self.src = src;
            self.xattrs = XattrsKnown::Unknown;
            self.xattrs_changed();
        }
    }

    /// An xattr of the object changed (or its source did): what Strata knew from making it goes.
    pub fn xattrs_changed(&mut self) {
        self.no_capability = false;
        self.no_default_acl = false;
    }
}

/// One object of the merged view.
#[derive(Debug)]
pub struct Node {
    /// The FUSE node id (the kernel's handle for this node).
    pub nodeid: u64,
    /// The stable inode number `stat` reports.
    pub ino: u64,
    /// File type (never changes for a node).
    pub kind: FileType,
    /// Names, source layers.
    pub state: Mutex<NodeState>,
    /// Held while this object is copied up (copy-ups of one object are serialised).
    pub copy_lock: Mutex<()>,
    lookups: AtomicU64,
    opens: AtomicU64,
    /// When the kernel last looked the node up (a tick of [`InodeTable`]), for eviction.
    touched: AtomicU64,
}

impl Node {
    fn new(nodeid: u64, ino: u64, kind: FileType, names: Names, src: Src) -> Node {
        Node {
            nodeid,
            ino,
            kind,
            state: Mutex::new(NodeState {
                names,
                src,
                pinned: None,
                seen_at: None,
                xattrs: XattrsKnown::Unknown,
                no_capability: false,
                no_default_acl: false,
            }),
            copy_lock: Mutex::new(()),
            lookups: AtomicU64::new(0),
            opens: AtomicU64::new(0),
            touched: AtomicU64::new(0),
        }
    }

    /// Whether the node is a directory.
    pub fn is_dir(&self) -> bool {
        self.kind == FileType::Directory
    }

    /// A copy of the source description.
    pub fn src(&self) -> Src {
        self.state.lock().src.clone()
    }

    /// Replaces the source description.
    pub fn set_src(&self, src: Src) {
        self.state.lock().set_src(src);
    }

    /// Number of open handles.
    pub fn open_count(&self) -> u64 {
        self.opens.load(Ordering::Acquire)
    }

    /// Whether the kernel holds lookups of the node (it may still use it without a name).
    pub fn is_looked_up(&self) -> bool {
        self.lookups.load(Ordering::Acquire) > 0
    }

    /// Counts a new open handle.
    pub fn opened(&self) {
        self.opens.fetch_add(1, Ordering::AcqRel);
    }
}

/// All nodes the kernel knows, by inode number.
#[derive(Debug)]
pub struct InodeTable {
    map: RwLock<HashMap<u64, Arc<Node>>>,
    /// Objects given a new node id, by inode number.
    renumbered: RwLock<HashMap<u64, u64>>,
    next_nodeid: AtomicU64,
    tick: AtomicU64,
}

/// Node ids handed out by [`InodeTable::renumber`] have the top bit set; inode numbers made by
/// [`super::layers::compose`] keep it clear unless 128 filesystems make up one mount.
const RENUMBERED: u64 = 1 << 63;

impl InodeTable {
    /// A table holding only the root directory (node id [`ROOT`], inode number `root_ino`).
    pub fn new(root_src: Src, root_ino: u64) -> InodeTable {
        let root = Arc::new(Node::new(ROOT, root_ino, FileType::Directory, Names::default(), root_src));
        root.lookups.store(1, Ordering::Relaxed);
        InodeTable {
            map: RwLock::new(HashMap::from([(ROOT, root)])),
            renumbered: RwLock::new(HashMap::new()),
            next_nodeid: AtomicU64::new(RENUMBERED),
            tick: AtomicU64::new(0),
        }
    }

    /// The node with node id `nodeid`, or `ESTALE`.
    pub fn get(&self, nodeid: u64) -> Result<Arc<Node>> {
        self.map.read().get(&nodeid).cloned().ok_or(Errno::STALE)
    }

    /// The node with node id `nodeid` if the kernel still knows it.
    pub fn find(&self, nodeid: u64) -> Option<Arc<Node>> {
        self.map.read().get(&nodeid).cloned()
    }

    /// The current node of the object with inode number `ino`, if the kernel knows it.
    pub fn find_object(&self, ino: u64) -> Option<Arc<Node>> {
        self.find(self.nodeid_of(ino))
    }

    /// The node id lookups of object `ino` answer with.
    fn nodeid_of(&self, ino: u64) -> u64 {
        self.renumbered.read().get(&ino).copied().unwrap_or(ino)
    }

    /// Whether node `nodeid` is one its object no longer answers as (it was renumbered since).
    pub fn is_superseded(&self, nodeid: u64) -> bool {
        // Only a renumbering supersedes: the root's node id is not its inode number either.
        self.find(nodeid).is_some_and(|n| self.renumbered.read().get(&n.ino).is_some_and(|&now| now != nodeid))
    }

    /// Gives object `ino` a new node id: the next lookup makes a new kernel inode for it, while
    /// the old one lives on for files already open on it.
    pub fn renumber(&self, ino: u64) -> u64 {
        let nodeid = self.next_nodeid.fetch_add(1, Ordering::Relaxed);
        self.renumbered.write().insert(ino, nodeid);
        nodeid
    }

    /// Records a lookup of `name` in `parent` that found object `ino`, and counts it.
    ///
    /// A known node gets the fresh source and the name; a node of another type under the same
    /// number (the number was reused after a deletion) is replaced.
    pub fn remember(&self, ino: u64, kind: FileType, parent: u64, name: &OsStr, src: Src) -> Arc<Node> {
        let now = self.tick.fetch_add(1, Ordering::Relaxed);
        let nodeid = self.nodeid_of(ino);
        // A known node only needs the read lock: `forget` removes nodes under the write lock.
        if let Some(node) = self.map.read().get(&nodeid).filter(|n| n.kind == kind) {
            Self::refresh(node, parent, name, src, now);
            return node.clone();
        }
        let mut map = self.map.write();
        if let Some(node) = map.get(&nodeid).filter(|n| n.kind == kind) {
            Self::refresh(node, parent, name, src, now);
            return node.clone();
        }
        let node = Arc::new(Node::new(nodeid, ino, kind, Names::one(parent, name), src));
        if let Some(old) = map.get(&nodeid) {
            node.lookups.store(old.lookups.load(Ordering::Acquire), Ordering::Release);
        }
        node.lookups.fetch_add(1, Ordering::AcqRel);
        node.touched.store(now, Ordering::Relaxed);
        map.insert(nodeid, node.clone());
        node
    }

    fn refresh(node: &Node, parent: u64, name: &OsStr, src: Src, now: u64) {
        let mut st = node.state.lock();
        st.set_src(src);
        st.names.add(node.kind, parent, name);
        node.lookups.fetch_add(1, Ordering::AcqRel);
        node.touched.store(now, Ordering::Relaxed);
    }

    /// Drops `n` lookups of node `nodeid`; it goes when none are left and nothing is open.
    pub fn forget(&self, nodeid: u64, n: u64) {
        if nodeid == ROOT {
            return;
        }
        let mut map = self.map.write();
        if let Some(node) = map.get(&nodeid) {
            let left = node.lookups.load(Ordering::Acquire).saturating_sub(n);
            node.lookups.store(left, Ordering::Release);
            if left == 0 && node.open_count() == 0 {
                map.remove(&nodeid);
            }
        }
    }

    /// Counts a handle closed on `node`; drops the node if the kernel forgot it already.
    pub fn closed(&self, node: &Arc<Node>) {
        let mut map = self.map.write();
        let left = node.opens.fetch_sub(1, Ordering::AcqRel).saturating_sub(1);
        if left == 0
            && node.lookups.load(Ordering::Acquire) == 0
            && let Some(cur) = map.get(&node.nodeid)
            && Arc::ptr_eq(cur, node)
        {
            map.remove(&node.nodeid);
        }
    }

    /// Every node (for walks that update many nodes after a directory rename).
    pub fn all(&self) -> Vec<Arc<Node>> {
        self.map.read().values().cloned().collect()
    }

    /// The names of the least recently looked-up nodes beyond `keep` (none open, never the
    /// root): the kernel may be asked to drop these entries, after which it forgets the nodes.
    pub fn eviction_candidates(&self, keep: usize) -> Vec<(u64, OsString)> {
        let map = self.map.read();
        if map.len() <= keep {
            return Vec::new();
        }
        let mut aged: Vec<(u64, &Arc<Node>)> = map
            .values()
            .filter(|n| n.nodeid != ROOT && n.open_count() == 0)
            .map(|n| (n.touched.load(Ordering::Relaxed), n))
            .collect();
        let excess = map.len() - keep;
        if excess < aged.len() {
            aged.select_nth_unstable_by_key(excess, |(t, _)| *t);
            aged.truncate(excess);
        }
        aged.iter().filter_map(|(_, n)| n.state.lock().names.first().cloned()).collect()
    }

    /// Number of nodes (for tests and memory figures).
    pub fn len(&self) -> usize {
        self.map.read().len()
    }

    /// Whether only the root is known.
    pub fn is_empty(&self) -> bool {
        self.len() <= 1
    }

    /// The path of `node` relative to the mount root, through any of its names.
    pub fn path_of(&self, node: &Node) -> Result<PathBuf> {
        if node.nodeid == ROOT {
            return Ok(PathBuf::new());
        }
        // The first name nearly always leads there: the others are copied only if it does not.
        let Some((parent, name)) = node.state.lock().names.first().cloned() else { return Err(Errno::NOENT) };
        let mut last = match self.path_from(parent, &name) {
            Ok(p) => return Ok(p),
            Err(e) => e,
        };
        let others: Vec<(u64, OsString)> = node.state.lock().names.iter().skip(1).cloned().collect();
        for (parent, name) in others {
            match self.path_from(parent, &name) {
                Ok(p) => return Ok(p),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    /// The path of `name` in directory node `parent`: the names of the directories up to the
    /// root, each through its one name. A walk longer than the table is a loop.
    fn path_from(&self, parent: u64, name: &OsStr) -> Result<PathBuf> {
        let mut names = vec![name.to_owned()];
        let mut cur = parent;
        while cur != ROOT {
            if names.len() > self.len() {
                return Err(Errno::LOOP);
            }
            let pnode = self.find(cur).ok_or(Errno::NOENT)?;
            let (pp, pname) = pnode.state.lock().names.first().cloned().ok_or(Errno::NOENT)?;
            names.push(pname);
            cur = pp;
        }
        Ok(names.iter().rev().collect())
    }
}

/// The names a node is known by — (parent node, name) pairs — the most recently confirmed one
/// first (it is the likeliest to still be valid). A directory has one; a file one per hard link
/// the kernel looked up, which can be many thousands (`stress-ng --link`): adding, confirming
/// and removing a name take constant time, whatever their number.
#[derive(Clone, Debug, Default)]
pub struct Names {
    list: Vec<(u64, OsString)>,
    /// Where each name is in `list`, kept while the list is long.
    index: Option<HashMap<(u64, OsString), usize>>,
    /// Where in `list` the most recently confirmed name is.
    recent: usize,
}

/// From how many names a [`Names`] keeps an index (below, a scan is cheaper).
const INDEX_FROM: usize = 16;

impl Names {
    /// One name.
    pub fn one(parent: u64, name: &OsStr) -> Names {
        Names { list: vec![(parent, name.to_owned())], index: None, recent: 0 }
    }

    /// How many names.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// Whether the object has no name left (unlinked).
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// The most recently confirmed name.
    pub fn first(&self) -> Option<&(u64, OsString)> {
        self.list.get(self.recent)
    }

    /// Every name, the most recently confirmed first.
    pub fn iter(&self) -> impl Iterator<Item = &(u64, OsString)> {
        let recent = self.recent;
        self.first().into_iter().chain(self.list.iter().enumerate().filter(move |(i, _)| *i != recent).map(|(_, e)| e))
    }

    fn position(&self, parent: u64, name: &OsStr) -> Option<usize> {
        match &self.index {
            Some(ix) => ix.get(&(parent, name.to_owned())).copied(),
            None => self.list.iter().position(|(p, n)| *p == parent && n == name),
        }
    }

    /// Adds `name` in `parent` (a directory's name replaces its old one), or confirms it: it
    /// becomes the first.
    pub fn add(&mut self, kind: FileType, parent: u64, name: &OsStr) {
        if kind == FileType::Directory {
            *self = Names::one(parent, name);
            return;
        }
        if let Some(pos) = self.position(parent, name) {
            self.recent = pos;
            return;
        }
        self.list.push((parent, name.to_owned()));
        self.recent = self.list.len() - 1;
        match &mut self.index {
            Some(ix) => {
                ix.insert((parent, name.to_owned()), self.recent);
            }
            None if self.list.len() >= INDEX_FROM => {
                self.index = Some(self.list.iter().cloned().enumerate().map(|(i, k)| (k, i)).collect());
            }
            None => {}
        }
    }

    /// Removes `name` in `parent`, if the node has it.
    pub fn remove(&mut self, parent: u64, name: &OsStr) {
        let Some(pos) = self.position(parent, name) else { return };
        let last = self.list.len() - 1;
        let (gone_parent, gone) = self.list.swap_remove(pos);
        if let Some(ix) = &mut self.index {
            ix.remove(&(gone_parent, gone));
            if pos != last {
                ix.insert(self.list[pos].clone(), pos);
            }
            if self.list.len() < INDEX_FROM / 2 {
                self.index = None;
            }
        }
        // The name that was last moved into `pos`. If the first went, the first is now the
        // newest name left (the one that was last in the list).
        if self.recent == pos || self.recent == last {
            self.recent = if pos != last { pos } else { self.list.len().saturating_sub(1) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: &Names) -> Vec<String> {
        n.iter().map(|(p, s)| format!("{p}/{}", s.to_string_lossy())).collect()
    }

    #[test]
    fn names_keep_the_most_recent_first_and_stay_consistent_past_the_index() {
        let f = FileType::RegularFile;
        let mut n = Names::one(1, OsStr::new("a"));
        n.add(f, 1, OsStr::new("b"));
        n.add(f, 2, OsStr::new("a"));
        assert_eq!(names(&n)[0], "2/a");
        n.add(f, 1, OsStr::new("a"));
        assert_eq!(names(&n)[0], "1/a");
        assert_eq!(n.len(), 3);
        n.remove(1, OsStr::new("a"));
        assert_eq!(n.len(), 2);
        assert_eq!(names(&n)[0], "2/a", "the newest left comes first");
        // Many names (an index), removed in a mixed order: every one findable until it goes.
        for i in 0..1000 {
            n.add(f, 3, OsStr::new(&format!("l{i}")));
        }
        assert_eq!(names(&n)[0], "3/l999");
        for i in (0..1000).step_by(2).chain((1..1000).step_by(2)) {
            n.add(f, 3, OsStr::new(&format!("l{i}")));
            assert_eq!(names(&n)[0], format!("3/l{i}"));
            n.remove(3, OsStr::new(&format!("l{i}")));
            assert!(n.iter().all(|(_, s)| s != OsStr::new(&format!("l{i}"))));
            assert_eq!(n.iter().count(), n.len());
        }
        assert_eq!(n.len(), 2);
        let mut left = names(&n);
        left.sort();
        assert_eq!(left, ["1/b", "2/a"]);
        n.remove(1, OsStr::new("b"));
        n.remove(2, OsStr::new("a"));
        assert!(n.is_empty() && n.first().is_none());
        // A directory has one name: a new one replaces it.
        let mut d = Names::one(1, OsStr::new("d"));
        d.add(FileType::Directory, 5, OsStr::new("e"));
        assert_eq!(names(&d), ["5/e"]);
    }
}
