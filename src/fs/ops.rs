//! Namespace operations (SEMANTICS.md "Namespace operations"): create, mkdir, mknod, symlink,
//! link, unlink, rmdir and rename, including directories that have lower parts.
//!
//! New objects go straight into the upper dir, or, over a whiteout, are built in the work dir and
//! swapped in by one rename, so the name never shows a half-made object. Removing a name that a
//! lower layer still shows leaves a whiteout; a new directory over a whiteout is made opaque.

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, Mode, OFlags, RenameFlags, Stat};

use super::inode::{self, DirLayer, Node, Src};
use super::layers::{self, WhiteoutMode};
use super::lookup::Found;
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

/// The result of a create: the node, its stat and, for `NewObject::File`, the open file.
pub struct Created {
    /// The new object's node (one lookup counted).
    pub node: Arc<Node>,
    /// Its stat.
    pub st: Stat,
    /// The open file, for `create`.
    pub file: Option<File>,
}

/// Where a name stands in the upper instance of its parent before it is created.
struct Slot {
    /// The upper instance of the parent directory.
    parent: OwnedFd,
    /// The upper dir has a whiteout object (device or xattr form) at the name.
    whiteout: bool,
    /// The upper dir has a `.wh.NAME` file.
    wh_file: bool,
}

impl Overlay {
    /// Creates `name` in directory `parent`.
    pub fn create(&self, ctx: &Ctx, parent: u64, name: &OsStr, what: NewObject<'_>) -> Result<Created> {
        let _tree = self.tree.write();
        if whiteout::is_wh_name(name) {
            return Err(Errno::INVAL);
        }
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        if self.find_child(&ppath, &layers, name)?.is_some() {
            return Err(Errno::EXIST);
        }
        let slot = self.slot(&pnode, &layers, name)?;
        let pst = fd::stat_fd(slot.parent.as_fd())?;
        let (uid, gid) = owner_for(ctx, &pst);
        let opaque = slot.whiteout || slot.wh_file;
        let (kind, file) = if slot.whiteout {
            self.create_over_whiteout(&slot, name, &what, uid, gid, &pst)?
        } else {
            self.make(slot.parent.as_fd(), name, &what, uid, gid, &pst, opaque)?
        };
        if slot.wh_file {
            fd::unlink_at(slot.parent.as_fd(), &whiteout::wh_name(name)).or_else(ignore_noent)?;
        }
        if opaque && kind == FileType::Directory {
            self.trace(format_args!("opaque    /{}  (a new directory over a whiteout)", ppath.join(name).display()));
        }
        let st = fd::stat_at(slot.parent.as_fd(), name)?;
        let ino = self.stack.compose_ino(0, st.st_ino);
        let src = Src::upper(kind, &ppath.join(name));
        let node = self.inodes.remember(ino, kind, parent, name, src);
        Ok(Created { node, st, file })
    }

    /// Copies up the parent and reports what the upper dir has at `name`.
    fn slot(&self, parent: &Arc<Node>, layers: &[DirLayer], name: &OsStr) -> Result<Slot> {
        self.copy_up(parent, true)?;
        let path = self.inodes.path_of(parent)?;
        let ufd = self.stack.upper_root()?;
        let dir = fd::open_dir(ufd, &path)?;
        let xwh = layers.first().filter(|d| self.stack.is_upper(d.idx)).map(|d| d.xwh).unwrap_or(false);
        let whiteout = match fd::try_stat_at(dir.as_fd(), name)? {
            Some(st) => whiteout::is_whiteout(dir.as_fd(), name, &st, xwh),
            None => false,
        };
        let wh_file = whiteout::has_wh_file(dir.as_fd(), name)?;
        Ok(Slot { parent: dir, whiteout, wh_file })
    }

