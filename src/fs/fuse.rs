//! The FUSE adapter: the only `impl fuser::Filesystem`. Each method decodes its arguments, calls
//! one [`Overlay`] method and replies once; errno mapping happens here and nowhere else.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    FileAttr, FileHandle, Filesystem, FopenFlags, Generation, INodeNo, InitFlags, KernelConfig, LockOwner, OpenFlags,
    RenameFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyEmpty, ReplyEntry, ReplyLseek, ReplyOpen,
    ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};
use rustix::fs::{FileType as RxType, Stat};

use super::attr::{Attr, SetAttr, attr_of};
use super::create::NewObject;
use super::inode::Node;
use super::passthrough::{Backings, Mode, write_kills_privs};
use super::{Ctx, Errno, Overlay};
use crate::sys::fd::SetTime;

/// The overlay as a FUSE filesystem.
pub struct StrataFuse {
    ov: Arc<Overlay>,
    backings: Backings<fuser::BackingId>,
    /// The kernel opens and closes directories without asking (`FUSE_NO_OPENDIR_SUPPORT`):
    /// OPENDIR is answered `ENOSYS` once, after which none comes, nor RELEASEDIR.
    no_opendir: bool,
}

impl StrataFuse {
    /// The overlay served.
    pub fn overlay(&self) -> &Arc<Overlay> {
        &self.ov
    }
}

impl StrataFuse {
    /// Wraps an overlay for a FUSE session.
    pub fn new(ov: Arc<Overlay>) -> StrataFuse {
        StrataFuse { ov, backings: Backings::new(false), no_opendir: false }
    }

    /// Replies to an open of handle `fh` of node `nodeid` in the mode the passthrough table
    /// decides. On a conflict (the node still passes through to the lower file, the object now
    /// lives in upper) the object gets a new node id and the open `ESTALE`: the kernel walks the
    /// path again, revalidating, finds the new node id and opens a fresh inode.
    fn reply_open(&self, nodeid: u64, fh: u64, reply: ReplyOpen) {
        let Ok(h) = self.ov.handles.file(fh) else { return reply.error(fuser::Errno::EBADF) };
        match self.backings.open(nodeid, fh, h.layer, self.privileged(&h, None), || reply.open_backing(&h.file)) {
            Mode::Passthrough(b) => reply.opened_passthrough(FileHandle(fh), FopenFlags::empty(), &b),
            Mode::Cached => reply.opened(FileHandle(fh), self.cache_flags(h.layer)),
            Mode::Conflict => {
                self.ov.release(fh);
                match self.ov.renumber(nodeid) {
                    Ok(()) => reply.error(fuser::Errno::ESTALE),
                    Err(e) => reply.error(errno(e)),
                }
            }
        }
    }

    /// Lower files never change: their page cache may outlive an open.
    /// Whether the open file `h` must not pass through: writes to it must clear its suid or
    /// sgid bit, which Strata does when it sees them. `mode`: the file's, when known (else it
    /// is looked up, only when passthrough is on).
    fn privileged(&self, h: &crate::fs::handles::FileHandle, mode: Option<u32>) -> bool {
        let mode =
            || mode.or_else(|| crate::sys::fd::stat_fd(std::os::fd::AsFd::as_fd(&h.file)).ok().map(|st| st.st_mode));
        h.writable && self.backings.enabled() && mode().is_some_and(write_kills_privs)
    }

    fn cache_flags(&self, layer: crate::fs::layers::LayerIdx) -> FopenFlags {
        if self.ov.stack.is_upper(layer) { FopenFlags::empty() } else { FopenFlags::FOPEN_KEEP_CACHE }
    }

    fn ttl(&self) -> Duration {
        self.ov.config.ttl
    }

    /// How long the kernel may keep the attributes of node `nodeid`: not at all for a node its
    /// object no longer answers as (see `InodeTable::renumber`), whose names the kernel may still
    /// hold while the object changes through its new node — writes passed through there never
    /// reach Strata to invalidate this one.
    fn attr_ttl(&self, nodeid: u64) -> Duration {
        if self.ov.inodes.is_superseded(nodeid) { Duration::ZERO } else { self.ttl() }
    }

    fn entry(&self, reply: ReplyEntry, node: &Node, st: &Stat) {
        let attr = fuse_attr(&attr_of(node.ino, &node.src(), st));
        reply.entry_for_node(INodeNo(node.nodeid), &self.ttl(), &attr, Generation(0));
    }
}

/// Kernel cache invalidation through the session's notifier.
pub struct Notify(pub fuser::Notifier);

impl super::Invalidate for Notify {
    fn attr(&self, ino: u64) {
        // A negative offset invalidates attributes only: no page or inode locks are taken, so
        // this is safe from inside a request handler.
        if let Err(e) = self.0.inval_inode(INodeNo(ino), -1, 0) {
            log::debug!("invalidating attributes of {ino}: {e}");
        }
    }

