//! A filesystem that does no work: every answer comes from a map in memory, nothing touches a
//! disk, no system call is made for a request. Served by the same FUSE session code as Strata
//! (the vendored fuser, either transport), it shows what the kernel's requests cost by
//! themselves — the floor under any FUSE filesystem on this machine.
//!
//! It asks the kernel for what Strata asks (`default_permissions`, `HANDLE_KILLPRIV_V2`,
//! POSIX ACLs, READDIRPLUS, the same time to live), answers `getxattr` with "no such attribute"
//! as Strata does for a file without one (an "unsupported" answer would make the kernel stop
//! asking), says "not implemented" to FLUSH and OPENDIR as Strata does (the kernel then sends
//! neither again), and opens files for direct I/O, since it has no backing file to pass through: a
//! `write` is then one WRITE request where Strata's is one GETXATTR.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, KernelConfig, LockOwner,
    OpenFlags, ReplyAttr, ReplyCreate, ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry,
    ReplyOpen, ReplyStatfs, ReplyWrite, ReplyXattr, Request, TimeOrNow, WriteFlags,
};

/// Strata's time to live for entries and attributes.
fn ttl() -> Duration {
    strata::fs::Config::default().ttl
}

/// The requests counted, by name, in the order a report lists them.
pub const OPS: [&str; 14] = [
    "GETATTR", "LOOKUP", "CREATE", "MKDIR", "WRITE", "GETXATTR", "SETATTR", "RELEASE", "OPEN", "READDIR", "UNLINK",
    "RMDIR", "FLUSH", "OTHER",
];

/// How many requests of each kind the filesystem has answered.
#[derive(Default)]
pub struct Counts([AtomicU64; OPS.len()]);

impl Counts {
    fn add(&self, op: &str) {
        let i = OPS.iter().position(|o| *o == op).unwrap_or(OPS.len() - 1);
        self.0[i].fetch_add(1, Ordering::Relaxed);
    }

    /// The counts so far, by [`OPS`] index.
    pub fn snapshot(&self) -> [u64; OPS.len()] {
        std::array::from_fn(|i| self.0[i].load(Ordering::Relaxed))
    }
}

struct Node {
    attr: FileAttr,
    /// Names in a directory, in the order made (READDIR offsets are positions in it).
    children: BTreeMap<u64, (OsString, u64)>,
    by_name: HashMap<OsString, u64>,
    next_pos: u64,
}

struct Tree {
    nodes: HashMap<u64, Node>,
    next_ino: u64,
}

pub struct NullFs {
    tree: Mutex<Tree>,
    pub counts: std::sync::Arc<Counts>,
}