    /// Builds the object in the work dir and swaps it with the whiteout at `name`.
    fn create_over_whiteout(
        &self,
        slot: &Slot,
        name: &OsStr,
        what: &NewObject<'_>,
        uid: u32,
        gid: u32,
        pst: &Stat,
    ) -> Result<(FileType, Option<File>)> {
        let work = self.stack.upper()?.work.as_fd();
        let tmp = self.tmp_name();
        let made = self.make(work, &tmp, what, uid, gid, pst, true);
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
    #[allow(clippy::too_many_arguments)]
    fn make(
        &self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        what: &NewObject<'_>,
        uid: u32,
        gid: u32,
        pst: &Stat,
        opaque: bool,
    ) -> Result<(FileType, Option<File>)> {
        let upper = self.stack.upper()?;
        match *what {
            NewObject::File { mode, flags } => {
                let acc = OFlags::from_bits_retain((flags & libc::O_ACCMODE) as u32);
                let fd =
                    fd::open_at(dir, name, OFlags::CREATE | OFlags::EXCL | acc, Mode::from_raw_mode(mode & 0o7777))?;
                let done = self.own_new(dir, name, uid, gid, mode);
                if let Err(e) = done {
                    let _ = fd::unlink_at(dir, name);
                    return Err(e);
                }
                Ok((FileType::RegularFile, Some(File::from(fd))))
            }
            NewObject::Dir { mode } => {
                let mut mode = mode & 0o7777;
                if pst.st_mode & libc::S_ISGID != 0 {
                    mode |= libc::S_ISGID;
                }
                fd::mkdir_at(dir, name, mode)?;
                let done = self.own_new(dir, name, uid, gid, mode).and_then(|()| {
                    if opaque {
                        let sub = fd::open_dir(dir, Path::new(name))?;
                        whiteout::set_opaque(upper, sub.as_fd())?;
                    }
                    Ok(())
                });
                if let Err(e) = done {
                    let _ = layers::remove_tree(dir, name);
                    return Err(e);
                }
                Ok((FileType::Directory, None))
            }
            NewObject::Node { mode, rdev } => {
                let kind = FileType::from_raw_mode(mode);
                if kind == FileType::RegularFile || mode & libc::S_IFMT == 0 {
                    let f = fd::open_at(
                        dir,
                        name,
                        OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY,
                        Mode::from_raw_mode(mode & 0o7777),
                    )?;
                    drop(f);
                } else {
                    fd::mknod_at(dir, name, mode, rdev)?;
                }
                if let Err(e) = self.own_new(dir, name, uid, gid, mode) {
                    let _ = fd::unlink_at(dir, name);
                    return Err(e);
                }
                Ok((if mode & libc::S_IFMT == 0 { FileType::RegularFile } else { kind }, None))
            }
            NewObject::Symlink { target } => {
                fd::symlink_at(target, dir, name)?;
                if let Err(e) = self.give_owner(dir, name, uid, gid) {
                    let _ = fd::unlink_at(dir, name);
                    return Err(e);
                }
                Ok((FileType::Symlink, None))
            }
        }
    }

    /// Gives a new object its caller's owner; set-id bits are applied after the chown (which clears them).
    fn own_new(&self, dir: BorrowedFd<'_>, name: &OsStr, uid: u32, gid: u32, mode: u32) -> Result<()> {
        self.give_owner(dir, name, uid, gid)?;
        if mode & (libc::S_ISUID | libc::S_ISGID) != 0 {
            fd::chmod_at(dir, name, mode)?;
        }
        Ok(())
    }

    /// Adds the name `newname` in `newparent` for the object `ino` (a hardlink).
    pub fn link(&self, ino: u64, newparent: u64, newname: &OsStr) -> Result<(Arc<Node>, Stat)> {
        let _tree = self.tree.write();
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
        let slot = self.slot(&pnode, &layers, newname)?;
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
            fd::unlink_at(slot.parent.as_fd(), &whiteout::wh_name(newname)).or_else(ignore_noent)?;
        }
        self.mark_impure(slot.parent.as_fd());
        let st = fd::stat_at(slot.parent.as_fd(), newname)?;
        let src = Src::upper(node.kind, &ppath.join(newname));
        let node = self.inodes.remember(node.ino, node.kind, newparent, newname, src);
        Ok((node, st))
    }