    fn entry(&self, parent: u64, name: &OsStr) {
        // ENOENT: the kernel has already dropped it.
        if let Err(e) = self.0.inval_entry(INodeNo(parent), name) {
            log::debug!("invalidating entry {:?} of {parent}: {e}", name);
        }
    }
}

fn errno(e: Errno) -> fuser::Errno {
    fuser::Errno::from_i32(e.raw_os_error())
}

fn ctx(req: &Request) -> Ctx {
    Ctx { uid: req.uid(), gid: req.gid(), pid: req.pid(), umask: 0 }
}

/// The caller of a create: with `FUSE_DONT_MASK` the kernel leaves the umask to Strata, which
/// applies it unless the parent directory has a default ACL.
fn creator(req: &Request, umask: u32) -> Ctx {
    Ctx { umask, ..ctx(req) }
}

fn kind(k: RxType) -> fuser::FileType {
    match k {
        RxType::Directory => fuser::FileType::Directory,
        RxType::Symlink => fuser::FileType::Symlink,
        RxType::Fifo => fuser::FileType::NamedPipe,
        RxType::Socket => fuser::FileType::Socket,
        RxType::CharacterDevice => fuser::FileType::CharDevice,
        RxType::BlockDevice => fuser::FileType::BlockDevice,
        _ => fuser::FileType::RegularFile,
    }
}

fn fuse_attr(a: &Attr) -> FileAttr {
    FileAttr {
        ino: INodeNo(a.ino),
        size: a.size,
        blocks: a.blocks,
        atime: a.atime,
        mtime: a.mtime,
        ctime: a.ctime,
        crtime: UNIX_EPOCH,
        kind: kind(a.kind),
        perm: a.perm,
        nlink: a.nlink,
        uid: a.uid,
        gid: a.gid,
        rdev: a.rdev,
        blksize: a.blksize,
        flags: 0,
    }
}

/// The attributes of a negative entry (node id 0).
fn negative() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: fuser::FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

fn set_time(t: Option<TimeOrNow>) -> Option<SetTime> {
    t.map(|t| match t {
        TimeOrNow::Now => SetTime::Now,
        TimeOrNow::SpecificTime(t) => {
            let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
            SetTime::At(rustix::fs::Timespec { tv_sec: d.as_secs() as i64, tv_nsec: d.subsec_nanos() as _ })
        }
    })
}

