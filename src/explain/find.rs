//! What a merged view says about one path: shown (from which layer, over what), deleted (by which
//! whiteout), hidden (an ancestor was deleted, replaced, or made opaque above the layers that
//! have it), or in no layer at all. [`View::resolve`] first turns a path as a user types it into
//! the one a process inside would reach: `.` and `..` resolved, symlinks of its directories
//! followed.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::path::{Component, Path, PathBuf};

use super::merge::{Entry, Gone, Past, View};
use super::stack::{Kind, normal_components};

/// How many symlinks a lookup follows before it gives up (the kernel's limit).
const MAX_LINKS: usize = 40;

/// A path as a process inside the image or container reaches it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The path from the root, without `.`, `..` or symlinked directories.
    pub path: PathBuf,
    /// The symlinks followed on the way: where each is, and its target.
    pub links: Vec<(PathBuf, OsString)>,
}

/// Why a whole subtree is not seen.
#[derive(Clone, Copy, Debug)]
pub enum Cover<'v, 'a> {
    /// The ancestor was deleted by this whiteout.
    Deleted(&'v Gone<'a>),
    /// The ancestor (this entry) replaced what was there: it is a non-directory, an opaque
    /// directory, or a directory over a non-directory.
    Replaced(&'v Entry<'a>),
}

/// What a view says about a path.
#[derive(Clone, Debug)]
pub enum Finding<'v, 'a> {
    /// The path is seen: this entry.
    Shown(&'v Entry<'a>),
    /// The name was deleted by a whiteout.
    Deleted(&'v Gone<'a>),
    /// An ancestor (at `at`) hides the path; `inner` is what the hidden layers say about it.
    Hidden {
        /// The merged path of the ancestor that hides it.
        at: PathBuf,
        /// How it hides it.
        cover: Cover<'v, 'a>,
        /// What the hidden content says about the path.
        inner: Box<Finding<'v, 'a>>,
    },
    /// No layer has the path.
    Absent,
}

impl<'a> View<'a> {
    /// What the view says about `path`.
    pub fn find(&self, path: &Path) -> Finding<'_, 'a> {
        let names: Vec<&OsStr> = normal_components(path).collect();
        find_in(&self.root, &names, PathBuf::new())
    }
}

impl View<'_> {
    /// Resolves `path` as a lookup inside would: `.` and `..` by name (`..` stops at the root),
    /// and each symlink met before the last name replaced by its target (an absolute target
    /// starts again at the root). The last name is not followed, as `lstat` does not.
    pub fn resolve(&self, path: &Path) -> Resolved {
        let mut todo: VecDeque<OsString> = names(path).collect();
        let (mut walked, mut links) = (PathBuf::new(), Vec::new());
        while let Some(name) = todo.pop_front() {
            if name == ".." {
                walked.pop();
                continue;
            }
            let here = walked.join(&name);
            let target = match self.get(&here).map(|e| &e.shown().node.kind) {
                Some(Kind::Symlink(t)) if !todo.is_empty() && links.len() < MAX_LINKS => t.clone(),
                _ => {
                    walked = here;
                    continue;
                }
            };
            if Path::new(&target).is_absolute() {
                walked = PathBuf::new();
            }
            for n in names(Path::new(&target)).collect::<Vec<_>>().into_iter().rev() {
                todo.push_front(n);
            }
            links.push((Path::new("/").join(here), target));
        }
        Resolved { path: walked, links }
    }
}