    /// Removes the non-directory `name` from `parent`.
    pub fn unlink(&self, parent: u64, name: &OsStr) -> Result<()> {
        let _tree = self.tree.write();
        let (_, layers, ppath) = self.dir_node(parent)?;
        let found = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
        if found.kind() == FileType::Directory {
            return Err(Errno::ISDIR);
        }
        // A lower file with other names is copied up (all its names) first, so that removing
        // one name leaves the others with the true link count (as the kernel does with index=on).
        if found.st.st_nlink > 1 && !self.in_upper(&found.src) {
            self.copy_up_moving(&ppath.join(name), &found)?;
        }
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        let found = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
        self.remove(&pnode, &layers, &ppath, name, &found)
    }

    /// Removes the empty directory `name` from `parent`.
    pub fn rmdir(&self, parent: u64, name: &OsStr) -> Result<()> {
        let _tree = self.tree.write();
        let r = self.rmdir_locked(parent, name);
        self.upper_dirs_changed();
        r
    }

    fn rmdir_locked(&self, parent: u64, name: &OsStr) -> Result<()> {
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        let found = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
        let Src::Dir(child_layers) = &found.src else {
            return Err(Errno::NOTDIR);
        };
        if !self.is_empty_dir(&ppath.join(name), child_layers)? {
            return Err(Errno::NOTEMPTY);
        }
        self.remove(&pnode, &layers, &ppath, name, &found)
    }

    /// Takes `name` out of the view: the upper entry goes, a whiteout stays if a lower layer shows it.
    fn remove(&self, pnode: &Arc<Node>, layers: &[DirLayer], ppath: &Path, name: &OsStr, found: &Found) -> Result<()> {
        let node = self.inodes.find(found.ino);
        if let Some(n) = &node {
            self.pin_if_last(n, pnode.ino, name);
        }
        let below = self.lower_shows(ppath, layers, name)?.is_some();
        self.copy_up(pnode, true)?;
        let dir = fd::open_dir(self.stack.upper_root()?, ppath)?;
        if self.in_upper(&found.src) {
            self.remove_upper(dir.as_fd(), name, below)?;
        } else if below {
            whiteout::create(self.stack.upper()?, dir.as_fd(), name)?;
        }
        if below {
            self.trace(format_args!("whiteout  /{}", ppath.join(name).display()));
        }
        if let Some(n) = node {
            inode::remove_name(&mut n.state.lock().names, pnode.ino, name);
        }
        Ok(())
    }

    /// Removes the upper entry `name` of `dir` atomically, leaving a whiteout when `whiteout`.
    fn remove_upper(&self, dir: BorrowedFd<'_>, name: &OsStr, whiteout: bool) -> Result<()> {
        let upper = self.stack.upper()?;
        let work = upper.work.as_fd();
        let is_dir = fd::kind_of(&fd::stat_at(dir, name)?) == FileType::Directory;
        if !is_dir && !whiteout {
            return fd::unlink_at(dir, name);
        }
        let tmp = self.tmp_name();
        if whiteout && upper.whiteouts == WhiteoutMode::Device {
            fd::mkwhiteout_at(work, &tmp)?;
            if let Err(e) = fd::rename_at(work, &tmp, dir, name, RenameFlags::EXCHANGE) {
                let _ = fd::unlink_at(work, &tmp);
                return Err(e);
            }
        } else {
            fd::rename_at(dir, name, work, &tmp, RenameFlags::NOREPLACE)?;
            if whiteout {
                whiteout::create(upper, dir, name)?;
            }
        }
        layers::remove_tree(work, &tmp)
    }

    /// Keeps an `O_PATH` fd of an open object whose last name is going away.
    fn pin_if_last(&self, node: &Arc<Node>, parent: u64, name: &OsStr) {
        if node.open_count() == 0 {
            return;
        }
        let last = {
            let st = node.state.lock();
            st.names.iter().all(|(p, n)| *p == parent && n == name)
        };
        if !last {
            return;
        }
        if let Ok(at) = self.locate(node) {
            let pinned = match at.name() {
                Some(n) => fd::open_at(at.dir(), n, OFlags::PATH, Mode::empty()),
                None => fd::dup(at.dir()),
            };
            if let Ok(p) = pinned {
                node.state.lock().pinned = Some(Arc::new(p));
            }
        }
    }

