//! A layer stack as in-memory trees, read from layer dirs in the upper-dir format.
//!
//! Each layer dir is walked once, read-only, through fds (`crate::sys::fd`). Markers are read in
//! every form SEMANTICS.md "What counts as a whiteout / opaque dir" lists, by the functions of
//! [`crate::fs::whiteout`]: a whiteout becomes a [`Kind::Whiteout`] node; `.wh.NAME` files
//! become whiteout nodes for NAME, except beside a NAME of the same layer (markers never affect
//! entries of their own layer; beside a directory they hide what lies below it, as an opaque
//! mark does, the way [`crate::fs::lookup`] reads them); opaque marks and `overlay.redirect`
//! are kept on directory nodes. Names starting with `.wh.` never become nodes.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Mode, OFlags, Stat};

use super::{ExplainError, Result};
use crate::fs::lookup::redirect_of;
use crate::fs::whiteout;
use crate::image::digest::Digest;
use crate::sys::{Errno, fd};

/// Index of a layer in [`Stack::layers`]: 0 is the bottom layer.
pub type LayerId = usize;

/// How a whiteout is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutForm {
    /// A character device 0/0 (kernel format, what Strata writes).
    Device,
    /// An empty `.wh.NAME` file beside the name (OCI/AUFS form).
    WhFile,
    /// A zero-size file with `overlay.whiteout` in a dir marked `overlay.opaque=x`.
    Xattr,
}

impl WhiteoutForm {
    /// How the form reads in a sentence.
    pub fn describe(self) -> &'static str {
        match self {
            WhiteoutForm::Device => "a character device 0/0",
            WhiteoutForm::WhFile => "a .wh. file",
            WhiteoutForm::Xattr => "an overlay.whiteout xattr",
        }
    }
}

/// What a node is.
#[derive(Clone, Debug)]
pub enum Kind {
    /// A directory.
    Dir(Dir),
    /// A regular file.
    File,
    /// A symbolic link, with its target.
    Symlink(OsString),
    /// A FIFO.
    Fifo,
    /// A socket.
    Socket,
    /// A character device (not 0/0), with its rdev.
    CharDev(u64),
    /// A block device, with its rdev.
    BlockDev(u64),
    /// A whiteout: the name is deleted from the layers below.
    Whiteout(WhiteoutForm),
}

/// A directory of one layer.
#[derive(Clone, Debug, Default)]
pub struct Dir {
    /// Nothing below this layer contributes to the directory.
    pub opaque: bool,
    /// The `overlay.redirect` of the directory (where the layers below are read), if any.
    pub redirect: Option<Vec<u8>>,
    /// The entries, by name; `.wh.` names are never here.
    pub children: BTreeMap<OsString, Node>,
}

/// One entry of a layer.
#[derive(Clone, Debug)]
pub struct Node {
    /// What it is.
    pub kind: Kind,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// `st_size`.
    pub size: u64,
    /// `st_ino` (names of one inode in a layer are hardlinks).
    pub ino: u64,
    /// Modification time (seconds).
    pub mtime: i64,
}

impl Node {
    fn from_stat(kind: Kind, st: &Stat) -> Node {
        Node {
            kind,
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            size: st.st_size as u64,
            ino: st.st_ino,
            mtime: st.st_mtime,
        }
    }

    /// The directory, if this is one.
    pub fn dir(&self) -> Option<&Dir> {
        match &self.kind {
            Kind::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// Whether this is a whiteout.
    pub fn is_whiteout(&self) -> bool {
        matches!(self.kind, Kind::Whiteout(_))
    }

    /// Whether this is a regular file.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, Kind::File)
    }

    /// The type in one word (`file`, `dir`, `symlink`, ...).
    pub fn type_word(&self) -> &'static str {
        match self.kind {
            Kind::Dir(_) => "dir",
            Kind::File => "file",
            Kind::Symlink(_) => "symlink",
            Kind::Fifo => "fifo",
            Kind::Socket => "socket",
            Kind::CharDev(_) => "char device",
            Kind::BlockDev(_) => "block device",
            Kind::Whiteout(_) => "whiteout",
        }
    }
}

/// What a layer is, for people.
#[derive(Clone, Debug)]
pub struct LayerInfo {
    /// `1`..`N` from the bottom for image layers, `upper` for a container's writable layer.
    pub label: String,
    /// The layer's diff_id (image layers).
    pub diff_id: Option<Digest>,
    /// The history line that made it (`created_by`), if the image says.
    pub created_by: Option<String>,
    /// Where the layer dir is.
    pub dir: PathBuf,
}

impl LayerInfo {
    /// Whether this is a container's writable layer.
    pub fn is_upper(&self) -> bool {
        self.label == "upper"
    }

