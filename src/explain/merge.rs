//! The merged view of a stack, with the provenance of every entry.
//!
//! Built by applying the layers bottom-up, which gives the same view as SEMANTICS.md "Lookup of
//! NAME in a merged directory" (top-down): a whiteout deletes the name and everything under it;
//! a non-directory replaces what was there; a directory merges with the directory below unless it
//! is opaque, or what was below is not a directory (then it replaces it). A directory with an
//! `overlay.redirect` takes its lower content from the redirect target as the view showed it
//! before the layer. Markers of a layer never affect entries of the same layer: a layer holds at
//! most one node per name ([`super::stack`]).
//!
//! Nothing is forgotten: an entry keeps what it replaced ([`Past`]), a deleted name keeps its
//! whiteout and what it hid ([`Gone`]), so [`super::find`] can say why anything is or is not seen.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::stack::{Dir, Kind, LayerId, Node, Stack, normal_components};

/// One layer's instance of a path.
#[derive(Clone, Debug)]
pub struct Version<'a> {
    /// The layer.
    pub layer: LayerId,
    /// The path inside that layer (differs from the merged path under a redirect).
    pub path: PathBuf,
    /// The layer's node.
    pub node: &'a Node,
}

/// An entry of the merged view.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// The instances that make the entry, top first: one for a non-directory; for a directory,
    /// every same-named directory merged into it. `versions[0]` is the one shown.
    pub versions: Vec<Version<'a>>,
    /// What this entry replaced, if anything was there before its lowest version.
    pub past: Option<Past<'a>>,
    /// Visible entries of a directory.
    pub children: BTreeMap<OsString, Entry<'a>>,
    /// Names of a directory deleted by a whiteout (and not re-created above it).
    pub gone: BTreeMap<OsString, Gone<'a>>,
}

/// What an entry replaced.
#[derive(Clone, Debug)]
pub enum Past<'a> {
    /// An entry that was visible below: a file shadowed, a directory cut off by an opaque
    /// directory or by a non-directory, or a non-directory replaced by a directory.
    Replaced(Box<Entry<'a>>),
    /// A whiteout that had deleted the name below the layer that re-created it.
    Deleted(Box<Gone<'a>>),
}

/// A name deleted by a whiteout.
#[derive(Clone, Debug)]
pub struct Gone<'a> {
    /// The whiteout.
    pub whiteout: Version<'a>,
    /// What it hides (none if nothing below showed the name).
    pub hid: Option<Box<Entry<'a>>>,
}

impl<'a> Entry<'a> {
    fn new(version: Version<'a>) -> Entry<'a> {
        Entry { versions: vec![version], past: None, children: BTreeMap::new(), gone: BTreeMap::new() }
    }

    /// The version shown.
    pub fn shown(&self) -> &Version<'a> {
        &self.versions[0]
    }

    /// Whether the entry is a directory.
    pub fn is_dir(&self) -> bool {
        self.shown().node.dir().is_some()
    }

    /// The visible entry at `path` below this one.
    pub fn get(&self, path: &Path) -> Option<&Entry<'a>> {
        normal_components(path).try_fold(self, |e, name| e.children.get(name))
    }

    /// Every version this entry hides, top first: what it replaced, and so on down.
    pub fn history(&self) -> Vec<Hidden<'_, 'a>> {
        let mut out = Vec::new();
        let mut past = self.past.as_ref();
        while let Some(p) = past {
            match p {
                Past::Replaced(e) => {
                    out.push(Hidden::Entry(e));
                    past = e.past.as_ref();
                }
                Past::Deleted(g) => {
                    out.push(Hidden::Whiteout(g));
                    match &g.hid {
                        Some(e) => {
                            out.push(Hidden::Entry(e));
                            past = e.past.as_ref();
                        }
                        None => past = None,
                    }
                }
            }
        }
        out
    }
}

/// One step of an entry's history.
#[derive(Clone, Copy, Debug)]
pub enum Hidden<'v, 'a> {
    /// An earlier entry (file, link, or directory with its merged versions).
    Entry(&'v Entry<'a>),
    /// A whiteout that had deleted the name.
    Whiteout(&'v Gone<'a>),
}

/// The merged view of a stack (or of its lowest layers).
#[derive(Debug)]
pub struct View<'a> {
    /// The root directory (its versions are the layer roots).
    pub root: Entry<'a>,
}