    /// Renames `name` in `parent` to `newname` in `newparent` (`RENAME_NOREPLACE`/`RENAME_EXCHANGE`).
    pub fn rename(&self, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: RenameFlags) -> Result<()> {
        let _tree = self.tree.write();
        let r = self.rename_locked(parent, name, newparent, newname, flags);
        self.upper_dirs_changed();
        r
    }

    fn rename_locked(
        &self,
        parent: u64,
        name: &OsStr,
        newparent: u64,
        newname: &OsStr,
        flags: RenameFlags,
    ) -> Result<()> {
        if flags.contains(RenameFlags::WHITEOUT) || flags.contains(RenameFlags::EXCHANGE | RenameFlags::NOREPLACE) {
            return Err(Errno::INVAL);
        }
        if whiteout::is_wh_name(newname) {
            return Err(Errno::INVAL);
        }
        self.stack.upper()?;
        let (pnode, layers, ppath) = self.dir_node(parent)?;
        let (npnode, nlayers, nppath) = self.dir_node(newparent)?;
        let src = self.find_child(&ppath, &layers, name)?.ok_or(Errno::NOENT)?;
        let dst = self.find_child(&nppath, &nlayers, newname)?;
        let exchange = flags.contains(RenameFlags::EXCHANGE);
        match &dst {
            Some(_) if flags.contains(RenameFlags::NOREPLACE) => return Err(Errno::EXIST),
            None if exchange => return Err(Errno::NOENT),
            Some(d) if d.ino == src.ino => return Ok(()),
            _ => {}
        }
        let from = ppath.join(name);
        let to = nppath.join(newname);
        if src.kind() == FileType::Directory && (to.starts_with(&from) || (exchange && from.starts_with(&to))) {
            return Err(Errno::INVAL);
        }
        if let Some(d) = &dst {
            check_replace(&src, d, exchange)?;
            if !exchange
                && let Src::Dir(dl) = &d.src
                && !self.is_empty_dir(&to, dl)?
            {
                return Err(Errno::NOTEMPTY);
            }
        }
        self.copy_up_moving(&from, &src)?;
        if exchange && let Some(d) = &dst {
            self.copy_up_moving(&to, d)?;
        }
        let below_src = self.lower_shows(&ppath, &layers, name)?;
        let below_dst = self.lower_shows(&nppath, &nlayers, newname)?;
        self.copy_up(&pnode, true)?;
        self.copy_up(&npnode, true)?;
        let root = self.stack.upper_root()?;
        let (udir, nudir) = (fd::open_dir(root, &ppath)?, fd::open_dir(root, &nppath)?);
        self.set_redirect(udir.as_fd(), name, &src)?;
        if exchange {
            let Some(d) = &dst else { return Err(Errno::NOENT) };
            self.set_redirect(nudir.as_fd(), newname, d)?;
            fd::rename_at(udir.as_fd(), name, nudir.as_fd(), newname, RenameFlags::EXCHANGE)?;
            self.fix_moved(nudir.as_fd(), newname, &src, &below_dst)?;
            self.fix_moved(udir.as_fd(), name, d, &below_src)?;
        } else {
            if let Some(d) = &dst {
                self.prepare_target(nudir.as_fd(), newname, d)?;
            }
            self.move_entry(udir.as_fd(), name, nudir.as_fd(), newname, below_src.is_some())?;
            self.fix_moved(nudir.as_fd(), newname, &src, &below_dst)?;
        }
        self.mark_impure(nudir.as_fd());
        if self.has_lower_parts(&src) {
            self.trace(format_args!("redirect  /{}  (its lower parts stay at /{})", to.display(), from.display()));
        }
        let dst = dst.as_ref().map(|d| (d, &from));
        self.rename_nodes((parent, name), (newparent, newname), (&src, &to), dst, exchange);
        Ok(())
    }

