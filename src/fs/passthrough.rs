//! FUSE passthrough bookkeeping: which backing file each inode's open files use.
//!
//! The kernel's rules: while any file of an inode is open in passthrough mode, every open of
//! that inode must pass through to the same backing file (`mmap` always maps the backing file,
//! even with direct I/O), and no cached-mode open may exist beside them. So when an object was
//! copied up while files of its kernel inode still pass through to the lower file, a new open
//! — which must use the upper copy — cannot be served on that inode: it is a [`Mode::Conflict`],
//! and the caller gives the object a new kernel inode (see `InodeTable::renumber`). Files opened
//! before the copy-up keep reading the lower file, as with kernel overlayfs; no write ever
//! reaches a lower layer. Generic over the backing token so it is testable without a kernel.
//!
//! Files whose writes must clear their set-user-ID or set-group-ID bit (see
//! [`write_kills_privs`]) are never passed through: Strata clears those bits itself
//! (`FUSE_HANDLE_KILLPRIV_V2`) when the kernel sends it the write, and a passthrough write never
//! reaches Strata. An inode keeps one mode while it has open files: a cached open beside
//! passthrough ones is a conflict too, and opens beside cached ones are cached.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::layers::LayerIdx;

/// How one open file is served.
#[derive(Debug)]
pub enum Mode<T> {
    /// Through the kernel to this backing file.
    Passthrough(Arc<T>),
    /// The inode passes through to a file of another layer: serve this open on a new inode.
    Conflict,
    /// By the daemon through the page cache (passthrough unavailable).
    Cached,
}

struct Entry<T> {
    /// `None`: the inode's files are open in cached mode.
    backing: Option<Arc<T>>,
    layer: LayerIdx,
    opens: usize,
}

/// Backing files registered per kernel inode (node id), and the inode of each open handle.
pub struct Backings<T> {
    enabled: Mutex<bool>,
    inodes: Mutex<HashMap<u64, Entry<T>>>,
    handles: Mutex<HashMap<u64, u64>>,
}

impl<T> Backings<T> {
    /// A table; `enabled` is false when the kernel did not grant passthrough.
    pub fn new(enabled: bool) -> Backings<T> {
        Backings {
            enabled: Mutex::new(enabled),
            inodes: Mutex::new(HashMap::new()),
            handles: Mutex::new(HashMap::new()),
        }
    }

    /// Whether passthrough is in use.
    pub fn enabled(&self) -> bool {
        *self.enabled.lock()
    }

    /// Turns passthrough off (registering a backing file was refused, e.g. without CAP_SYS_ADMIN).
    pub fn disable(&self) {
        *self.enabled.lock() = false;
    }

    /// Decides how handle `fh` of node `nodeid`, whose real file is in `layer`, is served;
    /// `privileged`: its writes must clear suid/sgid (served in cached mode).
    /// `register` makes a backing token when none is registered yet (an error: cached mode for good).
    pub fn open<E>(
        &self,
        nodeid: u64,
        fh: u64,
        layer: LayerIdx,
        privileged: bool,
        register: impl FnOnce() -> Result<T, E>,
    ) -> Mode<T> {
        if !self.enabled() {
            return Mode::Cached;
        }
        let mut inodes = self.inodes.lock();
        let mode = match inodes.get_mut(&nodeid) {
            Some(e) if e.backing.is_none() => {
                e.opens += 1;
                Mode::Cached
            }
            Some(e) if e.layer == layer && !privileged => {
                e.opens += 1;
                Mode::Passthrough(e.backing.clone().expect("checked above"))
            }
            Some(_) => return Mode::Conflict,
            None if privileged => {
                inodes.insert(nodeid, Entry { backing: None, layer, opens: 1 });
                Mode::Cached
            }
            None => match register() {
                Ok(t) => {
                    let backing = Arc::new(t);
                    inodes.insert(nodeid, Entry { backing: Some(backing.clone()), layer, opens: 1 });
                    Mode::Passthrough(backing)
                }
                Err(_) => {
                    drop(inodes);
                    self.disable();
                    return Mode::Cached;
                }
            },
        };
        self.handles.lock().insert(fh, nodeid);
        mode
    }

    /// Handle `fh` was released; the inode's backing goes with its last passthrough file.
    pub fn release(&self, fh: u64) {
        let Some(nodeid) = self.handles.lock().remove(&fh) else { return };
        let mut inodes = self.inodes.lock();
        if let Some(e) = inodes.get_mut(&nodeid) {
            e.opens -= 1;
            if e.opens == 0 {
                inodes.remove(&nodeid);
            }
        }
    }
}

/// Whether a write by a caller without `CAP_FSETID` may have to clear a bit of `mode` (a
/// regular file's): set-user-ID, or set-group-ID.
pub fn write_kills_privs(mode: u32) -> bool {
    mode & libc::S_IFMT == libc::S_IFREG && mode & (libc::S_ISUID | libc::S_ISGID) != 0
}

