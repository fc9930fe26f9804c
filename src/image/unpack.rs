//! Unpacking one layer tar into a layer dir, in the upper-dir format Strata mounts
//! (SEMANTICS.md "OCI layers" and "What Strata writes into the upper dir").
//!
//! Every entry is created by hand, relative to the layer root fd, through `crate::sys`: parents
//! are opened with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`, the last name with `*at`
//! calls that never follow it. So no entry lands outside the layer: `..` components and absolute
//! names are refused, a symlink of the layer is never followed (a symlink where a directory is
//! needed is an error), and hardlinks may only point to earlier entries of the same layer.
//!
//! `.wh.NAME` and `.wh..wh..opq` markers are collected while reading and applied after the last
//! entry, so they never affect entries of their own layer whatever their order: a marker for a
//! name the layer also creates makes nothing (a file) or makes that directory opaque.
//! Directory modes and times are set last too, once nothing more is created inside.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{FileType, Mode, OFlags, Timespec, XattrFlags};
use tar::{EntryType, Header};

use crate::fs::layers::{OWNER_XATTR, OWNERS_MARK, XattrNs, remove_tree};
use crate::fs::whiteout;
use crate::fs::whiteout::{OPAQUE_MARKER, WH_PREFIX, is_private_xattr};
use crate::sys::fd::{self, SetTime};
use crate::sys::{Errno, xattr};

/// Why a layer could not be unpacked; each names the tar entry at fault.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream itself is broken (truncated, bad checksum, bad compression). The tar
    /// reader's messages quote entry names: control characters in them are escaped.
    #[error("reading the layer tar: {}", printable(&.0.to_string()))]
    Read(#[source] io::Error),
    /// An entry whose name or link is not allowed.
    #[error("entry {entry:?}: {reason}")]
    Refused {
        /// The entry's name as in the tar.
        entry: String,
        /// Why.
        reason: String,
    },
    /// A system call failed while creating an entry.
    #[error("entry {entry:?}: {op}: {errno}")]
    Sys {
        /// The entry's name as in the tar.
        entry: String,
        /// What was being done.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
}

type Result<T> = std::result::Result<T, UnpackError>;

/// How to unpack.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Not root of the initial user namespace: owners that cannot be set are recorded in
    /// [`OWNER_XATTR`], device nodes are skipped with a warning, overlay xattrs use the `user.`
    /// namespace.
    pub rootless: bool,
    /// The tar is a lazy layer's skeleton ([`super::estargz::skeleton_tar`]): a regular file
    /// with [`super::estargz::toc::LAZY_SIZE_PAX`] gets that size (a hole) and the
    /// [`LAZY_XATTR`] mark naming it, to be filled on first read. Ignored in any other tar.
    pub skeleton: bool,
}

pub use crate::fs::lazy::LAZY_XATTR;

impl Options {
    /// Options for the current process: rootless unless it is root of the initial user
    /// namespace (root of another one cannot set the ids it does not map, nor `trusted.*`).
    pub fn for_current_user() -> Options {
        Options { rootless: !super::owners::is_privileged(), skeleton: false }
    }

    fn ns(self) -> XattrNs {
        if self.rootless { XattrNs::User } else { XattrNs::Trusted }
    }
}

/// What unpacking measured.
#[derive(Debug, Default)]
pub struct Unpacked {
    /// Entries read from the tar.
    pub entries: u64,
    /// Bytes of regular-file content written.
    pub size: u64,
    /// Things skipped (device nodes rootless, private xattrs), one line each.
    pub warnings: Vec<String>,
}

/// The most file content written at once.
const WRITE_CHUNK: usize = 1 << 20;

/// Metadata of a directory entry, applied after everything inside it exists.
struct DirMeta {
    mode: u32,
    /// None for the layer root when the tar has no `./` entry: its time is left as it is.
    mtime: Option<Timespec>,
    entry: String,
}

/// Unpacks the tar read from `tar` into the directory `root` (an fd opened for reading).
pub fn unpack(tar: impl Read, root: BorrowedFd<'_>, opts: Options) -> Result<Unpacked> {
    unpack_to(tar, root, opts, &mut |_, _| {})
}