/// Answers a size-0 probe with the size, a too-small buffer with `ERANGE`, else the data.
fn reply_sized(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if (size as usize) < data.len() {
        reply.error(fuser::Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

/// What Strata asks of the kernel at INIT, besides passthrough and skipping OPENDIR (which
/// need more than a flag). POSIX_ACL lets the kernel cache ACLs (ls asks for them on every file)
/// and check them; HANDLE_KILLPRIV_V2: Strata clears suid/sgid on write, truncate and chown
/// itself, which spares a GETXATTR `security.capability` on every write() (the kernel marks
/// files that have none and stops asking); READDIRPLUS answers `ls -l` with attributes in the
/// listing instead of one lookup each.
pub const KERNEL_OPTIONS: InitFlags = InitFlags::FUSE_ATOMIC_O_TRUNC
    .union(InitFlags::FUSE_PARALLEL_DIROPS)
    .union(InitFlags::FUSE_CACHE_SYMLINKS)
    .union(InitFlags::FUSE_EXPORT_SUPPORT)
    .union(InitFlags::FUSE_POSIX_ACL)
    .union(InitFlags::FUSE_DONT_MASK)
    .union(InitFlags::FUSE_HANDLE_KILLPRIV_V2)
    .union(InitFlags::FUSE_DO_READDIRPLUS)
    .union(InitFlags::FUSE_READDIRPLUS_AUTO);

/// Asks for [`KERNEL_OPTIONS`] (those the kernel offers) and 1 MiB writes (256 pages, the
/// kernel's largest, which keeps each worker's request buffer small); returns what was granted.
/// The floor bench's no-work filesystem asks the same.
pub fn ask_kernel(config: &mut KernelConfig) -> InitFlags {
    let _ = config.set_max_write(1 << 20);
    let granted = KERNEL_OPTIONS & config.capabilities();
    let _ = config.add_capabilities(granted);
    granted
}

impl Filesystem for StrataFuse {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        let granted = ask_kernel(config);
        log::debug!("kernel capabilities used: {granted:?} (not offered: {:?})", KERNEL_OPTIONS - granted);
        // Listings need no handle (readdir.rs): two requests fewer per directory read — and
        // none at all for one the kernel has cached (`FOPEN_CACHE_DIR` is then its default).
        self.no_opendir = config.capabilities().contains(InitFlags::FUSE_NO_OPENDIR_SUPPORT);
        // Passthrough: reads and writes go from the kernel straight to the layer's file. Depth 1:
        // backing files sit on plain filesystems, and a Strata mount may be a lower layer itself.
        if config.capabilities().contains(InitFlags::FUSE_PASSTHROUGH)
            && config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok()
        {
            self.backings = Backings::new(true);
            log::debug!("FUSE passthrough on");
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.ov.lookup(parent.0, name) {
            Ok((node, st)) => self.entry(reply, &node, &st),
            // A node id of 0 with a time to live is a negative entry the kernel may cache: every
            // name Strata creates goes through the kernel, which then drops it.
            Err(Errno::NOENT) => reply.entry(&self.ttl(), &negative(), Generation(0)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        self.ov.forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.ov.getattr(ino.0, fh.map(|f| f.0)) {
            Ok(a) => reply.attr(&self.attr_ttl(ino.0), &fuse_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setattr(
        &self,
        req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        let set = SetAttr {
            mode,
            uid,
            gid,
            size,
            atime: set_time(atime),
            mtime: set_time(mtime),
            kill_privs: fuser::kill_suidgid_asked().then(|| ctx(req)),
        };
        match self.ov.setattr(ino.0, fh.map(|f| f.0), &set) {
            Ok(a) => reply.attr(&self.attr_ttl(ino.0), &fuse_attr(&a)),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.ov.readlink(ino.0) {
            Ok(t) => reply.data(std::os::unix::ffi::OsStrExt::as_bytes(t.as_os_str())),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mknod(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, rdev: u32, reply: ReplyEntry) {
        let what = NewObject::Node { mode, rdev: rdev as u64 };
        match self.ov.create(&creator(req, umask), parent.0, name, what) {
            Ok(c) => self.entry(reply, &c.node, &c.st),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        match self.ov.create(&creator(req, umask), parent.0, name, NewObject::Dir { mode }) {
            Ok(c) => self.entry(reply, &c.node, &c.st),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.ov.unlink(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.ov.rmdir(parent.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn symlink(&self, req: &Request, parent: INodeNo, link_name: &OsStr, target: &Path, reply: ReplyEntry) {
        match self.ov.create(&ctx(req), parent.0, link_name, NewObject::Symlink { target: target.as_os_str() }) {
            Ok(c) => self.entry(reply, &c.node, &c.st),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn rename(
        &self,
        _req: &Request,
        parent: INodeNo,
        name: &OsStr,
        newparent: INodeNo,
        newname: &OsStr,
        flags: RenameFlags,
        reply: ReplyEmpty,
    ) {
        let flags = rustix::fs::RenameFlags::from_bits_retain(flags.bits());
        match self.ov.rename(parent.0, name, newparent.0, newname, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn link(&self, _req: &Request, ino: INodeNo, newparent: INodeNo, newname: &OsStr, reply: ReplyEntry) {
        match self.ov.link(ino.0, newparent.0, newname) {
            Ok((node, st)) => self.entry(reply, &node, &st),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn open(&self, req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        let kill_privs = fuser::kill_suidgid_asked().then(|| ctx(req));
        match self.ov.open(ino.0, flags.0, kill_privs.as_ref()) {
            Ok(fh) => self.reply_open(ino.0, fh, reply),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.ov.read(fh.0, offset, size) {
            Ok(data) => reply.data(&data),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn write(
        &self,
        req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        data: &[u8],
        write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        let kill_privs = write_flags.contains(WriteFlags::FUSE_WRITE_KILL_SUIDGID).then(|| ctx(req));
        match self.ov.write(fh.0, offset, data, kill_privs.as_ref()) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // Nothing to do at close (no locks to drop, data is written through): ENOSYS tells the
        // kernel never to send FLUSH again, which saves a round trip on every close().
        reply.error(fuser::Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.backings.release(fh.0);
        self.ov.release(fh.0);
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.ov.fsync(fh.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        if self.no_opendir {
            return reply.error(fuser::Errno::ENOSYS);
        }
        // The kernel may keep listings across opens: every change to a directory's names goes
        // through the kernel, which then drops that directory's cached listing itself.
        match self.ov.inodes.get(ino.0) {
            Ok(node) if node.is_dir() => {
                reply.opened(FileHandle(0), FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE)
            }
            Ok(_) => reply.error(fuser::Errno::ENOTDIR),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        let (listing, start) = match self.ov.readdir(ino.0, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        for e in &listing.entries[start..] {
            if reply.add(INodeNo(e.ino), e.cookie, kind(e.kind), &e.name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: fuser::ReplyDirectoryPlus,
    ) {
        let (listing, start) = match self.ov.readdir(ino.0, offset) {
            Ok(l) => l,
            Err(e) => return reply.error(errno(e)),
        };
        for e in &listing.entries[start..] {
            let next = e.cookie;
            // The kernel takes no reference for `.` and `..`: their attributes are not used.
            // The first chunk of a listing (offset 0) is READDIRPLUS whether or not the caller
            // will stat anything (READDIRPLUS_AUTO): it gets `.`, `..` and one name, without
            // attributes — no stat of the entries `find` never looks at. A caller that stats
            // that name makes a LOOKUP, after which the kernel asks for attributes again, and
            // the chunks that follow carry them (it keeps asking while they are used).
            let dot = e.name == "." || e.name == "..";
            if dot || offset == 0 {
                let mut attr = negative();
                (attr.ino, attr.kind) = (INodeNo(e.ino), kind(e.kind));
                // Past `.` and `..`, the first chunk ends after its one name.
                if reply.add(INodeNo(0), next, &e.name, &Duration::ZERO, &attr, Generation(0)) || !dot {
                    break;
                }
                continue;
            }
            // Each entry returned is a lookup the kernel will forget later; one that does not
            // fit in the reply must not stay counted.
            let Ok((node, st)) = self.ov.lookup_listed(ino.0, e, listing.generation) else { continue };
            let attr = fuse_attr(&attr_of(node.ino, &node.src(), &st));
            if reply.add(INodeNo(node.nodeid), next, &e.name, &self.ttl(), &attr, Generation(0)) {
                self.ov.forget(node.nodeid, 1);
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        reply.ok();
    }

    fn fsyncdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, datasync: bool, reply: ReplyEmpty) {
        match self.ov.fsyncdir(ino.0, datasync) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        match self.ov.statfs() {
            Ok(s) => reply.statfs(
                s.f_blocks,
                s.f_bfree,
                s.f_bavail,
                s.f_files,
                s.f_ffree,
                s.f_bsize as u32,
                s.f_namemax as u32,
                s.f_frsize as u32,
            ),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn setxattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        name: &OsStr,
        value: &[u8],
        flags: i32,
        _position: u32,
        reply: ReplyEmpty,
    ) {
        match self.ov.setxattr(ino.0, name, value, flags) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.ov.getxattr(ino.0, name) {
            Ok(v) => reply_sized(reply, size, &v),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn listxattr(&self, req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.ov.listxattr(ino.0, req.pid()) {
            Ok(v) => reply_sized(reply, size, &v),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn removexattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        match self.ov.removexattr(ino.0, name) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        flags: i32,
        reply: ReplyCreate,
    ) {
        let what = NewObject::File { mode, flags };
        match self.ov.create(&creator(req, umask), parent.0, name, what) {
            Ok(c) => {
                let attr = fuse_attr(&attr_of(c.node.ino, &c.node.src(), &c.st));
                let Some(file) = c.file else {
                    return reply.error(fuser::Errno::EIO);
                };
                let writable = flags & libc::O_ACCMODE != libc::O_RDONLY;
                let nodeid = c.node.nodeid;
                let fh = self.ov.add_file(c.node, file, writable);
                let Ok(h) = self.ov.handles.file(fh) else { return reply.error(fuser::Errno::EBADF) };
                let (ttl, g, f, node) = (self.ttl(), Generation(0), FileHandle(fh), INodeNo(nodeid));
                // A new object has no other open file: no conflict is possible.
                let privileged = self.privileged(&h, Some(c.st.st_mode));
                let backing = match self.backings.open(nodeid, fh, h.layer, privileged, || reply.open_backing(&h.file))
                {
                    Mode::Passthrough(b) => Some(b),
                    Mode::Cached | Mode::Conflict => None,
                };
                reply.created_for_node(node, &ttl, &attr, g, f, FopenFlags::empty(), backing.as_deref());
            }
            Err(e) => reply.error(errno(e)),
        }
    }

    fn fallocate(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        length: u64,
        mode: i32,
        reply: ReplyEmpty,
    ) {
        match self.ov.fallocate(fh.0, offset, length, mode) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn lseek(&self, _req: &Request, _ino: INodeNo, fh: FileHandle, offset: i64, whence: i32, reply: ReplyLseek) {
        match self.ov.lseek(fh.0, offset, whence) {
            Ok(o) => reply.offset(o),
            Err(e) => reply.error(errno(e)),
        }
    }

    fn copy_file_range(
        &self,
        _req: &Request,
        _ino_in: INodeNo,
        fh_in: FileHandle,
        offset_in: u64,
        _ino_out: INodeNo,
        fh_out: FileHandle,
        offset_out: u64,
        len: u64,
        _flags: fuser::CopyFileRangeFlags,
        reply: ReplyWrite,
    ) {
        match self.ov.copy_file_range(fh_in.0, offset_in, fh_out.0, offset_out, len) {
            Ok(n) => reply.written(n),
            Err(e) => reply.error(errno(e)),
        }
    }
}
