//! Creating names (SEMANTICS.md "Namespace operations"): create, mkdir, mknod, symlink, link.
//!
//! New objects go straight into the upper dir, or, over a whiteout, are built in the work dir and
//! swapped in by one rename, so the name never shows a half-made object. A new directory over a
//! whiteout is made opaque (what was below must stay hidden). Owners are the caller's.

use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags, RenameFlags, Stat};

use super::acl;
use super::inode::{DirLayer, Node, Src};
use super::layers;
use super::whiteout;
use super::{Ctx, Errno, Overlay, Result};
use crate::sys::fd;

/// What to create.
#[derive(Debug)]
pub enum NewObject<'a> {
    /// A regular file, opened with these flags.
    File { mode: u32, flags: i32 },
    /// A directory.
    Dir { mode: u32 },
    /// A FIFO, socket, device node or empty regular file (type in `mode`).
    Node { mode: u32, rdev: u64 },
    /// A symlink to `target` (stored verbatim).
    Symlink { target: &'a OsStr },
}

impl NewObject<'_> {
    /// The same object with `umask` taken from its permission bits.
    fn masked(self, umask: u32) -> Self {
        let keep = !(umask & 0o777);
        match self {
            NewObject::File { mode, flags } => NewObject::File { mode: mode & keep, flags },
            NewObject::Dir { mode } => NewObject::Dir { mode: mode & keep },
            NewObject::Node { mode, rdev } => NewObject::Node { mode: mode & keep, rdev },
            s @ NewObject::Symlink { .. } => s,
        }
    }
}

/// The result of a create: the node, its stat and, for `NewObject::File`, the open file.
pub struct Created {
    /// The new object's node (one lookup counted).
    pub node: Arc<Node>,
    /// Its stat.
    pub st: Stat,
    /// The open file, for `create`.
    pub file: Option<File>,
}

/// Who a new object belongs to, and what its parent's default ACL gives it.
struct Birth<'a> {
    uid: u32,
    gid: u32,
    /// The parent's default ACL, if it has one (then the umask does not apply).
    acl: Option<&'a [u8]>,
    /// Made straight in its parent (whose filesystem applies the ACL), not in the work dir.
    in_place: bool,
    /// The filesystem gives it `uid`:`gid` by itself (made in place by a caller with the daemon's
    /// own ids): no chown.
    owned: bool,
}

/// What [`Overlay::make`] made: its type and, for a regular file, the open file.
type Made = Result<(FileType, Option<File>)>;

/// Where a name stands in the upper instance of its parent before it is created.
struct Slot {
    /// The upper instance of the parent directory.
    parent: Arc<OwnedFd>,
    /// The upper dir has a whiteout object (device or xattr form) at the name.
    whiteout: bool,
    /// The upper dir has a `.wh.NAME` file.
    wh_file: bool,
}

impl Overlay {
    /// Creates `name` in directory `parent`.
    pub fn create(&self, ctx: &Ctx, parent: u64, name: &OsStr, what: NewObject<'_>) -> Result<Created> {
        let _tree = self.change_tree();
        if whiteout::is_wh_name(name) {
            return Err(Errno::INVAL);
        }
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        // A directory only in the upper dir needs no look first: making the object there
        // fails with EEXIST over anything at the name, which is looked at then.
        let upper_only = matches!(&layers[..], [dl] if self.stack.is_upper(dl.idx));
        if !upper_only && self.find_child(&ppath, &layers, name)?.is_some() {
            return Err(Errno::EXIST);
        }
        if let NewObject::Node { mode, rdev: 0 } = what
            && mode & libc::S_IFMT == libc::S_IFCHR
        {
            // A character device 0/0 is a whiteout: the kernel refuses to make one in the view.
            return Err(Errno::PERM);
        }
        self.copy_up(&pnode, true)?;
        let dir = self.ensure_upper_dir(&ppath)?;
        let pst = fd::stat_fd(dir.as_fd())?;
        let (uid, gid) = owner_for(ctx, &pst);
        // A directory Strata made itself is known to have no default ACL until one is set.
        let known_none = pnode.state.lock().no_default_acl;
        let default_acl = if known_none { None } else { acl::default_of(dir.as_fd()) };
        let what = what.masked(if default_acl.is_some() { 0 } else { ctx.umask });
        // The object gets the daemon's ids by itself (a set-gid parent's group, as `owner_for`).
        let owned =
            (uid, gid) == (self.own_ids.0, if pst.st_mode & libc::S_ISGID != 0 { pst.st_gid } else { self.own_ids.1 });
        let birth = Birth { uid, gid, acl: default_acl.as_deref(), in_place: true, owned };
        let wh_file = self.upper_may_hold_wh(&ppath, dir.as_fd())? && whiteout::has_wh_file(dir.as_fd(), name)?;
        // Usually nothing is at the name in the upper dir: make the object there at once. Making
        // it fails with EEXIST (and leaves nothing) over a whiteout, which is then looked at.
        let first = if wh_file { Err(Errno::EXIST) } else { self.make(dir.as_fd(), name, &what, &birth, &pst, false) };
        let (kind, file, opaque) = match first {
            Ok((kind, file)) => (kind, file, false),
            Err(Errno::EXIST) => {
                let whiteout = self.upper_whiteout_at(&layers, dir.as_fd(), name)?;
                if !whiteout && !wh_file {
                    return Err(Errno::EXIST);
                }
                let slot = Slot { parent: dir.clone(), whiteout, wh_file };
                let (kind, file) = if whiteout {
                    let birth = Birth { in_place: false, owned: false, ..birth };
                    self.create_over_whiteout(&slot, name, &what, &birth, &pst)?
                } else {
                    self.make(dir.as_fd(), name, &what, &birth, &pst, true)?
                };
                (kind, file, true)
            }
            Err(e) => return Err(e),
        };
        if wh_file {
            whiteout::remove_wh_file(dir.as_fd(), name)?;
        }
        if opaque && kind == FileType::Directory {
            self.trace(format_args!("opaque    /{}  (a new directory over a whiteout)", ppath.join(name).display()));
        }
        let st = match &file {
            Some(f) => fd::stat_fd(f.as_fd())?,
            None => fd::stat_at(dir.as_fd(), name)?,
        };
        let ino = self.stack.compose_ino(0, st.st_ino);
        let src = Src::upper(kind, &ppath.join(name));
        let node = self.inodes.remember(ino, kind, parent, name, src);
        {
            let mut known = node.state.lock();
            known.no_capability = true;
            known.no_default_acl = kind == FileType::Directory && default_acl.is_none();
        }
        Ok(Created { node, st, file })
    }

