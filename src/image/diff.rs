//! What a container changed: its upper dir read against its image's layers (SEMANTICS.md "OCI
//! layers": the upper-dir format converted back to layer markers).
//!
//! One walk of the upper dir, in name order, gives both what `strata diff` prints (`A`, `C`,
//! `D` per path) and what `strata commit` packs ([`Plan::items`]):
//! - an upper non-directory is packed whole (`A`, or `C` if the image had the path);
//! - a whiteout in any form becomes `.wh.NAME` (`D`) when the image shows NAME;
//! - entries come in tar order: a directory, its opaque marker, then its entries sorted by the
//!   name they have in the tar;
//! - an upper directory is packed with its metadata; it is `C` only when the image had a
//!   directory there with other metadata (mode, owner, times, xattrs), or something else;
//! - an opaque directory (every opaque form, or `.wh.NAME` beside it) gets `.wh..wh..opq` when
//!   the image had a directory there;
//! - a directory renamed in the container (`overlay.redirect`) has no redirect in a layer: it is
//!   packed with its whole merged content (the image's content at the redirect target plus the
//!   upper part, whose whiteouts only leave names out), made opaque if the image had a
//!   directory at the new path; the old path's whiteout is packed as any other.
//!
//! Private xattrs never count, and the run-time mount targets ([`RUNTIME_TARGETS`]) are never
//! packed nor reported.
//!
//! The owner an upper entry is packed with ([`Item::Object`]'s `owner`): a copy-up that kept
//! the on-disk owner of the image's entry keeps that entry's owner as the layer says it — also
//! one a rootless unpack could only record in `user.strata.owner`, a private xattr copy-up does
//! not carry; anything else has its on-disk owner as the container saw it ([`IdMap`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};

use super::lower::{Inst, LowerError, Lowers, Shown};
use super::owners::IdMap;
use crate::fs::layers::OWNER_XATTR;
use crate::fs::lookup::{INO_XATTR, redirect_of};
use crate::fs::whiteout::{self, OPAQUE_MARKER, is_private_xattr};
use crate::sys::{Errno, fd, xattr};

/// Files a container runtime mounts over the rootfs; never part of a commit.
pub const RUNTIME_TARGETS: [&str; 3] = ["etc/hosts", "etc/hostname", "etc/resolv.conf"];

/// What went wrong reading the changes; each names the path at fault.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// A system call on the upper dir failed.
    #[error("upper dir {upper}: {path}: {op}: {errno}")]
    Upper {
        /// The upper dir.
        upper: PathBuf,
        /// The path inside it.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// A layer of the image.
    #[error(transparent)]
    Lower(#[from] LowerError),
}

type Result<T> = std::result::Result<T, DiffError>;

/// Where an object's content and metadata are read from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadFrom {
    /// The container's upper dir.
    Upper,
    /// Lower layer `n` (0 is the top).
    Lower(usize),
}

/// One entry of the layer to write, in tar order.
#[derive(Clone, Debug)]
pub enum Item {
    /// An object at merged path `path`, read from `from` at `src` (its path in that layer).
    Object {
        /// Its merged path (the tar name).
        path: PathBuf,
        /// Where it is read from.
        from: ReadFrom,
        /// Its path there.
        src: PathBuf,
        /// Its stat when the plan was made.
        st: Stat,
        /// The owner to pack (`uid`, `gid`) instead of the one read from the entry.
        owner: Option<(u32, u32)>,
    },
    /// `.wh.NAME` deleting `path` from the layers below.
    Whiteout {
        /// The deleted path.
        path: PathBuf,
        /// Modification time of the marker (seconds).
        mtime: i64,
    },
    /// `.wh..wh..opq` in directory `dir`.
    Opaque {
        /// The directory.
        dir: PathBuf,
        /// Modification time of the marker (seconds).
        mtime: i64,
    },
}

/// How a path changed, as `docker diff` says it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// Added.
    Added,
    /// Changed.
    Changed,
    /// Deleted.
    Deleted,
}

/// One line of `strata diff`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The merged path (relative).
    pub path: PathBuf,
}

