//! The layer stack: the upper dir (writable, with its work dir) and the ordered lower dirs.
//!
//! Implements SEMANTICS.md "Layers": `lowerdir=TOP:...:BOTTOM`, `upperdir`, `workdir` (same
//! filesystem as upper, owned by Strata). Setting up a stack checks every rule a user can break
//! and probes what the upper filesystem allows (trusted xattrs, whiteout device nodes).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustix::fs::{FileType, XattrFlags};

use crate::sys::{self, Errno, fd, xattr};

/// Where rootless unpacking records an owner it could not set (`uid:gid`).
pub const OWNER_XATTR: &str = "user.strata.owner";
/// Set on the root of a layer in which some owner is only recorded ([`OWNER_XATTR`]): a mount
/// then knows to show the recorded owners (where its user namespace maps them).
pub const OWNERS_MARK: &str = "user.strata.owners";

/// Index of a layer in [`Stack::layers`]; when the mount is writable, index 0 is the upper dir.
pub type LayerIdx = u16;

/// Which xattr namespace holds overlay metadata that Strata writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XattrNs {
    /// `trusted.overlay.*` (root; what the kernel reads by default).
    Trusted,
    /// `user.overlay.*` (rootless; the kernel reads it with `-o userxattr`).
    User,
}

impl XattrNs {
    /// The prefix of overlay xattrs in this namespace.
    pub fn prefix(self) -> &'static str {
        match self {
            XattrNs::Trusted => "trusted.overlay.",
            XattrNs::User => "user.overlay.",
        }
    }

    /// The full name of overlay xattr `what` (`opaque`, `whiteout`, ...).
    pub fn name(self, what: &str) -> String {
        format!("{}{what}", self.prefix())
    }
}

/// How Strata writes whiteouts into the upper dir.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WhiteoutMode {
    /// Character device 0/0 (kernel format).
    Device,
    /// An empty `.wh.NAME` file, where the upper filesystem refuses the device (AUFS/OCI form).
    WhFile,
}

/// One directory of the stack, reached only through its root fd.
#[derive(Debug)]
pub struct Layer {
    /// `O_PATH` fd of the layer's root directory.
    pub root: OwnedFd,
    /// The path the user gave (for messages only).
    pub path: PathBuf,
    /// `st_dev` of the root.
    pub dev: u64,
    /// High bits that make inode numbers of this layer's filesystem unique in the mount.
    pub ino_prefix: u64,
    /// Names of multiply-linked files, by inode number (built on first need).
    pub hardlinks: OnceLock<HashMap<u64, Vec<PathBuf>>>,
    /// Paths of directories with an `overlay.redirect` (built on first need; lower layers only).
    pub redirects: OnceLock<Vec<PathBuf>>,
    /// The layer was unpacked rootless and records some owners in `user.strata.owner` (its
    /// root carries `user.strata.owners`): the mount shows them where it can.
    pub recorded_owners: bool,
    /// A lazy layer's fetcher: its regular files get their content on first use (see
    /// [`super::lazy`]).
    pub lazy: Option<Arc<dyn super::lazy::Fetcher>>,
}

impl Layer {
    /// The root fd.
    pub fn fd(&self) -> BorrowedFd<'_> {
        self.root.as_fd()
    }
}

/// What only a writable mount has.
#[derive(Debug)]
pub struct Upper {
    /// `O_PATH` fd of `WORKDIR/work`, where copies and new objects are built before a rename.
    pub work: OwnedFd,
    /// `O_PATH` fd of `WORKDIR/hidden-links` (see [`super::hardlinks::HIDDEN_LINKS`]).
    pub hidden: OwnedFd,
    /// Namespace of the overlay xattrs Strata writes.
    pub ns: XattrNs,
    /// How whiteouts are written.
    pub whiteouts: WhiteoutMode,
    /// `volatile`: skip every fsync.
    pub volatile: bool,
    /// The owner a file created in the work dir gets (when known): a copy whose original has
    /// it needs no chown.
    pub new_owner: Option<(u32, u32)>,
}