    /// Copies up the parent (at `path`) and reports what the upper dir has at `name`.
    fn slot(&self, parent: &Arc<Node>, layers: &[DirLayer], path: &Path, name: &OsStr) -> Result<Slot> {
        self.copy_up(parent, true)?;
        let dir = self.ensure_upper_dir(path)?;
        let whiteout = self.upper_whiteout_at(layers, dir.as_fd(), name)?;
        let wh_file = self.upper_may_hold_wh(path, dir.as_fd())? && whiteout::has_wh_file(dir.as_fd(), name)?;
        Ok(Slot { parent: dir, whiteout, wh_file })
    }

    /// Whether the upper instance `dir` of a directory (whose layers are `layers`) has a
    /// whiteout object (device or xattr form) at `name`.
    fn upper_whiteout_at(&self, layers: &[DirLayer], dir: BorrowedFd<'_>, name: &OsStr) -> Result<bool> {
        let xwh = layers.first().filter(|d| self.stack.is_upper(d.idx)).is_some_and(|d| d.xwh);
        Ok(match fd::try_stat_at(dir, name)? {
            Some(st) => whiteout::is_whiteout(dir, name, &st, xwh),
            None => false,
        })
    }

    /// Whether the upper instance `dir` of the directory at `path` may hold `.wh.` files.
    fn upper_may_hold_wh(&self, path: &Path, dir: BorrowedFd<'_>) -> Result<bool> {
        match self.stack.upper {
            Some(_) => self.may_hold_wh(0, path, dir),
            None => Ok(false),
        }
    }

    /// Builds the object in the work dir and swaps it with the whiteout at `name`.
    fn create_over_whiteout(
        &self,
        slot: &Slot,
        name: &OsStr,
        what: &NewObject<'_>,
        birth: &Birth<'_>,
        pst: &Stat,
    ) -> Result<(FileType, Option<File>)> {
        let work = self.stack.upper()?.work.as_fd();
        let tmp = self.tmp_name();
        let made = self.make(work, &tmp, what, birth, pst, true);
        let swapped = made.and_then(|r| {
            fd::rename_at(work, &tmp, slot.parent.as_fd(), name, RenameFlags::EXCHANGE)?;
            Ok(r)
        });
        // After the exchange, `tmp` names the old whiteout; before it, the half-made object.
        let _ = layers::remove_tree(work, &tmp);
        self.upper_dirs_changed();
        swapped
    }

    /// Creates the object `name` in `dir` with its owner and mode; a directory may be made opaque.
    /// Nothing is left behind if a step fails.
    fn make(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        what: &NewObject<'_>,
        birth: &Birth<'_>,
        pst: &Stat,
        opaque: bool,
    ) -> Made {
        match *what {
            NewObject::File { mode, flags } => self.make_file(dir, name, mode, flags, birth),
            NewObject::Dir { mode } => self.make_dir(dir, name, mode, birth, pst, opaque),
            NewObject::Node { mode, rdev } => self.make_node(dir, name, mode, rdev, birth),
            NewObject::Symlink { target } => {
                fd::symlink_at(target, dir, name)?;
                if !birth.owned {
                    undo_on_error(dir, name, self.give_owner(dir, name, birth.uid, birth.gid))?;
                }
                Ok((FileType::Symlink, None))
            }
        }
    }