impl fmt::Display for Change {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let k = match self.kind {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        };
        write!(f, "{k} /{}", self.path.display())
    }
}

/// The changes of an upper dir and the layer entries that carry them.
#[derive(Debug, Default)]
pub struct Plan {
    /// Tar entries, in order: a directory, its opaque marker, then its entries by name.
    pub items: Vec<Item>,
    /// Changed paths, sorted.
    pub changes: Vec<Change>,
    /// Bytes of regular-file content to pack.
    pub bytes: u64,
}

impl Plan {
    /// Whether the upper dir changes nothing.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// Reads the upper dir `upper` of a container this user made against `lowers` (the image's
/// layers, top first).
pub fn plan(upper: &Path, lowers: &Lowers) -> Result<Plan> {
    plan_with_ids(upper, lowers, IdMap::of_caller())
}

/// Like [`plan`], the upper dir's owners mapped to the container's with `ids`.
pub fn plan_with_ids(upper: &Path, lowers: &Lowers, ids: IdMap) -> Result<Plan> {
    let fd = fd::open_user_dir(upper).map_err(|errno| DiffError::Upper {
        upper: upper.to_path_buf(),
        path: PathBuf::new(),
        op: "open",
        errno,
    })?;
    let mut w = Walker { upper: upper.to_path_buf(), fd, lowers, ids, plan: Plan::default(), linked: HashSet::new() };
    let root = lowers.root()?;
    let marks = whiteout::dir_marks(w.fd.as_fd()).map_err(w.err(Path::new(""), "reading marks"))?;
    let content = if marks.opaque { None } else { root.as_ref().and_then(|r| r.dir()).map(<[Inst]>::to_vec) };
    if marks.opaque && root.is_some() {
        let st = fd::stat_fd(w.fd.as_fd()).map_err(w.err(Path::new(""), "stat"))?;
        w.plan.items.push(Item::Opaque { dir: PathBuf::new(), mtime: st.st_mtime });
    }
    w.dir(Path::new(""), &Below { content, full: false })?;
    w.plan.changes.sort_by(|a, b| a.path.as_os_str().as_bytes().cmp(b.path.as_os_str().as_bytes()));
    Ok(w.plan)
}

/// What lies below an upper directory.
struct Below {
    /// The lower instances merged into it, if any.
    content: Option<Vec<Inst>>,
    /// Inside a renamed directory: every entry is packed whole, whiteouts only leave names out.
    full: bool,
}

/// An entry of an upper directory.
enum UpperEntry {
    /// A whiteout in any form, with the stat of its marker.
    Whiteout(Stat),
    /// An object; `wh_beside`: a `.wh.NAME` file sits beside it (hides the layers below).
    Object(Stat, bool),
}

struct Walker<'a> {
    upper: PathBuf,
    fd: OwnedFd,
    lowers: &'a Lowers,
    /// Host ids of the upper dir to the container's.
    ids: IdMap,
    plan: Plan,
    /// Inodes with several names seen so far (their content is packed once).
    linked: HashSet<(u64, u64)>,
}