/// What a stack is made from.
#[derive(Clone, Debug, Default)]
pub struct StackSpec {
    /// Lower dirs, top first.
    pub lowers: Vec<PathBuf>,
    /// The upper dir (none: read-only mount).
    pub upper: Option<PathBuf>,
    /// The work dir (required with an upper dir).
    pub work: Option<PathBuf>,
    /// Write `user.overlay.*` even where `trusted.overlay.*` would work.
    pub userxattr: bool,
    /// Never fsync.
    pub volatile: bool,
}

/// Why a stack cannot be set up: each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// No lower dir and no upper dir.
    #[error("no layers: give at least one lower dir (lowerdir=...)")]
    NoLayers,
    /// A layer path cannot be opened as a directory.
    #[error("{role} {path}: {reason}")]
    BadDir { role: &'static str, path: PathBuf, reason: String },
    /// Upper without work dir, or work without upper.
    #[error("{0}")]
    Incomplete(&'static str),
    /// Work dir on another filesystem than upper.
    #[error("work dir {work} is on another filesystem than upper dir {upper}: they must share one")]
    CrossDevice { work: PathBuf, upper: PathBuf },
    /// Work dir inside upper dir or the reverse.
    #[error("work dir {work} and upper dir {upper} must not be inside one another")]
    Nested { work: PathBuf, upper: PathBuf },
    /// A lower dir that is the upper or work dir, or inside one (the kernel refuses it too).
    #[error("lower dir {lower} is the {role} {other} or inside it: layers must not overlap")]
    Overlap { lower: PathBuf, role: &'static str, other: PathBuf },
    /// Preparing the work dir failed.
    #[error("work dir {path}: {reason}")]
    Work { path: PathBuf, reason: String },
}

/// The ordered layers of one mount.
#[derive(Debug)]
pub struct Stack {
    /// Upper first (when writable), then the lowers top to bottom.
    pub layers: Vec<Layer>,
    /// Present when the mount is writable.
    pub upper: Option<Upper>,
    /// Set when a layer's whiteouts had to fall back to `.wh.` files (said once at mount).
    pub notes: Vec<String>,
    /// The ids this process's user namespace maps (`/proc/self/uid_map`, `gid_map`), read
    /// when a layer records owners and the daemon is root in its namespace: a recorded owner is
    /// shown only if it is mapped.
    pub id_maps: Option<IdMaps>,
}

/// Inner id ranges (start, count) of a user namespace's uid and gid maps.
#[derive(Clone, Debug, Default)]
pub struct IdMaps {
    /// Mapped uids.
    pub uids: Vec<(u32, u32)>,
    /// Mapped gids.
    pub gids: Vec<(u32, u32)>,
}

impl IdMaps {
    /// The maps of the current process.
    pub fn current() -> IdMaps {
        let read = |p: &str| {
            std::fs::read_to_string(p)
                .unwrap_or_default()
                .lines()
                .filter_map(|l| {
                    let mut f = l.split_whitespace();
                    let inner = f.next()?.parse().ok()?;
                    let _outer: u64 = f.next()?.parse().ok()?;
                    Some((inner, f.next()?.parse().ok()?))
                })
                .collect()
        };
        IdMaps { uids: read("/proc/self/uid_map"), gids: read("/proc/self/gid_map") }
    }

    /// Whether `uid` and `gid` both have a mapping.
    pub fn maps(&self, uid: u32, gid: u32) -> bool {
        let has = |ranges: &[(u32, u32)], id: u32| ranges.iter().any(|&(s, n)| id >= s && id - s < n);
        has(&self.uids, uid) && has(&self.gids, gid)
    }
}

fn bad_dir(role: &'static str, path: &Path, e: Errno) -> SetupError {
    let reason = match e {
        Errno::NOENT => "no such directory".to_string(),
        Errno::NOTDIR => "not a directory".to_string(),
        Errno::ACCESS | Errno::PERM => "permission denied".to_string(),
        e => e.to_string(),
    };
    SetupError::BadDir { role, path: path.to_owned(), reason }
}

impl Stack {
    /// Opens and checks every layer, prepares the work dir and probes the upper filesystem.
    pub fn open(spec: &StackSpec) -> Result<Stack, SetupError> {
        if spec.lowers.is_empty() && spec.upper.is_none() {
            return Err(SetupError::NoLayers);
        }
        let mut roots = Vec::new();
        let mut upper = None;
        let mut notes = Vec::new();
        let mut writable: Vec<(&'static str, &Path, OwnedFd)> = Vec::new();
        match (&spec.upper, &spec.work) {
            (Some(u), Some(w)) => {
                let ufd = fd::open_user_dir(u).map_err(|e| bad_dir("upper dir", u, e))?;
                let wfd = fd::open_user_dir(w).map_err(|e| bad_dir("work dir", w, e))?;
                check_work(&ufd, u, &wfd, w)?;
                for (role, path, dir) in [("upper dir", u, &ufd), ("work dir", w, &wfd)] {
                    writable.push((role, path, fd::dup(dir.as_fd()).map_err(|e| bad_dir(role, path, e))?));
                }
                upper = Some(prepare_upper(&wfd, w, spec, &mut notes)?);
                roots.push((u.clone(), ufd));
            }
            (Some(_), None) => {
                return Err(SetupError::Incomplete("upper dir given without a work dir (workdir=...)"));
            }
            (None, Some(_)) => {
                return Err(SetupError::Incomplete("work dir given without an upper dir (upperdir=...)"));
            }
            (None, None) => {}
        }
        for l in &spec.lowers {
            let lfd = fd::open_user_dir(l).map_err(|e| bad_dir("lower dir", l, e))?;
            if let Some((role, other, _)) = writable.iter().find(|(_, _, w)| is_ancestor(w, &lfd)) {
                return Err(SetupError::Overlap { lower: l.clone(), role, other: other.to_path_buf() });
            }
            roots.push((l.clone(), lfd));
        }
        let mut layers = assign_ino_prefixes(roots).map_err(|(p, e)| bad_dir("layer", &p, e))?;
        for l in layers.iter_mut().skip(usize::from(upper.is_some())) {
            l.lazy = super::lazy::fetcher_for(l.fd()).map_err(|e| SetupError::BadDir {
                role: "lazy layer",
                path: l.path.clone(),
                reason: format!("{e:#}"),
            })?;
        }
        // Only a daemon that is root (of its user namespace: a rootless container's) shows
        // them; a user mounting a store of their own sees the owners they can read as.
        let shows_owners = rustix::process::geteuid().is_root() && layers.iter().any(|l| l.recorded_owners);
        let id_maps = shows_owners.then(IdMaps::current);
        Ok(Stack { layers, upper, notes, id_maps })
    }

    /// The layer at `idx`.
    pub fn layer(&self, idx: LayerIdx) -> &Layer {
        &self.layers[idx as usize]
    }

    /// Whether `idx` is the upper layer.
    pub fn is_upper(&self, idx: LayerIdx) -> bool {
        idx == 0 && self.upper.is_some()
    }

    /// Index of the first lower layer.
    pub fn first_lower(&self) -> LayerIdx {
        if self.upper.is_some() { 1 } else { 0 }
    }

    /// The upper part, or `EROFS` on a read-only mount.
    pub fn upper(&self) -> sys::Result<&Upper> {
        self.upper.as_ref().ok_or(Errno::ROFS)
    }

    /// The fd of the upper root, or `EROFS`.
    pub fn upper_root(&self) -> sys::Result<BorrowedFd<'_>> {
        self.upper()?;
        Ok(self.layers[0].fd())
    }

    /// How a layer is named to users: `upper`, or `lower N (PATH)` counting from the top lower.
    pub fn describe(&self, idx: LayerIdx) -> String {
        if self.is_upper(idx) {
            return "upper".into();
        }
        let n = idx - self.first_lower() + 1;
        format!("lower {n} ({})", self.layer(idx).path.display())
    }

    /// The mount-wide inode number of inode `ino` of layer `idx`'s filesystem.
    pub fn compose_ino(&self, idx: LayerIdx, ino: u64) -> u64 {
        compose(self.layer(idx).ino_prefix, ino)
    }
}

/// Makes a mount-wide inode number from a layer filesystem's prefix and a real inode number.
pub fn compose(prefix: u64, ino: u64) -> u64 {
    let n = if prefix == 0 { ino } else { prefix | (ino & ((1 << 56) - 1)) ^ ((ino >> 56) << 48) };
    // 1 is the FUSE root id; no other object may use it.
    if n == 1 { u64::MAX - 1 } else { n }
}

fn assign_ino_prefixes(roots: Vec<(PathBuf, OwnedFd)>) -> Result<Vec<Layer>, (PathBuf, Errno)> {
    let mut devs: Vec<u64> = Vec::new();
    let mut out = Vec::new();
    for (path, root) in roots {
        let dev = fd::dev_of(&root).map_err(|e| (path.clone(), e))?;
        let path = std::fs::canonicalize(&path).unwrap_or(path);
        let idx = devs.iter().position(|&d| d == dev).unwrap_or_else(|| {
            devs.push(dev);
            devs.len() - 1
        });
        let recorded_owners = matches!(xattr::get(root.as_fd(), None, OsStr::new(OWNERS_MARK)), Ok(Some(_)));
        let ino_prefix = (idx as u64) << 56;
        out.push(Layer {
            root,
            path,
            dev,
            ino_prefix,
            hardlinks: OnceLock::new(),
            redirects: OnceLock::new(),
            recorded_owners,
            lazy: None,
        });
    }
    Ok(out)
}

fn check_work(ufd: &OwnedFd, u: &Path, wfd: &OwnedFd, w: &Path) -> Result<(), SetupError> {
    let (ust, wst) = (fd::stat_fd(ufd.as_fd()), fd::stat_fd(wfd.as_fd()));
    let (ust, wst) = match (ust, wst) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(e), _) => return Err(bad_dir("upper dir", u, e)),
        (_, Err(e)) => return Err(bad_dir("work dir", w, e)),
    };
    if ust.st_dev != wst.st_dev {
        return Err(SetupError::CrossDevice { work: w.to_owned(), upper: u.to_owned() });
    }
    if is_ancestor(ufd, wfd) || is_ancestor(wfd, ufd) {
        return Err(SetupError::Nested { work: w.to_owned(), upper: u.to_owned() });
    }
    Ok(())
}