    fn make_file(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32, flags: i32, birth: &Birth<'_>) -> Made {
        let acc = OFlags::from_bits_retain((flags & libc::O_ACCMODE) as u32);
        let file = fd::open_at(dir, name, OFlags::CREATE | OFlags::EXCL | acc, Mode::from_raw_mode(mode & 0o7777))?;
        undo_on_error(dir, name, self.own_new(dir, name, birth, mode, false))?;
        Ok((FileType::RegularFile, Some(File::from(file))))
    }

    /// A directory inherits the set-gid bit of its parent, as on any Linux filesystem.
    fn make_dir(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32, b: &Birth<'_>, pst: &Stat, opaque: bool) -> Made {
        let mode = (mode & 0o7777) | (pst.st_mode & libc::S_ISGID);
        fd::mkdir_at(dir, name, mode)?;
        let finished = self.own_new(dir, name, b, mode, true).and_then(|()| {
            if opaque {
                let sub = fd::open_dir(dir, Path::new(name))?;
                whiteout::set_opaque(self.stack.upper()?, sub.as_fd())?;
            }
            Ok(())
        });
        undo_on_error(dir, name, finished)?;
        Ok((FileType::Directory, None))
    }

    /// A FIFO, socket or device node; `mknod` of a regular file (or of type 0) makes an empty file.
    fn make_node(&self, dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64, birth: &Birth<'_>) -> Made {
        let kind = if mode & libc::S_IFMT == 0 { FileType::RegularFile } else { FileType::from_raw_mode(mode) };
        if kind == FileType::RegularFile {
            let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY;
            drop(fd::open_at(dir, name, flags, Mode::from_raw_mode(mode & 0o7777))?);
        } else {
            fd::mknod_at(dir, name, mode, rdev)?;
        }
        undo_on_error(dir, name, self.own_new(dir, name, birth, mode, false))?;
        Ok((kind, None))
    }

    /// Gives a new object its caller's owner and exactly the mode asked for: set-id bits are
    /// applied after the chown (which clears them), and bits the daemon's own umask took are put
    /// back. Under a default ACL the mode is the ACL's, applied here for objects built in the
    /// work dir.
    fn own_new(&self, dir: BorrowedFd<'_>, name: &OsStr, b: &Birth<'_>, mode: u32, is_dir: bool) -> Result<()> {
        if !b.owned {
            self.give_owner(dir, name, b.uid, b.gid)?;
        }
        let setid = mode & (libc::S_ISUID | libc::S_ISGID);
        match b.acl {
            Some(default) if !b.in_place => acl::apply(dir, name, default, mode, is_dir),
            Some(_) if setid != 0 => {
                let now = fd::stat_at(dir, name)?.st_mode & 0o1777;
                fd::chmod_at(dir, name, now | setid)
            }
            Some(_) => Ok(()),
            None if setid != 0 || mode & self.own_umask & 0o777 != 0 => fd::chmod_at(dir, name, mode),
            None => Ok(()),
        }
    }

    /// Adds the name `newname` in `newparent` for the object `ino` (a hardlink).
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> Result<(Arc<Node>, Stat)> {
        let _tree = self.change_tree();
        if whiteout::is_wh_name(newname) {
            return Err(Errno::INVAL);
        }
        let node = self.inodes.get(ino)?;
        if node.is_dir() {
            return Err(Errno::PERM);
        }
        let (pnode, layers, ppath) = self.dir_node(newparent)?;
        if self.find_child(&ppath, &layers, newname)?.is_some() {
            return Err(Errno::EXIST);
        }
        self.copy_up(&node, true)?;
        let from = self.locate(&node)?;
        let from_name = from.name().ok_or(Errno::INVAL)?;
        let slot = self.slot(&pnode, &layers, &ppath, newname)?;
        if slot.whiteout {
            let work = self.stack.upper()?.work.as_fd();
            let tmp = self.tmp_name();
            fd::link_at(from.dir(), from_name, work, &tmp)?;
            let r = fd::rename_at(work, &tmp, slot.parent.as_fd(), newname, RenameFlags::empty());
            if r.is_err() {
                let _ = fd::unlink_at(work, &tmp);
            }
            r?;
        } else {
            fd::link_at(from.dir(), from_name, slot.parent.as_fd(), newname)?;
        }
        if slot.wh_file {
            whiteout::remove_wh_file(slot.parent.as_fd(), newname)?;
        }
        self.mark_impure(slot.parent.as_fd());
        let st = fd::stat_at(slot.parent.as_fd(), newname)?;
        let src = Src::upper(node.kind, &ppath.join(newname));
        let node = self.inodes.remember(node.ino, node.kind, newparent, newname, src);
        Ok((node, st))
    }
}

/// The owner of a new object: the caller, with the parent's group where the parent is set-gid.
fn owner_for(ctx: &Ctx, parent: &Stat) -> (u32, u32) {
    let gid = if parent.st_mode & libc::S_ISGID != 0 { parent.st_gid } else { ctx.gid };
    (ctx.uid, gid)
}

/// Removes the object just made as `name` when finishing it failed, and passes the error on.
fn undo_on_error(dir: BorrowedFd<'_>, name: &OsStr, r: Result<()>) -> Result<()> {
    if r.is_err() {
        let _ = layers::remove_tree(dir, name);
    }
    r
}