    /// Copies up what a rename moves: a file with its hardlinks, or a directory (not its content).
    fn copy_up_moving(&self, path: &Path, found: &Found) -> Result<()> {
        if self.in_upper(&found.src) {
            return Ok(());
        }
        match (&found.src, self.inodes.find(found.ino)) {
            (Src::Dir(_), _) => self.ensure_upper_dir(path).map(drop),
            (Src::File(..), Some(node)) => self.copy_up(&node, true),
            (Src::File(..), None) => self.copy_up_file(path, found, true),
        }
    }

    /// Whether a directory has parts in lower layers.
    fn has_lower_parts(&self, found: &Found) -> bool {
        matches!(&found.src, Src::Dir(ls) if ls.iter().any(|d| !self.stack.is_upper(d.idx)))
    }

    /// Before a directory with lower parts moves, points its upper instance at them with an
    /// absolute `overlay.redirect` (the kernel's format), so the move is O(1) and they follow it.
    fn set_redirect(&self, dir: BorrowedFd<'_>, name: &OsStr, found: &Found) -> Result<()> {
        let Src::Dir(ls) = &found.src else { return Ok(()) };
        let Some(lower) = ls.iter().find(|d| !self.stack.is_upper(d.idx)) else { return Ok(()) };
        let mut target = b"/".to_vec();
        target.extend_from_slice(lower.path.as_os_str().as_bytes());
        let key = self.stack.upper()?.ns.name("redirect");
        crate::sys::xattr::set(dir, Some(name), OsStr::new(&key), &target, rustix::fs::XattrFlags::empty())?;
        Ok(())
    }

    /// Makes an upper directory target ready to be replaced: an empty merged dir that still holds
    /// whiteouts is swapped for an empty opaque one (the real rename needs an empty target).
    fn prepare_target(&self, dir: BorrowedFd<'_>, name: &OsStr, dst: &Found) -> Result<()> {
        if dst.kind() != FileType::Directory || !self.in_upper(&dst.src) {
            return Ok(());
        }
        let sub = fd::open_dir_read(dir, Path::new(name))?;
        if fd::read_dir(sub)?.is_empty() {
            return Ok(());
        }
        let upper = self.stack.upper()?;
        let work = upper.work.as_fd();
        let tmp = self.tmp_name();
        fd::mkdir_at(work, &tmp, 0o700)?;
        let swapped = fd::rename_at(work, &tmp, dir, name, RenameFlags::EXCHANGE);
        let _ = layers::remove_tree(work, &tmp);
        swapped
    }

    /// Moves the upper entry; the source name gets a whiteout when `whiteout` (a lower layer shows it).
    fn move_entry(
        &self,
        from: BorrowedFd<'_>,
        name: &OsStr,
        to: BorrowedFd<'_>,
        newname: &OsStr,
        whiteout: bool,
    ) -> Result<()> {
        let upper = self.stack.upper()?;
        // A whiteout at the target: a non-directory replaces it; a directory is exchanged with it.
        let target = fd::try_stat_at(to, newname)?;
        let over_whiteout = target.as_ref().is_some_and(|st| whiteout::is_whiteout(to, newname, st, false));
        let moving_dir = fd::kind_of(&fd::stat_at(from, name)?) == FileType::Directory;
        if over_whiteout && moving_dir {
            fd::rename_at(from, name, to, newname, RenameFlags::EXCHANGE)?;
            if !whiteout {
                fd::unlink_at(from, name)?;
            }
        } else if whiteout && upper.whiteouts == WhiteoutMode::Device {
            match fd::rename_at(from, name, to, newname, RenameFlags::WHITEOUT) {
                Ok(()) => {}
                Err(Errno::INVAL) | Err(Errno::PERM) | Err(Errno::OPNOTSUPP) => {
                    fd::rename_at(from, name, to, newname, RenameFlags::empty())?;
                    whiteout::create(upper, from, name)?;
                }
                Err(e) => return Err(e),
            }
        } else {
            fd::rename_at(from, name, to, newname, RenameFlags::empty())?;
            if whiteout {
                whiteout::create(upper, from, name)?;
            }
        }
        fd::unlink_at(to, &whiteout::wh_name(newname)).or_else(ignore_noent)
    }