/// `mode` without the bits a write by a caller without `CAP_FSETID` clears (the VFS rule):
/// set-user-ID always; set-group-ID when group-executable, or when the caller is not in the
/// file's group (`in_group`, asked only then).
pub fn killed_privs(mode: u32, in_group: impl FnOnce() -> bool) -> u32 {
    let mut m = mode & !libc::S_ISUID;
    if mode & libc::S_ISGID != 0 && (mode & libc::S_IXGRP != 0 || !in_group()) {
        m &= !libc::S_ISGID;
    }
    m
}

/// The mode a write by `caller` (without `CAP_FSETID`) leaves the file of stat `st` with, when
/// it clears a bit of it.
pub fn mode_after_write(st: &rustix::fs::Stat, caller: &super::Ctx) -> Option<u32> {
    if !write_kills_privs(st.st_mode) {
        return None;
    }
    let new = killed_privs(st.st_mode, || caller.in_group(st.st_gid));
    (new != st.st_mode).then_some(new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_name<T>(m: &Mode<T>) -> &'static str {
        match m {
            Mode::Passthrough(_) => "passthrough",
            Mode::Conflict => "conflict",
            Mode::Cached => "cached",
        }
    }

    #[test]
    fn an_inode_passing_through_to_a_lower_file_cannot_serve_the_upper_copy() {
        let b: Backings<&'static str> = Backings::new(true);
        // exec 3< f: a reader passes through to the lower file (layer 2).
        assert_eq!(mode_name(&b.open(7, 1, 2, false, || Ok::<_, ()>("lower"))), "passthrough");
        // echo x > f: after copy-up the writer needs the upper copy: not on this inode.
        assert_eq!(mode_name(&b.open(7, 2, 0, false, || Ok::<_, ()>("upper"))), "conflict");
        // On a new inode (another node id) it passes through to the upper copy.
        match b.open(8, 3, 0, false, || Ok::<_, ()>("upper")) {
            Mode::Passthrough(t) => assert_eq!(*t, "upper"),
            m => panic!("{}", mode_name(&m)),
        }
        b.release(1);
        // Once the old reader is gone, the old inode may pass through to the upper copy too.
        assert_eq!(mode_name(&b.open(7, 4, 0, false, || Ok::<_, ()>("upper"))), "passthrough");
    }

    #[test]
    fn refused_registration_falls_back_to_cached_mode_for_good() {
        let b: Backings<u32> = Backings::new(true);
        assert_eq!(mode_name(&b.open(1, 1, 0, false, || Err("EPERM"))), "cached");
        assert_eq!(mode_name(&b.open(2, 2, 0, false, || Ok::<_, ()>(5))), "cached");
        assert!(!b.enabled());
    }

    #[test]
    fn opens_of_one_layer_share_one_backing_until_the_last_release() {
        let b: Backings<u32> = Backings::new(true);
        let mut made = 0;
        for fh in 1..=3 {
            b.open(9, fh, 1, false, || {
                made += 1;
                Ok::<_, ()>(made)
            });
        }
        assert_eq!(made, 1);
        b.release(1);
        b.release(2);
        assert!(matches!(b.open(9, 4, 1, false, || Ok::<_, ()>(99)), Mode::Passthrough(t) if *t == 1));
    }

    #[test]
    fn files_whose_writes_clear_suid_or_sgid_are_served_in_cached_mode() {
        let b: Backings<u32> = Backings::new(true);
        // A suid file: cached; the inode stays cached while it is open, even for other opens.
        assert_eq!(mode_name(&b.open(5, 1, 0, true, || Ok::<_, ()>(1))), "cached");
        assert_eq!(mode_name(&b.open(5, 2, 0, false, || Ok::<_, ()>(2))), "cached");
        b.release(1);
        b.release(2);
        // Once closed, an ordinary file passes through; a suid open beside it is a conflict.
        assert_eq!(mode_name(&b.open(5, 3, 0, false, || Ok::<_, ()>(3))), "passthrough");
        assert_eq!(mode_name(&b.open(5, 4, 0, true, || Ok::<_, ()>(4))), "conflict");
        assert!(b.enabled());
        assert!(write_kills_privs(libc::S_IFREG | 0o4755));
        assert!(write_kills_privs(libc::S_IFREG | 0o2755));
        assert!(write_kills_privs(libc::S_IFREG | 0o2745));
        assert!(!write_kills_privs(libc::S_IFREG | 0o755));
        assert!(!write_kills_privs(libc::S_IFDIR | 0o4755));
        assert_eq!(killed_privs(0o6755, || true), 0o755);
        assert_eq!(killed_privs(0o6745, || true), 0o2745, "sgid without group exec, caller in the group");
        assert_eq!(killed_privs(0o6745, || false), 0o745);
    }
}