/// The names of `path`, `..` kept as a name, `/` and `.` dropped.
fn names(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Looks for `names` below `entry` (at merged path `at`).
fn find_in<'v, 'a>(entry: &'v Entry<'a>, names: &[&OsStr], at: PathBuf) -> Finding<'v, 'a> {
    let Some((first, rest)) = names.split_first() else {
        return Finding::Shown(entry);
    };
    let here = at.join(first);
    if let Some(child) = entry.children.get(*first) {
        if rest.is_empty() {
            return Finding::Shown(child);
        }
        if child.is_dir() {
            return find_in(child, rest, here);
        }
        return in_past(child, rest, here);
    }
    if let Some(gone) = entry.gone.get(*first) {
        if rest.is_empty() {
            return Finding::Deleted(gone);
        }
        let inner = match &gone.hid {
            Some(e) => find_in(e, rest, here.clone()),
            None => Finding::Absent,
        };
        return hidden(here, Cover::Deleted(gone), inner);
    }
    in_past(entry, names, at)
}

/// Looks for `names` in what `entry` (at merged path `at`) replaced.
fn in_past<'v, 'a>(entry: &'v Entry<'a>, names: &[&OsStr], at: PathBuf) -> Finding<'v, 'a> {
    let inner = match &entry.past {
        Some(Past::Replaced(old)) => find_in(old, names, at.clone()),
        Some(Past::Deleted(g)) => match &g.hid {
            Some(old) => find_in(old, names, at.clone()),
            None => Finding::Absent,
        },
        None => Finding::Absent,
    };
    hidden(at, Cover::Replaced(entry), inner)
}

fn hidden<'v, 'a>(at: PathBuf, cover: Cover<'v, 'a>, inner: Finding<'v, 'a>) -> Finding<'v, 'a> {
    match inner {
        Finding::Absent => Finding::Absent,
        inner => Finding::Hidden { at, cover, inner: Box::new(inner) },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::merge::tests::three;

    #[test]
    fn says_why_paths_are_not_seen() {
        let t = tempfile::tempdir().unwrap();
        let stack = three(t.path());
        let view = View::of(&stack);
        assert!(matches!(view.find(Path::new("/a")), Finding::Shown(e) if e.shown().layer == 1));
        assert!(matches!(view.find(Path::new("d/sub")), Finding::Deleted(g) if g.whiteout.layer == 2));
        let Finding::Hidden { at, cover: Cover::Deleted(_), inner } = view.find(Path::new("d/sub/x")) else {
            panic!("d/sub/x is under a deleted dir")
        };
        assert_eq!(at, Path::new("d/sub"));
        assert!(matches!(*inner, Finding::Shown(e) if e.shown().layer == 0));
        let Finding::Hidden { at, cover: Cover::Replaced(by), .. } = view.find(Path::new("opq/old")) else {
            panic!("opq/old is under an opaque dir")
        };
        assert_eq!((at.as_path(), by.shown().layer), (Path::new("opq"), 1));
        assert!(matches!(view.find(Path::new("nowhere/x")), Finding::Absent));
        assert!(matches!(view.find(Path::new("a/x")), Finding::Absent));
    }

    #[test]
    fn paths_resolve_through_dot_dot_and_symlinked_directories() {
        let t = tempfile::tempdir().unwrap();
        let l = t.path().join("l");
        std::fs::create_dir_all(l.join("etc/conf")).unwrap();
        std::fs::create_dir_all(l.join("data")).unwrap();
        std::fs::write(l.join("etc/conf/f"), b"f").unwrap();
        std::os::unix::fs::symlink("../etc", l.join("data/rel")).unwrap();
        std::os::unix::fs::symlink("/etc/conf", l.join("data/abs")).unwrap();
        std::os::unix::fs::symlink("rel/conf", l.join("data/chain")).unwrap();
        std::os::unix::fs::symlink("loop", l.join("loop")).unwrap();
        let layer = crate::explain::stack::Layer::read(crate::explain::stack::tests::info("1", &l)).unwrap();
        let stack = crate::explain::stack::Stack { layers: vec![layer], name: "t".into() };
        let view = View::of(&stack);
        let r = |p: &str| view.resolve(Path::new(p));
        assert_eq!(r("/../etc/./conf//f"), Resolved { path: "etc/conf/f".into(), links: vec![] });
        assert_eq!(r("data/rel/conf/f").path, Path::new("etc/conf/f"));
        assert_eq!(r("data/rel/conf/f").links, [(PathBuf::from("/data/rel"), OsString::from("../etc"))]);
        assert_eq!(r("data/abs/f").path, Path::new("etc/conf/f"));
        assert_eq!(r("data/chain/f").links.len(), 2, "a link to a link");
        assert_eq!(r("data/rel/../data/rel").path, Path::new("data/rel"), "the last name is not followed");
        assert_eq!(r("loop/x").links.len(), MAX_LINKS, "a loop stops");
        assert_eq!(r("data/nothing/x").path, Path::new("data/nothing/x"));
    }
}
