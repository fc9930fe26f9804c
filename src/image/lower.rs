//! The layers below a container's upper dir (its image's unpacked layers), looked up by merged
//! path without mounting them: SEMANTICS.md "Lookup of NAME in a merged directory", with every
//! whiteout and opaque form read by [`crate::fs::whiteout`].
//!
//! Only what a commit needs is read: the paths its upper dir touches, and the whole merged
//! content of directories renamed in the container (their `overlay.redirect` target). Image
//! layers come from tars, so a redirect inside them is not followed.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Stat};

use crate::fs::whiteout;
use crate::sys::{Errno, fd};

/// A layer that cannot be read; names the layer dir and the path inside it.
#[derive(Debug, thiserror::Error)]
pub enum LowerError {
    /// A system call on a layer failed.
    #[error("layer {layer}: {path}: {op}: {errno}")]
    Layer {
        /// The layer dir.
        layer: PathBuf,
        /// The path inside the layer.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

type Result<T> = std::result::Result<T, LowerError>;

/// One layer's instance of a merged directory.
#[derive(Clone, Debug)]
pub struct Inst {
    /// The layer (index into [`Lowers`], 0 is the top).
    pub layer: usize,
    /// The directory's path in that layer.
    pub path: PathBuf,
    /// Empty files in it may be xattr whiteouts (`overlay.opaque=x`).
    pub xwh: bool,
    /// The directory (`O_PATH`), so lookups in it need no walk from the layer root.
    dir: Arc<OwnedFd>,
}

/// What the lower layers show at a merged path.
#[derive(Clone, Debug)]
pub enum Shown {
    /// A non-directory, from one layer.
    NonDir {
        /// The layer.
        layer: usize,
        /// Its path in that layer.
        path: PathBuf,
        /// Its stat.
        st: Stat,
    },
    /// A directory merged from one or more layers.
    Dir {
        /// Its instances, top first (the first is the one whose metadata is shown).
        insts: Vec<Inst>,
        /// Stat of the top instance.
        st: Stat,
    },
}

impl Shown {
    /// The instances, if this is a directory.
    pub fn dir(&self) -> Option<&[Inst]> {
        match self {
            Shown::Dir { insts, .. } => Some(insts),
            Shown::NonDir { .. } => None,
        }
    }

    /// The stat of the shown instance.
    pub fn st(&self) -> &Stat {
        match self {
            Shown::Dir { st, .. } | Shown::NonDir { st, .. } => st,
        }
    }

    /// The layer and in-layer path of the shown instance.
    pub fn top(&self) -> (usize, &Path) {
        match self {
            Shown::Dir { insts, .. } => (insts[0].layer, &insts[0].path),
            Shown::NonDir { layer, path, .. } => (*layer, path),
        }
    }
}

/// The lower layers of a stack, top first, opened once.
#[derive(Debug)]
pub struct Lowers {
    dirs: Vec<PathBuf>,
    fds: Vec<OwnedFd>,
}

impl Lowers {
    /// Opens the layer dirs `dirs` (top first).
    pub fn open(dirs: &[PathBuf]) -> Result<Lowers> {
        let mut fds = Vec::with_capacity(dirs.len());
        for d in dirs {
            let f = fd::open_user_dir(d).map_err(|errno| LowerError::Layer {
                layer: d.clone(),
                path: PathBuf::new(),
                op: "open",
                errno,
            })?;
            fds.push(f);
        }
        Ok(Lowers { dirs: dirs.to_vec(), fds })
    }

    /// The root fd of layer `layer`.
    pub fn fd(&self, layer: usize) -> BorrowedFd<'_> {
        self.fds[layer].as_fd()
    }

    /// How many layers there are.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// The error naming layer `layer`, `path` in it and what was being done.
    pub fn error(&self, layer: usize, path: &Path, op: &'static str) -> impl FnOnce(Errno) -> LowerError + use<> {
        let (layer, path) = (self.dirs[layer].clone(), path.to_path_buf());
        move |errno| LowerError::Layer { layer, path, op, errno }
    }

    /// The merged root: every layer's root down to the first opaque one.
    pub fn root(&self) -> Result<Option<Shown>> {
        let mut insts = Vec::new();
        let mut top = None;
        for layer in 0..self.fds.len() {
            let root = self.fd(layer);
            let marks = whiteout::dir_marks(root).map_err(self.error(layer, Path::new(""), "reading marks"))?;
            if top.is_none() {
                top = Some(fd::stat_fd(root).map_err(self.error(layer, Path::new(""), "stat"))?);
            }
            let dir = Arc::new(fd::dup(root).map_err(self.error(layer, Path::new(""), "dup"))?);
            insts.push(Inst { layer, path: PathBuf::new(), xwh: marks.xwhiteouts, dir });
            if marks.opaque {
                break;
            }
        }
        Ok(top.map(|st| Shown::Dir { insts, st }))
    }

    /// What the layers show at merged `path` (relative; empty is the root).
    pub fn lookup(&self, path: &Path) -> Result<Option<Shown>> {
        let mut cur = self.root()?;
        for name in path.iter() {
            let Some(Shown::Dir { insts, .. }) = &cur else { return Ok(None) };
            cur = self.child(insts, name)?;
        }
        Ok(cur)
    }

    /// What the merged directory made of `insts` shows at `name`.
    pub fn child(&self, insts: &[Inst], name: &OsStr) -> Result<Option<Shown>> {
        if whiteout::is_wh_name(name) {
            return Ok(None);
        }
        let mut dirs: Vec<Inst> = Vec::new();
        let mut top: Option<Stat> = None;
        for inst in insts {
            let path = inst.path.join(name);
            let d = inst.dir.as_fd();
            let st = fd::try_stat_at(d, name).map_err(self.error(inst.layer, &path, "stat"))?;
            let has_wh = whiteout::has_wh_file(d, name).map_err(self.error(inst.layer, &path, "stat"))?;
            let Some(st) = st else {
                if has_wh {
                    break;
                }
                continue;
            };
            if whiteout::is_whiteout(d, name, &st, inst.xwh) {
                break;
            }
            if fd::kind_of(&st) != FileType::Directory {
                if dirs.is_empty() {
                    return Ok(Some(Shown::NonDir { layer: inst.layer, path, st }));
                }
                break;
            }
            let sub = fd::open_dir(d, Path::new(name)).map_err(self.error(inst.layer, &path, "open"))?;
            let marks = whiteout::dir_marks(sub.as_fd()).map_err(self.error(inst.layer, &path, "reading marks"))?;
            top.get_or_insert(st);
            dirs.push(Inst { layer: inst.layer, path, xwh: marks.xwhiteouts, dir: Arc::new(sub) });
            if marks.opaque || has_wh {
                break;
            }
        }
        Ok(top.map(|st| Shown::Dir { insts: dirs, st }))
    }

    /// The names the layers of the merged directory made of `insts` hold (`.wh.` names left
    /// out), sorted. Some may be whited out: [`Lowers::child`] says what each shows, one at a
    /// time, so no more directories are open than the walk is deep.
    pub fn names(&self, insts: &[Inst]) -> Result<Vec<OsString>> {
        let mut names = BTreeSet::new();
        for inst in insts {
            let reader = fd::open_dir_read(inst.dir.as_fd(), Path::new(""))
                .map_err(self.error(inst.layer, &inst.path, "open"))?;
            let entries = fd::read_dir(reader).map_err(self.error(inst.layer, &inst.path, "readdir"))?;
            names.extend(entries.into_iter().map(|e| e.name).filter(|n| !whiteout::is_wh_name(n)));
        }
        Ok(names.into_iter().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkwh(p: &Path) {
        use rustix::fs::Mode;
        rustix::fs::mknodat(rustix::fs::CWD, p, FileType::CharacterDevice, Mode::empty(), 0).unwrap();
    }

    #[test]
    fn lookups_follow_whiteouts_and_opaque_dirs() {
        let t = tempfile::tempdir().unwrap();
        let (top, bottom) = (t.path().join("top"), t.path().join("bottom"));
        for d in ["d/sub", "opq/old", "both"] {
            std::fs::create_dir_all(bottom.join(d)).unwrap();
        }
        std::fs::write(bottom.join("gone"), "x").unwrap();
        std::fs::write(bottom.join("both/low"), "x").unwrap();
        std::fs::write(bottom.join("whf"), "x").unwrap();
        std::fs::create_dir_all(top.join("opq")).unwrap();
        std::fs::create_dir_all(top.join("both")).unwrap();
        std::fs::write(top.join("both/high"), "x").unwrap();
        std::fs::write(top.join("opq/.wh..wh..opq"), "").unwrap();
        std::fs::write(top.join(".wh.whf"), "").unwrap();
        mkwh(&top.join("gone"));
        let l = Lowers::open(&[top, bottom]).unwrap();
        assert!(l.lookup(Path::new("gone")).unwrap().is_none());
        assert!(l.lookup(Path::new("whf")).unwrap().is_none());
        assert!(l.lookup(Path::new(".wh.whf")).unwrap().is_none());
        assert!(
            matches!(l.lookup(Path::new("d/sub")).unwrap(), Some(Shown::Dir { ref insts, .. }) if insts.len() == 1)
        );
        let opq = l.lookup(Path::new("opq")).unwrap().unwrap();
        assert_eq!(opq.dir().unwrap().len(), 1);
        assert!(l.names(opq.dir().unwrap()).unwrap().is_empty());
        let both = l.lookup(Path::new("both")).unwrap().unwrap();
        assert_eq!(l.names(both.dir().unwrap()).unwrap(), ["high", "low"]);
        let root = l.root().unwrap().unwrap();
        let names = l.names(root.dir().unwrap()).unwrap();
        assert!(names.contains(&"gone".into()) && l.child(root.dir().unwrap(), "gone".as_ref()).unwrap().is_none());
        assert!(l.lookup(Path::new("both/low/x")).unwrap().is_none());
    }
}