/// Whether directory `a` is `b` or one of its ancestors (walking `..` from `b` by fd).
fn is_ancestor(a: &OwnedFd, b: &OwnedFd) -> bool {
    let Ok(ast) = fd::stat_fd(a.as_fd()) else {
        return false;
    };
    let Ok(mut cur) = fd::dup(b.as_fd()) else {
        return false;
    };
    for _ in 0..4096 {
        let Ok(st) = fd::stat_fd(cur.as_fd()) else {
            return false;
        };
        if st.st_dev == ast.st_dev && st.st_ino == ast.st_ino {
            return true;
        }
        let Ok(parent) = rustix::fs::openat(
            &cur,
            "..",
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        ) else {
            return false;
        };
        let Ok(pst) = fd::stat_fd(parent.as_fd()) else {
            return false;
        };
        if pst.st_dev == st.st_dev && pst.st_ino == st.st_ino {
            return false; // reached "/"
        }
        cur = parent;
    }
    false
}

/// Creates (or empties) `WORKDIR/work` and probes what the upper filesystem allows.
fn prepare_upper(wfd: &OwnedFd, w: &Path, spec: &StackSpec, notes: &mut Vec<String>) -> Result<Upper, SetupError> {
    let werr = |e: Errno| SetupError::Work { path: w.to_owned(), reason: e.to_string() };
    let name = OsStr::new("work");
    match fd::mkdir_at(wfd.as_fd(), name, 0o700) {
        Ok(()) | Err(Errno::EXIST) => {}
        Err(Errno::ACCESS) | Err(Errno::PERM) => {
            return Err(SetupError::Work { path: w.to_owned(), reason: "permission denied".into() });
        }
        Err(e) => return Err(werr(e)),
    }
    let work = fd::open_dir(wfd.as_fd(), Path::new("work")).map_err(werr)?;
    clean_dir(work.as_fd()).map_err(werr)?;
    let hidden = super::hardlinks::open_hidden_links(wfd.as_fd()).map_err(werr)?;
    let ns = if spec.userxattr { XattrNs::User } else { probe_ns(work.as_fd()) };
    let whiteouts = probe_whiteouts(work.as_fd()).map_err(werr)?;
    if whiteouts == WhiteoutMode::WhFile {
        notes.push("the upper filesystem refuses whiteout devices: deletions are written as .wh. files".into());
    }
    // The shared whiteout was created in the work dir like every temp copy: its owner is theirs.
    let new_owner = match whiteouts {
        WhiteoutMode::Device => fd::try_stat_at(work.as_fd(), OsStr::new(super::whiteout::SHARED_WHITEOUT))
            .ok()
            .flatten()
            .map(|st| (st.st_uid, st.st_gid)),
        WhiteoutMode::WhFile => None,
    };
    Ok(Upper { work, hidden, ns, whiteouts, volatile: spec.volatile, new_owner })
}