/// Like [`unpack`], handing each regular file to `written` with its size once it is complete
/// (to start its writeback, say); dropping it closes it.
pub fn unpack_to(
    tar: impl Read,
    root: BorrowedFd<'_>,
    opts: Options,
    written: &mut dyn FnMut(File, u64),
) -> Result<Unpacked> {
    let mut u = Unpacker {
        root,
        opts,
        whiteouts: Vec::new(),
        opaques: Vec::new(),
        dirs: BTreeMap::new(),
        out: Unpacked::default(),
        recorded: false,
        parent: None,
        buf: vec![0u8; WRITE_CHUNK],
        written,
    };
    u.dirs.insert(PathBuf::new(), DirMeta { mode: 0o755, mtime: None, entry: ".".into() });
    let mut archive = tar::Archive::new(tar);
    for entry in archive.entries().map_err(UnpackError::Read)? {
        let mut entry = entry.map_err(UnpackError::Read)?;
        u.out.entries += 1;
        u.entry(&mut entry)?;
    }
    u.finish()?;
    Ok(u.out)
}

struct Unpacker<'a, 'w> {
    root: BorrowedFd<'a>,
    opts: Options,
    /// `.wh.NAME` markers: (parent dir, NAME, entry name).
    whiteouts: Vec<(PathBuf, OsString, String)>,
    /// `.wh..wh..opq` markers: (dir, entry name).
    opaques: Vec<(PathBuf, String)>,
    dirs: BTreeMap<PathBuf, DirMeta>,
    out: Unpacked,
    /// Some owner was recorded in [`OWNER_XATTR`] instead of set.
    recorded: bool,
    /// The parent dir of the last entry (entries come dir by dir): valid until something is
    /// removed, which may be it or a dir above it.
    parent: Option<(PathBuf, Rc<OwnedFd>)>,
    /// File content passes through here: written in big pieces.
    buf: Vec<u8>,
    /// Takes each regular file once it is complete.
    written: &'w mut dyn FnMut(File, u64),
}

/// What an entry's name designates, once checked.
enum Target {
    /// The layer root (`./`).
    Root,
    /// A whiteout marker for `name` in `parent`.
    Whiteout(PathBuf, OsString),
    /// An opaque marker for `dir`.
    Opaque(PathBuf),
    /// An AUFS-internal `.wh..wh.*` entry, ignored.
    Ignored,
    /// An object `name` in `parent`.
    Object(PathBuf, OsString),
}

/// Splits a tar name into components: `.` and empty ones are dropped; absolute names and `..`
/// components are refused.
fn components(raw: &[u8]) -> std::result::Result<Vec<&OsStr>, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute name (entries must stay inside the layer)".into());
    }
    let mut out = Vec::new();
    for comp in raw.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => return Err("name has a '..' component".into()),
            c if c.contains(&0) => return Err("name contains a NUL byte".into()),
            c => out.push(OsStr::from_bytes(c)),
        }
    }
    Ok(out)
}

fn join(comps: &[&OsStr]) -> PathBuf {
    comps.iter().collect()
}

fn classify(raw: &[u8]) -> std::result::Result<Target, String> {
    let comps = components(raw)?;
    let Some((last, parents)) = comps.split_last() else {
        return Ok(Target::Root);
    };
    let parent = join(parents);
    let name = last.as_bytes();
    if !name.starts_with(WH_PREFIX) {
        return Ok(Target::Object(parent, last.to_os_string()));
    }
    if *last == OPAQUE_MARKER {
        return Ok(Target::Opaque(parent));
    }
    let target = &name[WH_PREFIX.len()..];
    if target.starts_with(WH_PREFIX) {
        return Ok(Target::Ignored);
    }
    if target.is_empty() || target == b"." || target == b".." {
        return Err(format!("invalid whiteout name {:?}", String::from_utf8_lossy(name)));
    }
    Ok(Target::Whiteout(parent, OsStr::from_bytes(target).to_os_string()))
}