    /// "layer 3" or "the container's upper layer".
    pub fn name(&self) -> String {
        if self.is_upper() { "the container's upper layer".into() } else { format!("layer {}", self.label) }
    }
}

/// One layer: what it is, its tree, and an fd of its root for reading file data.
#[derive(Debug)]
pub struct Layer {
    /// What the layer is.
    pub info: LayerInfo,
    /// The layer's root directory (a node of kind [`Kind::Dir`]).
    pub root: Node,
    fd: OwnedFd,
}

impl Layer {
    /// Reads the layer dir `info.dir` whole.
    pub fn read(info: LayerInfo) -> Result<Layer> {
        let err = |op, path: &Path| {
            let (layer, path) = (info.label.clone(), path.to_path_buf());
            move |errno| ExplainError::Layer { layer, path, op, errno }
        };
        let root_fd = fd::open_user_dir(&info.dir).map_err(err("open", &info.dir))?;
        let st = fd::stat_fd(root_fd.as_fd()).map_err(err("stat", &info.dir))?;
        let mut walker = Walker { path: PathBuf::new(), label: &info.label };
        let root = Node::from_stat(Kind::Dir(walker.dir(root_fd.as_fd())?), &st);
        Ok(Layer { root, fd: root_fd, info })
    }

    /// The layer's root directory.
    pub fn root_dir(&self) -> &Dir {
        match &self.root.kind {
            Kind::Dir(d) => d,
            _ => unreachable_dir(),
        }
    }

    /// The node at `path` (relative, from the layer root) if this layer has one.
    pub fn node(&self, path: &Path) -> Option<&Node> {
        let mut dir = self.root_dir();
        let mut comps = normal_components(path).peekable();
        while let Some(name) = comps.next() {
            let node = dir.children.get(name)?;
            if comps.peek().is_none() {
                return Some(node);
            }
            dir = node.dir()?;
        }
        None
    }

    /// Opens the regular file at `path` of this layer for reading (never following a symlink).
    pub fn open_file(&self, path: &Path) -> Result<File> {
        let f = fd::open_beneath(self.fd.as_fd(), path, OFlags::RDONLY, Mode::empty()).map_err(|errno| {
            ExplainError::Layer { layer: self.info.label.clone(), path: path.to_path_buf(), op: "open", errno }
        })?;
        Ok(File::from(f))
    }

    /// The error for a failed read of the file at `path` of this layer.
    pub fn read_error(&self, path: &Path, e: std::io::Error) -> ExplainError {
        let errno = crate::sys::errno_of(&e);
        ExplainError::Layer { layer: self.info.label.clone(), path: path.to_path_buf(), op: "read", errno }
    }
}

/// A layer root is always read as a directory; this is never reached.
fn unreachable_dir() -> &'static Dir {
    static EMPTY: Dir = Dir { opaque: false, redirect: None, children: BTreeMap::new() };
    &EMPTY
}

/// The normal components of a relative or absolute path (`/`, `.` dropped).
pub fn normal_components(path: &Path) -> impl Iterator<Item = &OsStr> {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n),
        _ => None,
    })
}

/// Reads one layer dir recursively, keeping the path for error messages.
struct Walker<'l> {
    path: PathBuf,
    label: &'l str,
}