impl<'a> View<'a> {
    /// An empty view (no layer yet).
    pub fn empty() -> View<'a> {
        View { root: Entry { versions: Vec::new(), past: None, children: BTreeMap::new(), gone: BTreeMap::new() } }
    }

    /// The view of the whole stack.
    pub fn of(stack: &'a Stack) -> View<'a> {
        View::build(stack, stack.layers.len(), |_, _| {})
    }

    /// The view of the layers below `top` (exclusive); `before(view, id)` sees the view as it
    /// is just before layer `id` is applied.
    pub fn build(stack: &'a Stack, top: LayerId, mut before: impl FnMut(&View<'a>, LayerId)) -> View<'a> {
        let mut view = View::empty();
        for id in 0..top.min(stack.layers.len()) {
            before(&view, id);
            view.apply(id, &stack.layer(id).root);
        }
        view
    }

    /// The visible entry at `path` (`""` or `/` is the root).
    pub fn get(&self, path: &Path) -> Option<&Entry<'a>> {
        self.root.get(path)
    }

    /// Applies layer `id`, whose root directory node is `root`, on top of the view.
    pub fn apply(&mut self, id: LayerId, root: &'a Node) {
        let Some(dir) = root.dir() else { return };
        let mut redirected = HashMap::new();
        collect_redirects(&self.root, dir, Path::new(""), &mut redirected);
        self.root.versions.insert(0, Version { layer: id, path: PathBuf::new(), node: root });
        let mut apply = Apply { layer: id, redirected };
        apply.dir(&mut self.root, dir, Path::new(""), Path::new(""));
    }
}

/// Applies one layer.
struct Apply<'a> {
    layer: LayerId,
    /// Lower content of redirected directories, by merged path, taken before the layer applied.
    redirected: HashMap<PathBuf, Entry<'a>>,
}

impl<'a> Apply<'a> {
    /// Applies the layer's directory `dir` (at `lpath` in the layer) onto `cur` (merged `mpath`).
    fn dir(&mut self, cur: &mut Entry<'a>, dir: &'a Dir, lpath: &Path, mpath: &Path) {
        for (name, node) in &dir.children {
            let v = Version { layer: self.layer, path: lpath.join(name), node };
            let old = cur.children.remove(name);
            let deleted = cur.gone.remove(name);
            let past = match (old, deleted) {
                (Some(e), _) => Some(Past::Replaced(Box::new(e))),
                (None, Some(g)) => Some(Past::Deleted(Box::new(g))),
                (None, None) => None,
            };
            match &node.kind {
                Kind::Whiteout(_) => {
                    let hid = match past {
                        Some(Past::Replaced(e)) => Some(e),
                        _ => None,
                    };
                    cur.gone.insert(name.clone(), Gone { whiteout: v, hid });
                }
                Kind::Dir(d) => {
                    let mut entry = self.merged_dir(v, d, past, &mpath.join(name));
                    let lp = entry.versions[0].path.clone();
                    self.dir(&mut entry, d, &lp, &mpath.join(name));
                    cur.children.insert(name.clone(), entry);
                }
                _ => {
                    let mut entry = Entry::new(v);
                    entry.past = past;
                    cur.children.insert(name.clone(), entry);
                }
            }
        }
    }

    /// The entry a directory of this layer starts: merged with the directory below it, or
    /// replacing what was there.
    fn merged_dir(&mut self, v: Version<'a>, d: &'a Dir, past: Option<Past<'a>>, mpath: &Path) -> Entry<'a> {
        if let Some(lower) = self.redirected.remove(mpath) {
            let mut entry = lower;
            entry.versions.insert(0, v);
            if let Some(p) = past {
                entry.past = Some(p);
            }
            return entry;
        }
        match past {
            Some(Past::Replaced(old)) if old.is_dir() && !d.opaque && d.redirect.is_none() => {
                let mut entry = *old;
                entry.versions.insert(0, v);
                entry
            }
            past => {
                let mut entry = Entry::new(v);
                entry.past = past;
                entry
            }
        }
    }
}

/// Finds the redirected directories of a layer and takes their lower content from the view
/// before the layer applies (a redirect names a path of the layers below).
fn collect_redirects<'a>(view: &Entry<'a>, dir: &'a Dir, mpath: &Path, out: &mut HashMap<PathBuf, Entry<'a>>) {
    for (name, node) in &dir.children {
        let Some(d) = node.dir() else { continue };
        let here = mpath.join(name);
        if let Some(target) = &d.redirect
            && !d.opaque
        {
            let source = redirect_source(mpath, target);
            if let Some(lower) = view.get(&source).filter(|e| e.is_dir()) {
                out.insert(here.clone(), lower.clone());
            }
        }
        collect_redirects(view, d, &here, out);
    }
}