    /// A directory that moved to a name under which a lower layer shows a directory must not
    /// merge with it: one with lower parts follows its redirect; one without is made opaque.
    fn fix_moved(&self, dir: BorrowedFd<'_>, name: &OsStr, moved: &Found, below: &Option<Found>) -> Result<()> {
        let Some(b) = below else { return Ok(()) };
        if b.kind() != FileType::Directory || moved.kind() != FileType::Directory || self.has_lower_parts(moved) {
            return Ok(());
        }
        let sub = fd::open_dir(dir, Path::new(name))?;
        whiteout::set_opaque(self.stack.upper()?, sub.as_fd())?;
        self.trace(format_args!("opaque    {}  (renamed over a lower directory)", name.to_string_lossy()));
        Ok(())
    }

    /// Updates the names and sources of the nodes a rename touched.
    fn rename_nodes(
        &self,
        (parent, name): (u64, &OsStr),
        (newparent, newname): (u64, &OsStr),
        src: (&Found, &Path),
        dst: Option<(&Found, &PathBuf)>,
        exchange: bool,
    ) {
        let moved = self.inodes.find(src.0.ino);
        let replaced = dst.and_then(|d| self.inodes.find(d.0.ino));
        if let (Some(r), false) = (&replaced, exchange) {
            self.pin_if_last(r, newparent, newname);
            inode::remove_name(&mut r.state.lock().names, newparent, newname);
        }
        if let Some(m) = &moved {
            let mut st = m.state.lock();
            inode::remove_name(&mut st.names, parent, name);
            inode::add_name(&mut st.names, m.kind, newparent, newname);
            st.src = self.moved_src(&st.src, src.1);
        }
        if let (Some(r), Some((_, back)), true) = (&replaced, dst, exchange) {
            let mut st = r.state.lock();
            inode::remove_name(&mut st.names, newparent, newname);
            inode::add_name(&mut st.names, r.kind, parent, name);
            st.src = self.moved_src(&st.src, back);
        }
    }

    /// The source of an object after it moved to `to` in the upper layer; lower parts stay.
    fn moved_src(&self, src: &Src, to: &Path) -> Src {
        match src {
            Src::Dir(ls) => {
                let xwh = ls.first().filter(|d| self.stack.is_upper(d.idx)).is_some_and(|d| d.xwh);
                let lowers = ls.iter().filter(|d| !self.stack.is_upper(d.idx)).cloned();
                Src::Dir(std::iter::once(DirLayer::new(0, xwh, to)).chain(lowers).collect())
            }
            Src::File(..) => Src::File(0, std::sync::Arc::from(to)),
        }
    }

    /// Path of a node (for tests and tools).
    pub fn path(&self, ino: u64) -> Result<PathBuf> {
        let node = self.inodes.get(ino)?;
        self.inodes.path_of(&node)
    }
}

/// Type rules for replacing `dst` by `src` (the kernel checks them too; kept for direct callers).
fn check_replace(src: &Found, dst: &Found, exchange: bool) -> Result<()> {
    if exchange {
        return Ok(());
    }
    match (src.kind() == FileType::Directory, dst.kind() == FileType::Directory) {
        (true, false) => Err(Errno::NOTDIR),
        (false, true) => Err(Errno::ISDIR),
        _ => Ok(()),
    }
}

/// The owner of a new object: the caller, with the parent's group where the parent is set-gid.
fn owner_for(ctx: &Ctx, parent: &Stat) -> (u32, u32) {
    let gid = if parent.st_mode & libc::S_ISGID != 0 { parent.st_gid } else { ctx.gid };
    (ctx.uid, gid)
}

fn ignore_noent(e: Errno) -> Result<()> {
    if e == Errno::NOENT { Ok(()) } else { Err(e) }
}

/// Unused-name helper for tests.
pub fn os(s: &str) -> OsString {
    OsString::from(s)
}