impl Walker<'_> {
    fn err(&self, op: &'static str) -> impl FnOnce(Errno) -> ExplainError + '_ {
        move |errno| ExplainError::Layer { layer: self.label.to_string(), path: self.path.clone(), op, errno }
    }

    /// Reads the directory `dir` (an `O_PATH` fd) and everything below it.
    fn dir(&mut self, dir: BorrowedFd<'_>) -> Result<Dir> {
        let marks = whiteout::dir_marks(dir).map_err(self.err("reading opaque marks"))?;
        let reader = fd::open_dir_read(dir, Path::new("")).map_err(self.err("open"))?;
        let entries = fd::read_dir(reader).map_err(self.err("readdir"))?;
        let mut out = Dir { opaque: marks.opaque, redirect: redirect_of(dir), children: BTreeMap::new() };
        let mut wh_files: Vec<(OsString, Stat)> = Vec::new();
        for e in entries {
            self.path.push(&e.name);
            let st = fd::stat_at(dir, &e.name).map_err(self.err("stat"));
            let node = match st {
                Ok(st) if whiteout::is_wh_name(&e.name) => {
                    if let Some(target) = whiteout::wh_target(&e.name) {
                        wh_files.push((target.to_owned(), st));
                    }
                    None
                }
                Ok(st) => Some(self.node(dir, &e.name, &st, marks.xwhiteouts)),
                Err(e) => Some(Err(e)),
            };
            self.path.pop();
            if let Some(node) = node {
                out.children.insert(e.name, node?);
            }
        }
        for (target, st) in wh_files {
            match out.children.get_mut(&target).map(|n| &mut n.kind) {
                Some(Kind::Dir(d)) => d.opaque = true,
                Some(_) => {}
                None => {
                    let node = Node::from_stat(Kind::Whiteout(WhiteoutForm::WhFile), &st);
                    out.children.insert(target, node);
                }
            }
        }
        Ok(out)
    }

    /// Reads the entry `name` of `dir` (stat `st`).
    fn node(&mut self, dir: BorrowedFd<'_>, name: &OsStr, st: &Stat, xwhiteouts: bool) -> Result<Node> {
        let kind = match fd::kind_of(st) {
            _ if whiteout::is_whiteout(dir, name, st, xwhiteouts) => {
                let form = if fd::is_whiteout_dev(st) { WhiteoutForm::Device } else { WhiteoutForm::Xattr };
                Kind::Whiteout(form)
            }
            FileType::Directory => {
                let sub = fd::open_dir(dir, Path::new(name)).map_err(self.err("open"))?;
                Kind::Dir(self.dir(sub.as_fd())?)
            }
            FileType::Symlink => Kind::Symlink(fd::readlink_at(dir, name).map_err(self.err("readlink"))?),
            FileType::Fifo => Kind::Fifo,
            FileType::Socket => Kind::Socket,
            FileType::CharacterDevice => Kind::CharDev(st.st_rdev),
            FileType::BlockDevice => Kind::BlockDev(st.st_rdev),
            _ => Kind::File,
        };
        Ok(Node::from_stat(kind, st))
    }
}

/// The layers of an image, bottom first, and a container's upper layer last if there is one.
#[derive(Debug)]
pub struct Stack {
    /// The layers; index 0 is the bottom.
    pub layers: Vec<Layer>,
    /// What the stack is (the image or container as named).
    pub name: String,
}

impl Stack {
    /// Reads every layer.
    pub fn read(name: &str, infos: Vec<LayerInfo>) -> Result<Stack> {
        let layers = infos.into_iter().map(Layer::read).collect::<Result<Vec<_>>>()?;
        Ok(Stack { layers, name: name.to_string() })
    }

    /// The layer of label `label` (`1`..`N` or `upper`).
    pub fn by_label(&self, label: &str) -> Result<LayerId> {
        self.layers.iter().position(|l| l.info.label == label).ok_or_else(|| ExplainError::NoSuchLayer(label.into()))
    }

    /// The container's upper layer, if the stack has one.
    pub fn upper(&self) -> Option<LayerId> {
        self.layers.iter().position(|l| l.info.is_upper())
    }

    /// Layer `id`.
    pub fn layer(&self, id: LayerId) -> &Layer {
        &self.layers[id]
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A layer info for a test dir.
    pub(crate) fn info(label: &str, dir: &Path) -> LayerInfo {
        LayerInfo { label: label.into(), diff_id: None, created_by: None, dir: dir.to_path_buf() }
    }

    #[test]
    fn reads_every_marker_form() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        std::fs::create_dir_all(d.join("dir/sub")).unwrap();
        std::fs::write(d.join("dir/file"), b"12345").unwrap();
        std::fs::write(d.join(".wh.gone"), b"").unwrap();
        std::fs::write(d.join("dir/.wh..wh..opq"), b"").unwrap();
        std::fs::write(d.join(".wh.dir"), b"").unwrap();
        symlink("target", d.join("link")).unwrap();
        rustix::fs::mknodat(rustix::fs::CWD, d.join("dev-wh"), FileType::CharacterDevice, Mode::empty(), 0).unwrap();
        let layer = Layer::read(info("1", d)).unwrap();
        let names: Vec<_> = layer.root_dir().children.keys().map(|n| n.to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["dev-wh", "dir", "gone", "link"]);
        assert!(matches!(layer.node(Path::new("gone")).unwrap().kind, Kind::Whiteout(WhiteoutForm::WhFile)));
        assert!(matches!(layer.node(Path::new("dev-wh")).unwrap().kind, Kind::Whiteout(WhiteoutForm::Device)));
        let dir = layer.node(Path::new("dir")).unwrap().dir().unwrap();
        assert!(dir.opaque);
        assert_eq!(dir.children.len(), 2, ".wh..wh..opq is no node");
        assert_eq!(layer.node(Path::new("/dir/file")).unwrap().size, 5);
        assert!(layer.node(Path::new("dir/file/x")).is_none());
        assert!(matches!(&layer.node(Path::new("link")).unwrap().kind, Kind::Symlink(t) if t == "target"));
    }
}