/// The merged path a redirect of a directory in `parent` names: absolute from the root, or a
/// sibling name.
pub fn redirect_source(parent: &Path, target: &[u8]) -> PathBuf {
    match target.strip_prefix(b"/") {
        Some(abs) => PathBuf::from(OsStr::from_bytes(abs)),
        None => parent.join(OsStr::from_bytes(target)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::explain::stack::tests::info;
    use crate::explain::stack::{Layer, Stack};

    fn mkwh(p: &Path) {
        use rustix::fs::{FileType, Mode};
        rustix::fs::mknodat(rustix::fs::CWD, p, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    }

    /// Three layers: files shadowed, deleted, re-created; dir replaced by file and back; opaque.
    pub(crate) fn three(t: &Path) -> Stack {
        let (l1, l2, l3) = (t.join("l1"), t.join("l2"), t.join("l3"));
        for d in ["d/sub", "opq/old", "f2d"] {
            std::fs::create_dir_all(l1.join(d)).unwrap();
        }
        std::fs::write(l1.join("a"), b"1").unwrap();
        std::fs::write(l1.join("d/sub/x"), b"x").unwrap();
        std::fs::write(l1.join("gone"), b"gone").unwrap();
        std::fs::write(l1.join("d2f"), b"file").unwrap();
        std::fs::create_dir_all(l2.join("opq")).unwrap();
        std::fs::write(l2.join("a"), b"22").unwrap();
        std::fs::write(l2.join("opq/new"), b"n").unwrap();
        std::fs::write(l2.join("opq/.wh..wh..opq"), b"").unwrap();
        mkwh(&l2.join("gone"));
        std::fs::write(l2.join("f2d"), b"now a file").unwrap();
        std::fs::create_dir_all(l3.join("d")).unwrap();
        mkwh(&l3.join("d/sub"));
        std::fs::write(l3.join("gone"), b"back").unwrap();
        let layers = [("1", l1), ("2", l2), ("3", l3)].map(|(n, p)| Layer::read(info(n, &p)).unwrap());
        Stack { layers: layers.into(), name: "t".into() }
    }

    #[test]
    fn top_layer_wins_and_history_is_kept() {
        let t = tempfile::tempdir().unwrap();
        let stack = three(t.path());
        let view = View::of(&stack);
        let a = view.get(Path::new("a")).unwrap();
        assert_eq!(a.shown().layer, 1);
        assert!(matches!(a.history()[..], [Hidden::Entry(e)] if e.shown().layer == 0));
        let gone = view.get(Path::new("gone")).unwrap();
        assert_eq!(gone.shown().layer, 2, "re-created after a whiteout");
        assert!(matches!(gone.history()[..], [Hidden::Whiteout(w), Hidden::Entry(e)]
            if w.whiteout.layer == 1 && e.shown().layer == 0));
        let d = view.get(Path::new("d")).unwrap();
        assert_eq!(d.versions.iter().map(|v| v.layer).collect::<Vec<_>>(), [2, 0]);
        assert!(d.children.is_empty());
        assert_eq!(d.gone[OsStr::new("sub")].whiteout.layer, 2);
        assert!(d.gone[OsStr::new("sub")].hid.as_ref().unwrap().children.contains_key(OsStr::new("x")));
        let opq = view.get(Path::new("opq")).unwrap();
        assert_eq!(opq.versions.len(), 1, "opaque stops the merge");
        assert_eq!(opq.children.keys().collect::<Vec<_>>(), [OsStr::new("new")]);
        let f2d = view.get(Path::new("f2d")).unwrap();
        assert!(!f2d.is_dir() && f2d.shown().layer == 1);
        assert!(view.get(Path::new("d2f")).is_some_and(|e| e.shown().layer == 0));
    }

    #[test]
    fn views_below_a_layer_and_redirects() {
        let t = tempfile::tempdir().unwrap();
        let (l1, up) = (t.path().join("l1"), t.path().join("up"));
        std::fs::create_dir_all(l1.join("old")).unwrap();
        std::fs::write(l1.join("old/f"), b"f").unwrap();
        std::fs::create_dir_all(up.join("new")).unwrap();
        mkwh(&up.join("old"));
        rustix::fs::setxattr(up.join("new"), "trusted.overlay.redirect", b"/old", rustix::fs::XattrFlags::empty())
            .unwrap();
        let layers = [("1", l1), ("upper", up)].map(|(n, p)| Layer::read(info(n, &p)).unwrap());
        let stack = Stack { layers: layers.into(), name: "t".into() };
        let view = View::of(&stack);
        let f = view.get(Path::new("new/f")).unwrap();
        assert_eq!((f.shown().layer, f.shown().path.as_path()), (0, Path::new("old/f")));
        assert!(view.get(Path::new("old")).is_none());
        let mut seen = Vec::new();
        let below = View::build(&stack, 1, |v, id| seen.push((id, v.root.children.len())));
        assert_eq!(seen, [(0, 0)]);
        assert!(below.get(Path::new("old/f")).is_some());
    }
}