fn new_attr(ino: u64, kind: FileType, perm: u16, uid: u32, gid: u32) -> FileAttr {
    let now = SystemTime::now();
    FileAttr {
        ino: INodeNo(ino),
        size: if kind == FileType::Directory { 4096 } else { 0 },
        blocks: 0,
        atime: now,
        mtime: now,
        ctime: now,
        crtime: UNIX_EPOCH,
        kind,
        perm,
        nlink: if kind == FileType::Directory { 2 } else { 1 },
        uid,
        gid,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

/// The attributes of a negative entry (node id 0), which the kernel keeps for the time to live.
fn negative() -> FileAttr {
    FileAttr { nlink: 0, ..new_attr(0, FileType::RegularFile, 0, 0, 0) }
}

impl NullFs {
    pub fn new(counts: std::sync::Arc<Counts>) -> NullFs {
        let root = Node {
            attr: new_attr(1, FileType::Directory, 0o755, 0, 0),
            children: BTreeMap::new(),
            by_name: HashMap::new(),
            next_pos: 1,
        };
        NullFs { tree: Mutex::new(Tree { nodes: HashMap::from([(1, root)]), next_ino: 2 }), counts }
    }

    /// Makes `name` in `parent`; EEXIST if it is there.
    fn make(&self, req: &Request, parent: INodeNo, name: &OsStr, kind: FileType, mode: u32) -> Result<FileAttr, Errno> {
        let mut t = self.tree.lock().unwrap();
        let ino = t.next_ino;
        let p = t.nodes.get_mut(&parent.0).ok_or(Errno::ENOENT)?;
        if p.by_name.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let pos = p.next_pos;
        p.next_pos += 1;
        p.children.insert(pos, (name.to_owned(), ino));
        p.by_name.insert(name.to_owned(), pos);
        if kind == FileType::Directory {
            p.attr.nlink += 1;
        }
        p.attr.mtime = SystemTime::now();
        p.attr.ctime = p.attr.mtime;
        let attr = new_attr(ino, kind, (mode & 0o7777) as u16, req.uid(), req.gid());
        t.nodes.insert(ino, Node { attr, children: BTreeMap::new(), by_name: HashMap::new(), next_pos: 1 });
        t.next_ino += 1;
        Ok(attr)
    }

    fn remove(&self, parent: INodeNo, name: &OsStr, dir: bool) -> Result<(), Errno> {
        let mut t = self.tree.lock().unwrap();
        let p = t.nodes.get(&parent.0).ok_or(Errno::ENOENT)?;
        let pos = *p.by_name.get(name).ok_or(Errno::ENOENT)?;
        let ino = p.children[&pos].1;
        let node = &t.nodes[&ino];
        match (dir, node.attr.kind == FileType::Directory) {
            (true, false) => return Err(Errno::ENOTDIR),
            (false, true) => return Err(Errno::EISDIR),
            (true, true) if !node.children.is_empty() => return Err(Errno::ENOTEMPTY),
            _ => {}
        }
        t.nodes.remove(&ino);
        let p = t.nodes.get_mut(&parent.0).ok_or(Errno::ENOENT)?;
        p.by_name.remove(name);
        p.children.remove(&pos);
        if dir {
            p.attr.nlink -= 1;
        }
        Ok(())
    }

    fn list(&self, ino: INodeNo, offset: u64) -> Result<Vec<(u64, OsString, FileAttr)>, Errno> {
        let t = self.tree.lock().unwrap();
        let d = t.nodes.get(&ino.0).ok_or(Errno::ENOENT)?;
        Ok(d.children
            .range(offset + 1..)
            .map(|(pos, (name, child))| (*pos, name.clone(), t.nodes[child].attr))
            .collect())
    }
}

fn time(t: TimeOrNow) -> SystemTime {
    match t {
        TimeOrNow::Now => SystemTime::now(),
        TimeOrNow::SpecificTime(t) => t,
    }
}

impl Filesystem for NullFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        strata::fs::fuse::ask_kernel(config);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        self.counts.add("LOOKUP");
        let t = self.tree.lock().unwrap();
        let Some(p) = t.nodes.get(&parent.0) else { return reply.error(Errno::ENOENT) };
        match p.by_name.get(name) {
            Some(pos) => reply.entry(&ttl(), &t.nodes[&p.children[pos].1].attr, Generation(0)),
            None => reply.entry(&ttl(), &negative(), Generation(0)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        self.counts.add("GETATTR");
        match self.tree.lock().unwrap().nodes.get(&ino.0) {
            Some(n) => reply.attr(&ttl(), &n.attr),
            None => reply.error(Errno::ENOENT),
        }
    }

    fn setattr(
        &self,
        _req: &Request,
        ino: INodeNo,
        mode: Option<u32>,
        uid: Option<u32>,
        gid: Option<u32>,
        size: Option<u64>,
        atime: Option<TimeOrNow>,
        mtime: Option<TimeOrNow>,
        _ctime: Option<SystemTime>,
        _fh: Option<FileHandle>,
        _crtime: Option<SystemTime>,
        _chgtime: Option<SystemTime>,
        _bkuptime: Option<SystemTime>,
        _flags: Option<fuser::BsdFileFlags>,
        reply: ReplyAttr,
    ) {
        self.counts.add("SETATTR");
        let mut t = self.tree.lock().unwrap();
        let Some(n) = t.nodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        let a = &mut n.attr;
        if uid.is_some() || gid.is_some() {
            a.uid = uid.unwrap_or(a.uid);
            a.gid = gid.unwrap_or(a.gid);
            // HANDLE_KILLPRIV_V2: a chown of a file clears its set-id bits here.
            if a.kind == FileType::RegularFile && mode.is_none() {
                a.perm &= !0o6000;
            }
        }
        if let Some(m) = mode {
            a.perm = (m & 0o7777) as u16;
        }
        if let Some(s) = size {
            a.size = s;
        }
        if let Some(t) = atime {
            a.atime = time(t);
        }
        if let Some(t) = mtime {
            a.mtime = time(t);
        }
        a.ctime = SystemTime::now();
        reply.attr(&ttl(), a);
    }

    fn mkdir(&self, req: &Request, parent: INodeNo, name: &OsStr, mode: u32, umask: u32, reply: ReplyEntry) {
        self.counts.add("MKDIR");
        match self.make(req, parent, name, FileType::Directory, mode & !umask) {
            Ok(a) => reply.entry(&ttl(), &a, Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    fn unlink(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counts.add("UNLINK");
        match self.remove(parent, name, false) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn rmdir(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEmpty) {
        self.counts.add("RMDIR");
        match self.remove(parent, name, true) {
            Ok(()) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        self.counts.add("OPEN");
        reply.opened(FileHandle(0), FopenFlags::FOPEN_DIRECT_IO);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        self.counts.add("OTHER");
        let len = match self.tree.lock().unwrap().nodes.get(&ino.0) {
            Some(n) => n.attr.size.saturating_sub(offset).min(size as u64) as usize,
            None => return reply.error(Errno::ENOENT),
        };
        reply.data(&vec![0; len]);
    }

    fn write(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        data: &[u8],
        _write_flags: WriteFlags,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyWrite,
    ) {
        self.counts.add("WRITE");
        let mut t = self.tree.lock().unwrap();
        let Some(n) = t.nodes.get_mut(&ino.0) else { return reply.error(Errno::ENOENT) };
        n.attr.size = n.attr.size.max(offset + data.len() as u64);
        n.attr.mtime = SystemTime::now();
        n.attr.ctime = n.attr.mtime;
        reply.written(data.len() as u32);
    }

    fn flush(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _lock_owner: LockOwner, reply: ReplyEmpty) {
        // As Strata: "not implemented" tells the kernel never to send FLUSH again.
        self.counts.add("FLUSH");
        reply.error(Errno::ENOSYS);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.counts.add("RELEASE");
        reply.ok();
    }

    fn fsync(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _datasync: bool, reply: ReplyEmpty) {
        self.counts.add("OTHER");
        reply.ok();
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // As Strata where the kernel allows it: no OPENDIR or RELEASEDIR again.
        self.counts.add("OPEN");
        reply.error(Errno::ENOSYS);
    }

    fn readdir(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectory) {
        self.counts.add("READDIR");
        match self.list(ino, offset) {
            Ok(entries) => {
                for (pos, name, attr) in entries {
                    if reply.add(attr.ino, pos, attr.kind, &name) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdirplus(&self, _req: &Request, ino: INodeNo, _fh: FileHandle, offset: u64, mut reply: ReplyDirectoryPlus) {
        self.counts.add("READDIR");
        match self.list(ino, offset) {
            Ok(entries) => {
                for (pos, name, attr) in entries {
                    if reply.add(attr.ino, pos, &name, &ttl(), &attr, Generation(0)) {
                        break;
                    }
                }
                reply.ok();
            }
            Err(e) => reply.error(e),
        }
    }

    fn releasedir(&self, _req: &Request, _ino: INodeNo, _fh: FileHandle, _flags: OpenFlags, reply: ReplyEmpty) {
        self.counts.add("RELEASE");
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        self.counts.add("OTHER");
        reply.statfs(1 << 30, 1 << 30, 1 << 30, 1 << 30, 1 << 30, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, _ino: INodeNo, _name: &OsStr, _size: u32, reply: ReplyXattr) {
        self.counts.add("GETXATTR");
        reply.error(Errno::ENODATA);
    }

    fn listxattr(&self, _req: &Request, _ino: INodeNo, size: u32, reply: ReplyXattr) {
        self.counts.add("OTHER");
        if size == 0 { reply.size(0) } else { reply.data(&[]) }
    }

    fn create(
        &self,
        req: &Request,
        parent: INodeNo,
        name: &OsStr,
        mode: u32,
        umask: u32,
        _flags: i32,
        reply: ReplyCreate,
    ) {
        self.counts.add("CREATE");
        match self.make(req, parent, name, FileType::RegularFile, mode & !umask) {
            Ok(a) => reply.created(&ttl(), &a, Generation(0), FileHandle(0), FopenFlags::FOPEN_DIRECT_IO),
            Err(e) => reply.error(e),
        }
    }
}