impl Unpacker<'_, '_> {
    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<()> {
        let raw = e.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = e.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader) {
            return Ok(());
        }
        let target = classify(&raw).map_err(|reason| UnpackError::Refused { entry: shown.clone(), reason })?;
        match target {
            Target::Ignored => Ok(()),
            Target::Whiteout(parent, name) => {
                self.whiteouts.push((parent, name, shown));
                Ok(())
            }
            Target::Opaque(dir) => {
                self.opaques.push((dir, shown));
                Ok(())
            }
            Target::Root if kind.is_dir() => {
                self.chown(self.root, None, e.header(), &shown)?;
                self.apply_xattrs(e, self.root, None, &shown)?;
                self.dirs.insert(PathBuf::new(), dir_meta(e, shown)?);
                Ok(())
            }
            Target::Root => {
                Err(UnpackError::Refused { entry: shown, reason: "the layer root must be a directory".into() })
            }
            Target::Object(parent, name) => self.object(e, &parent, &name, &shown),
        }
    }

    fn object<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, parent: &Path, name: &OsStr, shown: &str) -> Result<()> {
        let dir = self.open_parent(parent, shown)?;
        let dir = dir.as_fd();
        match e.header().entry_type() {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => self.regular(e, dir, name, shown)?,
            EntryType::Directory => {
                match fd::mkdir_at(dir, name, 0o700) {
                    // An earlier directory of that name is kept; anything else makes room.
                    Err(Errno::EXIST) if self.make_room(dir, name, true, shown)? => {}
                    Err(Errno::EXIST) => fd::mkdir_at(dir, name, 0o700).map_err(sys(shown, "mkdir"))?,
                    r => r.map_err(sys(shown, "mkdir"))?,
                }
                self.chown(dir, Some(name), e.header(), shown)?;
                self.apply_xattrs(e, dir, Some(name), shown)?;
                self.dirs.insert(parent.join(name), dir_meta(e, shown.to_string())?);
            }
            EntryType::Symlink => {
                let target = e.link_name_bytes().ok_or_else(|| refused(shown, "symlink without a target"))?;
                self.create(dir, name, shown, "symlink", || fd::symlink_at(OsStr::from_bytes(&target), dir, name))?;
                self.chown(dir, Some(name), e.header(), shown)?;
                let mtime = SetTime::At(mtime_of(e)?);
                fd::utimes_at(dir, Some(name), mtime, mtime).map_err(sys(shown, "setting times"))?;
            }
            EntryType::Link => self.hardlink(e, dir, name, shown)?,
            EntryType::Char | EntryType::Block | EntryType::Fifo => self.special(e, dir, name, shown)?,
            other => self.out.warnings.push(format!("entry {shown:?}: entry type {other:?} skipped")),
        }
        Ok(())
    }

    /// Runs `make` (which creates `name` in `dir`); if the name is taken, clears it for the new
    /// entry and runs `make` again.
    fn create<T>(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
        op: &'static str,
        mut make: impl FnMut() -> crate::sys::Result<T>,
    ) -> Result<T> {
        match make() {
            Err(Errno::EXIST) => {
                self.make_room(dir, name, false, shown)?;
                make().map_err(sys(shown, op))
            }
            r => r.map_err(sys(shown, op)),
        }
    }

    /// Opens (creating missing ones with mode 0755) the directory `path` of the layer; a symlink
    /// or a non-directory on the way is an error, never followed.
    fn open_parent(&mut self, path: &Path, shown: &str) -> Result<Rc<OwnedFd>> {
        match &self.parent {
            Some((p, d)) if p == path => Ok(d.clone()),
            _ => {
                let d = Rc::new(self.find_parent(path, shown)?);
                self.parent = Some((path.to_path_buf(), d.clone()));
                Ok(d)
            }
        }
    }

    fn find_parent(&mut self, path: &Path, shown: &str) -> Result<OwnedFd> {
        match fd::open_dir(self.root, path) {
            Ok(d) => return Ok(d),
            Err(Errno::NOENT) | Err(Errno::LOOP) | Err(Errno::NOTDIR) | Err(Errno::XDEV) => {}
            Err(errno) => return Err(UnpackError::Sys { entry: shown.into(), op: "opening the parent dir", errno }),
        }
        let mut cur = fd::dup(self.root).map_err(|errno| UnpackError::Sys { entry: shown.into(), op: "dup", errno })?;
        let mut walked = PathBuf::new();
        for comp in path.iter() {
            walked.push(comp);
            let flags = OFlags::PATH | OFlags::DIRECTORY;
            let next = match fd::open_at(cur.as_fd(), comp, flags, Mode::empty()) {
                Err(Errno::NOENT) => fd::mkdir_at(cur.as_fd(), comp, 0o755)
                    .and_then(|()| fd::chmod_at(cur.as_fd(), comp, 0o755))
                    .and_then(|()| fd::open_at(cur.as_fd(), comp, flags, Mode::empty()))
                    .map_err(|errno| UnpackError::Sys { entry: shown.into(), op: "creating a parent dir", errno })?,
                Ok(d) => d,
                Err(_) => return Err(self.explain_path(&walked, "parent", shown)),
            };
            cur = next;
        }
        Ok(cur)
    }

    /// Says why the directory `path` of the layer cannot be opened: the first component that
    /// is missing, a symlink or not a directory.
    fn explain_path(&self, path: &Path, what: &str, shown: &str) -> UnpackError {
        let mut walked = PathBuf::new();
        for comp in path.iter() {
            let why = match fd::open_dir(self.root, &walked).and_then(|d| fd::stat_at(d.as_fd(), comp)) {
                Err(Errno::NOENT) => "is not an earlier entry of this layer",
                Ok(st) if fd::kind_of(&st) == FileType::Symlink => {
                    "is a symlink (symlinks of a layer are never followed)"
                }
                Ok(st) if fd::kind_of(&st) != FileType::Directory => "is not a directory",
                Ok(_) => {
                    walked.push(comp);
                    continue;
                }
                Err(e) => return refused(shown, &format!("{what}: {:?}: {e}", walked.join(comp))),
            };
            return refused(shown, &format!("{what}: {:?} {why}", walked.join(comp)));
        }
        refused(shown, &format!("{what}: {path:?} cannot be opened"))
    }

    /// Clears the taken `name` for a new entry; `Ok(true)` when an existing directory is kept for
    /// a directory.
    fn make_room(&mut self, dir: BorrowedFd<'_>, name: &OsStr, is_dir: bool, shown: &str) -> Result<bool> {
        let op = "replacing the existing entry";
        match fd::try_stat_at(dir, name).map_err(sys(shown, op))? {
            Some(st) if is_dir && fd::kind_of(&st) == FileType::Directory => Ok(true),
            _ => {
                // What goes may be the cached parent dir or one above it.
                self.parent = None;
                remove_tree(dir, name).map_err(sys(shown, op))?;
                Ok(false)
            }
        }
    }

    fn regular<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
    ) -> Result<()> {
        let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL;
        let file =
            self.create(dir, name, shown, "create", || fd::open_at(dir, name, flags, Mode::from_raw_mode(0o600)))?;
        let mut file = File::from(file);
        let size = copy_content(e, &mut file, &mut self.buf).map_err(|e| match e {
            CopyError::Read(e) => UnpackError::Read(e),
            CopyError::Write(e) => UnpackError::Sys {
                entry: shown.into(),
                op: "write",
                errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
            },
        })?;
        // A new file mostly has its owner already (root unpacking root's files): an fstat is
        // cheaper than a chown, which dirties the inode.
        let st = fd::stat_fd(file.as_fd()).map_err(sys(shown, "stat"))?;
        let h = e.header();
        if (u64::from(st.st_uid), u64::from(st.st_gid)) != (h.uid().unwrap_or(u64::MAX), h.gid().unwrap_or(u64::MAX)) {
            self.chown(file.as_fd(), None, h, shown)?;
        }
        fd::chmod_fd(file.as_fd(), mode_of(e.header(), shown)?).map_err(sys(shown, "chmod"))?;
        self.apply_xattrs(e, file.as_fd(), None, shown)?;
        if self.opts.skeleton {
            self.lazy(e, &file, shown)?;
        }
        let mtime = SetTime::At(mtime_of(e)?);
        fd::utimes_at(file.as_fd(), None, mtime, mtime).map_err(sys(shown, "setting times"))?;
        self.out.size += size;
        (self.written)(file, size);
        Ok(())
    }

    fn hardlink<R: Read>(
        &mut self,
        e: &tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
    ) -> Result<()> {
        let raw = e.link_name_bytes().ok_or_else(|| refused(shown, "hardlink without a target"))?;
        let comps = components(&raw).map_err(|r| refused(shown, &format!("hardlink target: {r}")))?;
        let Some((tname, tparent)) = comps.split_last() else {
            return Err(refused(shown, "hardlink to the layer root"));
        };
        let shown_target = format!("hardlink target {:?}", String::from_utf8_lossy(&raw));
        let tparent = join(tparent);
        let tdir = fd::open_dir(self.root, &tparent).map_err(|_| self.explain_path(&tparent, &shown_target, shown))?;
        let is_dir = || {
            fd::try_stat_at(tdir.as_fd(), tname)
                .is_ok_and(|st| st.is_some_and(|st| fd::kind_of(&st) == FileType::Directory))
        };
        let linked = match fd::link_at(tdir.as_fd(), tname, dir, name) {
            Err(Errno::EXIST) => {
                self.make_room(dir, name, false, shown)?;
                fd::link_at(tdir.as_fd(), tname, dir, name)
            }
            r => r,
        };
        linked.map_err(|errno| match errno {
            Errno::NOENT => refused(
                shown,
                &format!("hardlink target {:?} is not an earlier entry of this layer", String::from_utf8_lossy(&raw)),
            ),
            Errno::PERM if is_dir() => {
                refused(shown, &format!("hardlink target {:?} is a directory", String::from_utf8_lossy(&raw)))
            }
            errno => UnpackError::Sys { entry: shown.into(), op: "link", errno },
        })
    }

    fn special<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        shown: &str,
    ) -> Result<()> {
        let h = e.header();
        let (kind, rdev) = match h.entry_type() {
            EntryType::Fifo => (libc::S_IFIFO, 0),
            t => {
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                let kind = if t == EntryType::Char { libc::S_IFCHR } else { libc::S_IFBLK };
                (kind, rustix::fs::makedev(major, minor))
            }
        };
        let mode = mode_of(h, shown)?;
        let made = match fd::mknod_at(dir, name, kind | mode, rdev) {
            Err(Errno::EXIST) => {
                self.make_room(dir, name, false, shown)?;
                fd::mknod_at(dir, name, kind | mode, rdev)
            }
            r => r,
        };
        match made {
            Err(Errno::PERM) if self.opts.rootless && kind != libc::S_IFIFO => {
                self.out.warnings.push(format!("entry {shown:?}: device node skipped (creating devices needs root)"));
                return Ok(());
            }
            r => r.map_err(|errno| UnpackError::Sys { entry: shown.into(), op: "mknod", errno })?,
        }
        self.chown(dir, Some(name), h, shown)?;
        fd::chmod_at(dir, name, mode).map_err(|errno| UnpackError::Sys { entry: shown.into(), op: "chmod", errno })?;
        let mtime = SetTime::At(mtime_of(e)?);
        fd::utimes_at(dir, Some(name), mtime, mtime).map_err(|errno| UnpackError::Sys {
            entry: shown.into(),
            op: "setting times",
            errno,
        })
    }

    /// Sets the owner of `name` in `dir` (or of `dir` itself); rootless, an owner that cannot be
    /// set is kept in [`OWNER_XATTR`] instead.
    fn chown(&mut self, dir: BorrowedFd<'_>, name: Option<&OsStr>, h: &Header, shown: &str) -> Result<()> {
        let old = h.as_old();
        let uid = blank_is_zero(h.uid(), &old.uid).map_err(UnpackError::Read)? as u32;
        let gid = blank_is_zero(h.gid(), &old.gid).map_err(UnpackError::Read)? as u32;
        let r = match name {
            Some(n) => fd::chown_at(dir, n, Some(uid), Some(gid)),
            None => fd::chown_fd(dir, Some(uid), Some(gid)),
        };
        match r {
            Ok(()) => Ok(()),
            Err(Errno::PERM) | Err(Errno::INVAL) if self.opts.rootless => {
                let value = format!("{uid}:{gid}");
                match xattr::set(dir, name, xattr::key(OWNER_XATTR), value.as_bytes(), XattrFlags::empty()) {
                    // Only files and directories can carry user.* xattrs: the owner of a
                    // symlink, FIFO or device node is lost (it is rarely meaningful).
                    Err(_) if !(h.entry_type().is_file() || h.entry_type().is_dir()) => {}
                    Err(errno) => self.out.warnings.push(format!("entry {shown:?}: owner {value} not kept: {errno}")),
                    Ok(()) => self.recorded = true,
                }
                Ok(())
            }
            Err(errno) => Err(UnpackError::Sys { entry: shown.into(), op: "chown", errno }),
        }
    }

    /// Applies `SCHILY.xattr.*` PAX records; overlay/Strata-private ones are refused (they would
    /// change what the layer hides), as are ones the filesystem or the user cannot set.
    fn apply_xattrs<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        dir: BorrowedFd<'_>,
        name: Option<&OsStr>,
        shown: &str,
    ) -> Result<()> {
        let Some(pax) = e.pax_extensions().map_err(UnpackError::Read)? else {
            return Ok(());
        };
        let mut attrs = Vec::new();
        for ext in pax {
            let ext = ext.map_err(UnpackError::Read)?;
            if let Some(key) = ext.key_bytes().strip_prefix(b"SCHILY.xattr.") {
                attrs.push((OsStr::from_bytes(key).to_os_string(), ext.value_bytes().to_vec()));
            }
        }
        for (key, value) in attrs {
            if is_private_xattr(&key) {
                self.out.warnings.push(format!("entry {shown:?}: xattr {key:?} refused (private to overlays)"));
                continue;
            }
            match xattr::set(dir, name, &key, &value, XattrFlags::empty()) {
                Ok(()) => {}
                Err(Errno::PERM) | Err(Errno::OPNOTSUPP) | Err(Errno::ACCESS) => {
                    self.out.warnings.push(format!("entry {shown:?}: xattr {key:?} could not be set"))
                }
                Err(errno) => return Err(UnpackError::Sys { entry: shown.into(), op: "setxattr", errno }),
            }
        }
        Ok(())
    }

    /// A skeleton's file still to be fetched: its size as a hole, and the mark with its name.
    fn lazy<R: Read>(&mut self, e: &mut tar::Entry<'_, R>, file: &File, shown: &str) -> Result<()> {
        let Some(pax) = e.pax_extensions().map_err(UnpackError::Read)? else {
            return Ok(());
        };
        let mut size = None;
        for ext in pax {
            let ext = ext.map_err(UnpackError::Read)?;
            if ext.key_bytes() == super::estargz::toc::LAZY_SIZE_PAX.as_bytes() {
                size = std::str::from_utf8(ext.value_bytes()).ok().and_then(|v| v.parse::<u64>().ok());
            }
        }
        let Some(size) = size else {
            return Ok(());
        };
        file.set_len(size).map_err(|e| UnpackError::Sys {
            entry: shown.into(),
            op: "truncate",
            errno: Errno::from_io_error(&e).unwrap_or(Errno::IO),
        })?;
        let name = e.path_bytes().into_owned();
        xattr::set(file.as_fd(), None, OsStr::new(LAZY_XATTR), &name, XattrFlags::empty())
            .map_err(sys(shown, "marking lazy"))?;
        Ok(())
    }

    /// Applies the markers, then directory modes and times.
    fn finish(&mut self) -> Result<()> {
        for (parent, name, shown) in std::mem::take(&mut self.whiteouts) {
            self.whiteout(&parent, &name, &shown)?;
        }
        for (dir, shown) in std::mem::take(&mut self.opaques) {
            let d = self.open_parent(&dir, &shown)?;
            self.set_opaque(d.as_fd(), &shown)?;
        }
        for (path, meta) in std::mem::take(&mut self.dirs) {
            let d = match fd::open_beneath(self.root, &path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty()) {
                Ok(d) => d,
                // A later entry of the layer replaced the directory (or one above it).
                Err(Errno::NOTDIR) | Err(Errno::NOENT) | Err(Errno::LOOP) => continue,
                Err(errno) => return Err(UnpackError::Sys { entry: meta.entry, op: "reopening the dir", errno }),
            };
            fd::chmod_fd(d.as_fd(), meta.mode).map_err(sys(&meta.entry, "chmod"))?;
            if self.recorded && path.as_os_str().is_empty() {
                xattr::set(d.as_fd(), None, xattr::key(OWNERS_MARK), b"y", XattrFlags::empty())
                    .map_err(sys(&meta.entry, "marking recorded owners"))?;
            }
            if let Some(t) = meta.mtime {
                fd::utimes_at(d.as_fd(), None, SetTime::At(t), SetTime::At(t))
                    .map_err(sys(&meta.entry, "setting times"))?;
            }
        }
        Ok(())
    }

    /// `.wh.NAME`: a whiteout device, unless this layer has NAME itself (a directory of this
    /// layer then becomes opaque, so what lay below stays hidden).
    fn whiteout(&mut self, parent: &Path, name: &OsStr, shown: &str) -> Result<()> {
        let dir = self.open_parent(parent, shown)?;
        match fd::try_stat_at(dir.as_fd(), name).map_err(sys(shown, "stat"))? {
            Some(st) if fd::kind_of(&st) == FileType::Directory => {
                let sub = fd::open_at(dir.as_fd(), name, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
                    .map_err(sys(shown, "open"))?;
                self.set_opaque(sub.as_fd(), shown)
            }
            Some(_) => Ok(()),
            None => match fd::mkwhiteout_at(dir.as_fd(), name) {
                Ok(()) => Ok(()),
                Err(Errno::PERM) if self.opts.rootless => {
                    whiteout::create_wh_file(dir.as_fd(), name).map_err(sys(shown, "creating a .wh. whiteout file"))
                }
                Err(errno) => Err(UnpackError::Sys { entry: shown.into(), op: "creating the whiteout", errno }),
            },
        }
    }

    fn set_opaque(&self, dir: BorrowedFd<'_>, shown: &str) -> Result<()> {
        match whiteout::set_opaque_xattr(dir, self.opts.ns()) {
            Ok(()) => Ok(()),
            Err(Errno::OPNOTSUPP) | Err(Errno::PERM) if self.opts.rootless => whiteout::create_opaque_file(dir)
                .map_err(|errno| UnpackError::Sys { entry: shown.into(), op: "creating the opaque marker", errno }),
            Err(errno) => Err(UnpackError::Sys { entry: shown.into(), op: "setting the opaque xattr", errno }),
        }
    }
}