impl Walker<'_> {
    fn err(&self, path: &Path, op: &'static str) -> impl FnOnce(Errno) -> DiffError + use<> {
        let (upper, path) = (self.upper.clone(), path.to_path_buf());
        move |errno| DiffError::Upper { upper, path, op, errno }
    }

    fn change(&mut self, kind: ChangeKind, path: &Path) {
        self.plan.changes.push(Change { kind, path: path.to_path_buf() });
    }

    /// Walks the upper directory at `mpath` (and, when `below.full`, the lower content too).
    fn dir(&mut self, mpath: &Path, below: &Below) -> Result<()> {
        let upper = self.read_upper(mpath)?;
        let lower: BTreeSet<OsString> = match (&below.content, below.full) {
            (Some(insts), true) => self.lowers.names(insts)?.into_iter().collect(),
            _ => BTreeSet::new(),
        };
        // In tar order: by the name each entry has in the layer (`.wh.NAME` for a whiteout).
        let mut names: Vec<(OsString, &OsString)> = upper
            .iter()
            .map(|(n, e)| (if matches!(e, UpperEntry::Whiteout(_)) { whiteout::wh_name(n) } else { n.clone() }, n))
            .chain(lower.iter().filter(|n| !upper.contains_key(*n)).map(|n| (n.clone(), n)))
            .collect();
        names.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (_, name) in names {
            let path = mpath.join(name);
            if is_runtime_target(&path) {
                continue;
            }
            match upper.get(name) {
                Some(UpperEntry::Whiteout(st)) => self.whiteout(&path, st, below)?,
                Some(UpperEntry::Object(st, wh)) if fd::kind_of(st) == FileType::Directory => {
                    self.upper_dir(&path, st, *wh, below)?
                }
                Some(UpperEntry::Object(st, _)) => self.upper_file(&path, st, below)?,
                None => {
                    if let Some(shown) = self.under(below, &path)? {
                        self.lower_whole(&path, &shown)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// The entries of the upper directory at `mpath`, every whiteout form read.
    fn read_upper(&self, mpath: &Path) -> Result<BTreeMap<OsString, UpperEntry>> {
        let dir = fd::open_dir(self.fd.as_fd(), mpath).map_err(self.err(mpath, "open"))?;
        let marks = whiteout::dir_marks(dir.as_fd()).map_err(self.err(mpath, "reading marks"))?;
        let reader = fd::open_dir_read(dir.as_fd(), Path::new("")).map_err(self.err(mpath, "open"))?;
        let mut out = BTreeMap::new();
        let mut wh_files = Vec::new();
        for e in fd::read_dir(reader).map_err(self.err(mpath, "readdir"))? {
            let st = fd::stat_at(dir.as_fd(), &e.name).map_err(self.err(&mpath.join(&e.name), "stat"))?;
            if whiteout::is_wh_name(&e.name) {
                if let Some(target) = whiteout::wh_target(&e.name).filter(|_| e.name != OPAQUE_MARKER) {
                    wh_files.push((target.to_os_string(), st));
                }
            } else if whiteout::is_whiteout(dir.as_fd(), &e.name, &st, marks.xwhiteouts) {
                out.insert(e.name, UpperEntry::Whiteout(st));
            } else {
                out.insert(e.name, UpperEntry::Object(st, false));
            }
        }
        for (target, st) in wh_files {
            match out.get_mut(&target) {
                Some(UpperEntry::Object(_, beside)) => *beside = true,
                Some(UpperEntry::Whiteout(_)) => {}
                None => {
                    out.insert(target, UpperEntry::Whiteout(st));
                }
            }
        }
        Ok(out)
    }

    /// What the lower content of `below` shows at `path`'s name.
    fn under(&self, below: &Below, path: &Path) -> Result<Option<Shown>> {
        match (&below.content, path.file_name()) {
            (Some(insts), Some(name)) => Ok(self.lowers.child(insts, name)?),
            _ => Ok(None),
        }
    }

    fn whiteout(&mut self, path: &Path, st: &Stat, below: &Below) -> Result<()> {
        if below.full || self.under(below, path)?.is_none() {
            return Ok(());
        }
        self.plan.items.push(Item::Whiteout { path: path.to_path_buf(), mtime: st.st_mtime });
        self.change(ChangeKind::Deleted, path);
        Ok(())
    }

    fn upper_file(&mut self, path: &Path, st: &Stat, below: &Below) -> Result<()> {
        let under = if below.full { None } else { self.under(below, path)? };
        let owner = self.upper_owner(path, st, under.as_ref())?;
        self.object(path, ReadFrom::Upper, path, st, Some(owner));
        self.change(if under.is_some() { ChangeKind::Changed } else { ChangeKind::Added }, path);
        Ok(())
    }

    fn object(&mut self, path: &Path, from: ReadFrom, src: &Path, st: &Stat, owner: Option<(u32, u32)>) {
        let first_name = st.st_nlink < 2 || self.linked.insert((st.st_dev, st.st_ino));
        if fd::kind_of(st) == FileType::RegularFile && first_name {
            self.plan.bytes += st.st_size as u64;
        }
        let item = Item::Object { path: path.to_path_buf(), from, src: src.to_path_buf(), st: *st, owner };
        self.plan.items.push(item);
    }

    /// The owner of the upper entry at `path` as the layer gets it: the owner of `base` (the
    /// image's entry there) when it is a copy-up of it that kept its on-disk owner, else its own
    /// (recorded, or on disk as the container saw it).
    fn upper_owner(&self, path: &Path, st: &Stat, base: Option<&Shown>) -> Result<(u32, u32)> {
        let own = Meta::read(self.fd.as_fd(), path, st).map_err(self.err(path, "reading xattrs"))?;
        if own.recorded {
            return Ok((own.uid, own.gid));
        }
        if let Some(b) = base
            && own.copied_up
            && fd::kind_of(b.st()) == fd::kind_of(st)
            && (b.st().st_uid, b.st().st_gid) == (st.st_uid, st.st_gid)
        {
            let (layer, lpath) = b.top();
            let m = Meta::read(self.lowers.fd(layer), lpath, b.st()).map_err(self.lowers.error(
                layer,
                lpath,
                "reading xattrs",
            ))?;
            return Ok((m.uid, m.gid));
        }
        Ok(self.ids.to_container(st.st_uid, st.st_gid))
    }

    /// An upper directory: packed, compared with the image's, and walked.
    fn upper_dir(&mut self, path: &Path, st: &Stat, wh_beside: bool, below: &Below) -> Result<()> {
        let sub = fd::open_dir(self.fd.as_fd(), path).map_err(self.err(path, "open"))?;
        let marks = whiteout::dir_marks(sub.as_fd()).map_err(self.err(path, "reading marks"))?;
        let opaque = marks.opaque || wh_beside;
        let redirect = if opaque { None } else { redirect_of(sub.as_fd()) };
        let under = self.under(below, path)?;
        let base = if below.full { None } else { under.clone() };
        let content = match (&redirect, opaque) {
            (_, true) => None,
            (Some(target), false) => self.redirect_target(target, below)?,
            (None, false) => under.as_ref().and_then(|u| u.dir()).map(<[Inst]>::to_vec),
        };
        let replaces = opaque || redirect.is_some();
        let owner = self.upper_owner(path, st, base.as_ref())?;
        self.object(path, ReadFrom::Upper, path, st, Some(owner));
        if replaces && base.as_ref().is_some_and(|b| b.dir().is_some()) {
            self.plan.items.push(Item::Opaque { dir: path.to_path_buf(), mtime: st.st_mtime });
        }
        let kind = match &base {
            None => Some(ChangeKind::Added),
            Some(b @ Shown::Dir { .. }) if !replaces => {
                self.dir_changed(path, st, owner, b)?.then_some(ChangeKind::Changed)
            }
            Some(_) => Some(ChangeKind::Changed),
        };
        if let Some(kind) = kind {
            self.change(kind, path);
        }
        let full = below.full || (redirect.is_some() && content.is_some());
        self.dir(path, &Below { content, full })
    }

    /// Where a renamed directory's lower content is: the redirect target, if it is a directory.
    fn redirect_target(&self, target: &[u8], below: &Below) -> Result<Option<Vec<Inst>>> {
        let shown = if let Some(abs) = target.strip_prefix(b"/") {
            self.lowers.lookup(Path::new(OsStr::from_bytes(abs)))?
        } else {
            match &below.content {
                Some(insts) => self.lowers.child(insts, OsStr::from_bytes(target))?,
                None => None,
            }
        };
        Ok(shown.and_then(|s| s.dir().map(<[Inst]>::to_vec)))
    }

    /// Whether an upper directory's metadata (with the owner it is packed with) differs from the
    /// image's directory `base`.
    fn dir_changed(&self, path: &Path, st: &Stat, owner: (u32, u32), base: &Shown) -> Result<bool> {
        let (layer, lpath) = base.top();
        let bst = base.st();
        let same_times = (st.st_mtime, st.st_mtime_nsec) == (bst.st_mtime, bst.st_mtime_nsec);
        let mut upper_meta = Meta::read(self.fd.as_fd(), path, st).map_err(self.err(path, "reading xattrs"))?;
        (upper_meta.uid, upper_meta.gid) = owner;
        upper_meta.recorded = false;
        upper_meta.copied_up = false;
        let mut lower_meta =
            Meta::read(self.lowers.fd(layer), lpath, bst).map_err(self.lowers.error(layer, lpath, "reading xattrs"))?;
        lower_meta.recorded = false;
        Ok(!same_times || upper_meta != lower_meta)
    }

    /// An entry of the image under a renamed directory that the container left as it was.
    fn lower_whole(&mut self, path: &Path, shown: &Shown) -> Result<()> {
        let (layer, src) = shown.top();
        let src = src.to_path_buf();
        self.object(path, ReadFrom::Lower(layer), &src, shown.st(), None);
        self.change(ChangeKind::Added, path);
        if let Some(insts) = shown.dir() {
            for name in self.lowers.names(insts)? {
                let p = path.join(&name);
                if is_runtime_target(&p) {
                    continue;
                }
                if let Some(child) = self.lowers.child(insts, &name)? {
                    self.lower_whole(&p, &child)?;
                }
            }
        }
        Ok(())
    }
}

/// Whether `path` (merged, relative) is a run-time mount target.
pub fn is_runtime_target(path: &Path) -> bool {
    RUNTIME_TARGETS.iter().any(|t| path == Path::new(t))
}

/// The metadata an entry carries into a layer: mode, owner, public xattrs.
#[derive(Debug, PartialEq, Eq)]
pub struct Meta {
    /// Permission bits.
    pub mode: u32,
    /// Owner (from `user.strata.owner` when rootless unpacking recorded one).
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Xattrs that are not private to overlays, sorted by key.
    pub xattrs: Vec<(OsString, Vec<u8>)>,
    /// The owner is the one recorded in `user.strata.owner`.
    pub recorded: bool,
    /// The entry is a copy-up (it keeps the inode number of what it was copied from).
    pub copied_up: bool,
}

impl Meta {
    /// Reads the metadata of the entry at `path` (relative, not empty) beneath `root`.
    pub fn read(root: BorrowedFd<'_>, path: &Path, st: &Stat) -> crate::sys::Result<Meta> {
        let (parent, name) = match (path.parent(), path.file_name()) {
            (Some(p), Some(n)) => (p, n),
            _ => return Err(Errno::INVAL),
        };
        let dir = fd::open_dir(root, parent)?;
        let mut meta = Meta {
            mode: st.st_mode & 0o7777,
            uid: st.st_uid,
            gid: st.st_gid,
            xattrs: Vec::new(),
            recorded: false,
            copied_up: false,
        };
        let keys = match xattr::list(dir.as_fd(), Some(name)) {
            Ok(k) => k,
            Err(Errno::OPNOTSUPP) => Vec::new(),
            Err(e) => return Err(e),
        };
        for key in keys {
            if key == OWNER_XATTR {
                meta.set_owner(xattr::get(dir.as_fd(), Some(name), &key)?.as_deref());
            } else if is_copy_up_mark(&key) {
                meta.copied_up = true;
            } else if !is_private_xattr(&key)
                && let Some(v) = xattr::get(dir.as_fd(), Some(name), &key)?
            {
                meta.xattrs.push((key, v));
            }
        }
        meta.xattrs.sort();
        Ok(meta)
    }

    /// Takes the owner from a `uid:gid` value.
    fn set_owner(&mut self, value: Option<&[u8]>) {
        let text = value.and_then(|v| std::str::from_utf8(v).ok()).unwrap_or_default();
        if let Some((u, g)) = text.split_once(':')
            && let (Ok(u), Ok(g)) = (u.parse(), g.parse())
        {
            (self.uid, self.gid) = (u, g);
            self.recorded = true;
        }
    }
}

/// Whether `key` is the xattr copy-up leaves on an upper entry (`*.overlay.strata.ino`).
fn is_copy_up_mark(key: &OsStr) -> bool {
    let key = key.as_bytes();
    key.strip_suffix(INO_XATTR.as_bytes()).is_some_and(|ns| ns == b"trusted.overlay." || ns == b"user.overlay.")
}

#[cfg(test)]
pub(crate) mod tests;
