//! What each layer changed, and what the stack wastes.
//!
//! Each entry of a layer is compared with the view of the layers below it:
//! - **added**: the path was not seen below (a new file, link, or directory; also a name
//!   re-created after a whiteout);
//! - **modified**: a non-directory over anything seen below, or a directory over a
//!   non-directory. A directory over a directory is not a change of its own: it only carries
//!   changes inside it;
//! - **deleted**: a whiteout of a path seen below (one per whiteout, whatever it hid);
//! - **opaque**: a directory marked opaque (what lay below it is hidden).
//!
//! Sizes count regular-file bytes once per inode of a layer (hardlinks share data). Bytes of a
//! layer are **wasted** when no name of their inode is seen in the merged view: a higher layer
//! overwrote or deleted them. The efficiency is the share of stored bytes that are seen — close
//! to dive's score, which counts the smallest version of each path as needed instead of the one
//! seen.

use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

use super::merge::{Entry, View, redirect_source};
use super::stack::{Dir, LayerId, Stack};

/// How a layer changes a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Change {
    /// New path.
    Added,
    /// Replaces what was seen below.
    Modified,
    /// A whiteout of a path seen below.
    Deleted,
    /// A directory marked opaque.
    Opaque,
}

impl Change {
    /// One letter, as `docker diff` prints (A, C for modified, D) plus O for opaque.
    pub fn letter(self) -> char {
        match self {
            Change::Added => 'A',
            Change::Modified => 'C',
            Change::Deleted => 'D',
            Change::Opaque => 'O',
        }
    }
}

/// What one layer changed.
#[derive(Clone, Debug, Default)]
pub struct LayerStats {
    /// Every change, in path order; an opaque directory may also be added or modified.
    pub changes: Vec<(Change, PathBuf)>,
    /// Regular-file bytes stored in the layer (once per inode).
    pub size: u64,
    /// Bytes of the layer no name of the merged view shows.
    pub wasted: u64,
}

impl LayerStats {
    /// How many changes of kind `c`.
    pub fn count(&self, c: Change) -> usize {
        self.changes.iter().filter(|(k, _)| *k == c).count()
    }
}

/// What every layer changed, and the efficiency of the stack.
#[derive(Clone, Debug)]
pub struct Stats {
    /// Per layer, bottom first (as [`Stack::layers`]).
    pub layers: Vec<LayerStats>,
}

impl Stats {
    /// Measures `stack`; also returns its merged view.
    pub fn of(stack: &Stack) -> (Stats, View<'_>) {
        let mut layers: Vec<LayerStats> = Vec::new();
        let view = View::build(stack, stack.layers.len(), |below, id| {
            let mut changes = Vec::new();
            classify(below, Some(&below.root), stack.layer(id).root_dir(), Path::new(""), &mut changes);
            layers.push(LayerStats { changes, ..Default::default() });
        });
        let shown = shown_inodes(&view);
        for (id, st) in layers.iter_mut().enumerate() {
            let (size, wasted) = bytes(stack.layer(id).root_dir(), shown.get(&id));
            st.size = size;
            st.wasted = wasted;
        }
        (Stats { layers }, view)
    }

    /// Bytes stored in all layers.
    pub fn total(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// Bytes wasted in all layers.
    pub fn wasted(&self) -> u64 {
        self.layers.iter().map(|l| l.wasted).sum()
    }

    /// The share of stored bytes the merged view shows (1 when nothing is stored).
    pub fn efficiency(&self) -> f64 {
        match self.total() {
            0 => 1.0,
            total => (total - self.wasted()) as f64 / total as f64,
        }
    }
}

/// Classifies the entries of a layer's directory `dir` (merged path `mpath`) against `below`,
/// the same directory in the view of the lower layers (None when it is not seen there).
fn classify(view: &View<'_>, below: Option<&Entry<'_>>, dir: &Dir, mpath: &Path, out: &mut Vec<(Change, PathBuf)>) {
    for (name, node) in &dir.children {
        let path = mpath.join(name);
        let seen = below.and_then(|b| b.children.get(name));
        match node.dir() {
            _ if node.is_whiteout() => {
                if seen.is_some() {
                    out.push((Change::Deleted, path));
                }
            }
            Some(d) => {
                match seen {
                    None => out.push((Change::Added, path.clone())),
                    Some(e) if !e.is_dir() => out.push((Change::Modified, path.clone())),
                    Some(_) => {}
                }
                if d.opaque {
                    out.push((Change::Opaque, path.clone()));
                }
                let lower = match &d.redirect {
                    Some(target) => view.get(&redirect_source(mpath, target)),
                    None => seen,
                };
                classify(view, lower.filter(|e| e.is_dir()), d, &path, out);
            }
            None => out.push((if seen.is_some() { Change::Modified } else { Change::Added }, path)),
        }
    }
}

/// The inodes of regular files the view shows, per layer.
fn shown_inodes(view: &View<'_>) -> BTreeMap<LayerId, HashSet<u64>> {
    let mut out: BTreeMap<LayerId, HashSet<u64>> = BTreeMap::new();
    let mut stack = vec![&view.root];
    while let Some(e) = stack.pop() {
        let v = e.shown();
        if v.node.is_file() {
            out.entry(v.layer).or_default().insert(v.node.ino);
        }
        stack.extend(e.children.values());
    }
    out
}

/// (stored, wasted) regular-file bytes of a layer directory, once per inode.
fn bytes(root: &Dir, shown: Option<&HashSet<u64>>) -> (u64, u64) {
    let (mut size, mut wasted) = (0, 0);
    let mut counted: HashSet<u64> = HashSet::new();
    let mut dirs = vec![root];
    while let Some(d) = dirs.pop() {
        for node in d.children.values() {
            if let Some(sub) = node.dir() {
                dirs.push(sub);
            } else if node.is_file() && counted.insert(node.ino) {
                size += node.size;
                if !shown.is_some_and(|s| s.contains(&node.ino)) {
                    wasted += node.size;
                }
            }
        }
    }
    (size, wasted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::merge::tests::three;

    #[test]
    fn counts_changes_and_waste() {
        let t = tempfile::tempdir().unwrap();
        let stack = three(t.path());
        let (stats, _) = Stats::of(&stack);
        let counts = |l: usize| {
            let s = &stats.layers[l];
            [Change::Added, Change::Modified, Change::Deleted, Change::Opaque].map(|c| s.count(c))
        };
        // l1: a d d/sub d/sub/x opq opq/old f2d gone d2f
        assert_eq!(counts(0), [9, 0, 0, 0]);
        // l2: a (C), opq (O), opq/new (A), gone (D), f2d file over dir (C)
        assert_eq!(counts(1), [1, 2, 1, 1]);
        // l3: d/sub (D), gone re-created (A)
        assert_eq!(counts(2), [1, 0, 1, 0]);
        // l1 bytes: a(1) x(1) gone(4) d2f(4); a, x, gone are not seen any more.
        assert_eq!((stats.layers[0].size, stats.layers[0].wasted), (10, 6));
        assert_eq!(stats.wasted(), 6);
        assert!((stats.efficiency() - (1.0 - 6.0 / stats.total() as f64)).abs() < 1e-9);
    }
}