/// Which side of a copy failed.
enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

/// Copies `from` to `to` through `buf`, filling it before each write (the tar reader hands out
/// less at a time); returns the bytes copied.
fn copy_content(from: &mut impl Read, to: &mut File, buf: &mut [u8]) -> std::result::Result<u64, CopyError> {
    use std::io::Write;
    let mut total = 0;
    loop {
        let mut len = 0;
        while len < buf.len() {
            match from.read(&mut buf[len..]) {
                Ok(0) => break,
                Ok(n) => len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(CopyError::Read(e)),
            }
        }
        if len == 0 {
            return Ok(total);
        }
        to.write_all(&buf[..len]).map_err(CopyError::Write)?;
        total += len as u64;
    }
}

/// Maps an errno to the error naming `entry` and what was being done.
fn sys<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(Errno) -> UnpackError + 'a {
    move |errno| UnpackError::Sys { entry: entry.into(), op, errno }
}

/// `s` with control characters escaped (`\n`, `\u{1b}`): an error is one line on a terminal.
fn printable(s: &str) -> String {
    s.chars().map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() }).collect()
}

fn refused(entry: &str, reason: &str) -> UnpackError {
    UnpackError::Refused { entry: entry.into(), reason: reason.into() }
}

fn mode_of(h: &Header, shown: &str) -> Result<u32> {
    h.mode().map(|m| m & 0o7777).map_err(|e| refused(shown, &format!("bad mode: {e}")))
}

