//! What a merged view says about one path: shown (from which layer, over what), deleted (by which
//! whiteout), hidden (an ancestor was deleted, replaced, or made opaque above the layers that
//! have it), or in no layer at all.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};

use super::merge::{Entry, Gone, Past, View};
use super::stack::normal_components;

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
}