fn probe_ns(work: BorrowedFd<'_>) -> XattrNs {
    let key = XattrNs::Trusted.name("strata-probe");
    match xattr::set(work, None, OsStr::new(&key), b"y", XattrFlags::empty()) {
        Ok(()) => {
            let _ = xattr::remove(work, None, OsStr::new(&key));
            XattrNs::Trusted
        }
        Err(_) => XattrNs::User,
    }
}

/// Whether the upper filesystem takes whiteout devices; if so, the probe stays as the shared
/// whiteout new ones are linked to ([`super::whiteout::SHARED_WHITEOUT`]).
fn probe_whiteouts(work: BorrowedFd<'_>) -> sys::Result<WhiteoutMode> {
    match fd::mkwhiteout_at(work, OsStr::new(super::whiteout::SHARED_WHITEOUT)) {
        Ok(()) => Ok(WhiteoutMode::Device),
        Err(Errno::PERM) | Err(Errno::ACCESS) | Err(Errno::OPNOTSUPP) => Ok(WhiteoutMode::WhFile),
        Err(e) => Err(e),
    }
}

/// Removes everything inside `dir` (leftovers of an interrupted copy-up), depth first.
pub fn clean_dir(dir: BorrowedFd<'_>) -> sys::Result<()> {
    let rfd = fd::open_dir_read(dir, Path::new(""))?;
    for e in fd::read_dir(rfd)? {
        remove_tree(dir, &e.name)?;
    }
    Ok(())
}

/// Removes entry `name` of `dir`, recursively if it is a directory.
pub fn remove_tree(dir: BorrowedFd<'_>, name: &OsStr) -> sys::Result<()> {
    let st = match fd::try_stat_at(dir, name)? {
        Some(st) => st,
        None => return Ok(()),
    };
    if fd::kind_of(&st) == FileType::Directory {
        let sub = fd::open_dir(dir, Path::new(name))?;
        clean_dir(sub.as_fd())?;
        match fd::rmdir_at(dir, name) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        }
    } else {
        match fd::unlink_at(dir, name) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(e),
        }
    }
}
