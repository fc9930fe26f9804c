//! Renaming (SEMANTICS.md "Namespace operations"): files and directories, `RENAME_NOREPLACE`
//! and `RENAME_EXCHANGE`.
//!
//! What moves is copied up first: a file with all its names, a directory without its content —
//! a directory with lower parts gets an absolute `overlay.redirect` (the kernel's format) to
//! where they are, so the move is O(1). The old name gets a whiteout if a lower layer shows it;
//! a directory without lower parts that lands on a lower directory's name is made opaque.

use std::ffi::OsStr;
use std::os::fd::{AsFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustix::fs::{FileType, RenameFlags};

use super::inode::{DirLayer, Node, Src};
use super::layers::{self, WhiteoutMode};
use super::lookup::Found;
use super::whiteout;
use super::{Errno, Overlay, Result};
use crate::sys::fd;

impl Overlay {
    /// Renames `name` in `parent` to `newname` in `newparent` (`RENAME_NOREPLACE`/`RENAME_EXCHANGE`).
    pub fn rename(&self, parent: u64, name: &OsStr, newparent: u64, newname: &OsStr, flags: RenameFlags) -> Result<()> {
        let _tree = self.change_tree();
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
        match self.plan_move(parent, name, newparent, newname, flags)? {
            Some(mv) => self.do_move(&mv),
            None => Ok(()),
        }
    }

    /// Resolves both names and checks the rename; `None` when both name the same object.
    fn plan_move<'a>(
        &self,
        parent: u64,
        name: &'a OsStr,
        newparent: u64,
        newname: &'a OsStr,
        flags: RenameFlags,
    ) -> Result<Option<Move<'a>>> {
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
            Some(d) if d.ino == src.ino => return Ok(None),
            _ => {}
        }
        let (from, to) = (ppath.join(name), nppath.join(newname));
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
        let (old, new) =
            (Side { node: pnode, layers, path: ppath }, Side { node: npnode, layers: nlayers, path: nppath });
        Ok(Some(Move { parent, name, newparent, newname, exchange, old, new, src, dst, from, to }))
    }

    /// Carries out a checked rename in the upper layer.
    fn do_move(&self, mv: &Move<'_>) -> Result<()> {
        self.copy_up_moving(&mv.from, &mv.src)?;
        if let Some(d) = &mv.dst {
            // An exchanged target moves too. A replaced lower file with other names is copied up
            // (all its names) first, so that those keep the true link count, as with unlink.
            let linked = d.kind() != FileType::Directory && d.st.st_nlink > 1;
            if mv.exchange || linked {
                self.copy_up_moving(&mv.to, d)?;
            }
        }
        let below_src = self.lower_shows(&mv.old.path, &mv.old.layers, mv.name)?;
        let below_dst = self.lower_shows(&mv.new.path, &mv.new.layers, mv.newname)?;
        self.copy_up(&mv.old.node, true)?;
        self.copy_up(&mv.new.node, true)?;
        let root = self.stack.upper_root()?;
        let (udir, nudir) = (fd::open_dir(root, &mv.old.path)?, fd::open_dir(root, &mv.new.path)?);
        let (udir, nudir) = (udir.as_fd(), nudir.as_fd());
        self.set_redirect(udir, mv.name, &mv.src)?;
        match (&mv.dst, mv.exchange) {
            // A directory that must not merge with what lies below its new place is made opaque
            // before it moves (as kernel overlayfs does): no moment shows it merged.
            (Some(d), true) => {
                self.set_redirect(nudir, mv.newname, d)?;
                self.fix_moved(nudir, mv.newname, d, &below_src)?;
                self.fix_moved(udir, mv.name, &mv.src, &below_dst)?;
                fd::rename_at(udir, mv.name, nudir, mv.newname, RenameFlags::EXCHANGE)?;
            }
            (dst, _) => {
                if let Some(d) = dst {
                    self.prepare_target(nudir, mv.newname, d)?;
                }
                self.fix_moved(udir, mv.name, &mv.src, &below_dst)?;
                self.move_entry(udir, mv.name, nudir, mv.newname, below_src.is_some())?;
            }
        }
        self.mark_impure(nudir);
        if self.has_lower_parts(&mv.src) {
            let (to, from) = (mv.to.display(), mv.from.display());
            self.trace(format_args!("redirect  /{to}  (its lower parts stay at /{from})"));
        }
        let dst = mv.dst.as_ref().map(|d| (d, &mv.from));
        self.rename_nodes((mv.parent, mv.name), (mv.newparent, mv.newname), (&mv.src, &mv.to), dst, mv.exchange);
        Ok(())
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
        let swapped = self
            .like_target(dir, name, work, &tmp)
            .and_then(|()| fd::rename_at(work, &tmp, dir, name, RenameFlags::EXCHANGE));
        let _ = layers::remove_tree(work, &tmp);
        swapped
    }

    /// Gives the empty directory `tmp` of the work dir what the view shows of the upper
    /// directory `name` it is to replace (owner, mode, xattrs, inode number, times) and makes it
    /// opaque, as kernel overlayfs' `ovl_clear_empty` does: should the daemon die right after the
    /// exchange, the view shows the target as it was, an empty directory.
    fn like_target(&self, dir: BorrowedFd<'_>, name: &OsStr, work: BorrowedFd<'_>, tmp: &OsStr) -> Result<()> {
        let upper = self.stack.upper()?;
        let st = fd::stat_at(dir, name)?;
        self.give_owner(work, tmp, st.st_uid, st.st_gid)?;
        fd::chmod_at(work, tmp, st.st_mode)?;
        super::copyup::copy_xattrs(dir, Some(name), work, Some(tmp))?;
        let key = upper.ns.name(super::lookup::INO_XATTR);
        if let Some(ino) = crate::sys::xattr::get(dir, Some(name), OsStr::new(&key))? {
            crate::sys::xattr::set(work, Some(tmp), OsStr::new(&key), &ino, rustix::fs::XattrFlags::empty())?;
        }
        whiteout::set_opaque(upper, fd::open_dir(work, Path::new(tmp))?.as_fd())?;
        let (atime, mtime) = fd::times_of(&st);
        fd::utimes_at(work, Some(tmp), atime, mtime)
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
        whiteout::remove_wh_file(to, newname)
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
        let moved = self.inodes.find_object(src.0.ino);
        let replaced = dst.and_then(|d| self.inodes.find_object(d.0.ino));
        if let (Some(r), false) = (&replaced, exchange) {
            self.pin_if_last(r, newparent, newname);
            r.state.lock().names.remove(newparent, newname);
        }
        if let Some(m) = &moved {
            let mut st = m.state.lock();
            st.names.remove(parent, name);
            st.names.add(m.kind, newparent, newname);
            let moved = self.moved_src(&st.src, src.1);
            st.set_src(moved);
        }
        if let (Some(r), Some((_, back)), true) = (&replaced, dst, exchange) {
            let mut st = r.state.lock();
            st.names.remove(newparent, newname);
            st.names.add(r.kind, parent, name);
            let moved = self.moved_src(&st.src, back);
            st.set_src(moved);
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
}

/// One directory a rename touches: its node, layers and merged path.
struct Side {
    node: Arc<Node>,
    layers: Vec<DirLayer>,
    path: PathBuf,
}

/// A rename, resolved and checked.
struct Move<'a> {
    parent: u64,
    name: &'a OsStr,
    newparent: u64,
    newname: &'a OsStr,
    exchange: bool,
    old: Side,
    new: Side,
    src: Found,
    dst: Option<Found>,
    from: PathBuf,
    to: PathBuf,
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