fn dir_meta<R: Read>(e: &mut tar::Entry<'_, R>, entry: String) -> Result<DirMeta> {
    Ok(DirMeta { mode: mode_of(e.header(), &entry)?, mtime: Some(mtime_of(e)?), entry })
}

/// The entry's mtime: the PAX `mtime` record (with its fraction) when there is one, else the header's.
fn mtime_of<R: Read>(e: &mut tar::Entry<'_, R>) -> Result<Timespec> {
    if let Some(pax) = e.pax_extensions().map_err(UnpackError::Read)? {
        for ext in pax.flatten() {
            if ext.key_bytes() == b"mtime"
                && let Some(t) = ext.value().ok().and_then(parse_pax_time)
            {
                return Ok(t);
            }
        }
    }
    let secs = e.header().mtime().map_err(UnpackError::Read)?;
    Ok(Timespec { tv_sec: secs as i64, tv_nsec: 0 })
}

fn parse_pax_time(s: &str) -> Option<Timespec> {
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse().ok()? };
    Some(Timespec { tv_sec, tv_nsec })
}

/// A numeric header field read as `value`; a field left blank (all NULs or spaces, as some
/// writers leave uid and gid) is 0, as GNU tar, Go's `archive/tar` (docker, buildah) read it.
fn blank_is_zero(value: std::io::Result<u64>, raw: &[u8]) -> std::io::Result<u64> {
    match value {
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Ok(0),
        v => v,
    }
}

#[cfg(test)]
mod tests;
