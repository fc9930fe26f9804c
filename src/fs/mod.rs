//! The union filesystem: a merged view of ordered layers with kernel-overlayfs semantics.
//!
//! [`Overlay`] holds the core; every operation is a plain method returning
//! `Result<T, Errno>`, called by the thin FUSE adapter in [`fuse`] and directly by unit tests.
//! The methods are spread over files by concern: [`lookup`] (resolving names through layers),
//! [`readdir`] (merged listings), [`copyup`] (atomic copy-up), [`create`], [`remove`], [`rename`] (namespace changes),
//! [`attr`] (getattr/setattr), [`xattrs`], [`handles`] (open files and their I/O), [`hardlinks`]
//! (the other names of a lower file at its copy-up).

pub mod acl;
pub mod attr;
pub mod copyup;
pub mod create;
pub mod dircache;
pub mod fuse;
pub mod handles;
pub mod hardlinks;
pub mod inode;
pub mod layers;
pub mod lazy;
pub mod lookup;
pub mod options;
pub mod passthrough;
pub mod readdir;
pub mod remove;
pub mod rename;
pub mod session;
#[cfg(test)]
mod tests;
pub mod whiteout;
pub mod xattrs;

use std::ffi::OsString;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::RwLock;

pub use crate::sys::{Errno, Result};
use handles::HandleTable;
use inode::{DirLayer, InodeTable, Src};
use layers::Stack;

/// Who asks: the caller's credentials from the FUSE request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ctx {
    /// Caller's uid.
    pub uid: u32,
    /// Caller's gid.
    pub gid: u32,
    /// Caller's pid.
    pub pid: u32,
    /// Caller's umask, applied to new objects unless the parent directory has a default ACL.
    pub umask: u32,
}

impl Ctx {
    /// Whether the caller is in group `gid`: its own group, or one of its supplementary groups
    /// (read from `/proc`, so asked only when it matters).
    pub fn in_group(&self, gid: u32) -> bool {
        gid == self.gid
            || std::fs::read_to_string(format!("/proc/{}/status", self.pid)).is_ok_and(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Groups:"))
                    .is_some_and(|groups| groups.split_whitespace().any(|g| g.parse() == Ok(gid)))
            })
    }

    /// Root (for tests and internal work).
    pub const ROOT: Ctx = Ctx { uid: 0, gid: 0, pid: 0, umask: 0 };
}

/// Tunables of a mount.
#[derive(Clone, Debug)]
pub struct Config {
    /// How long the kernel may cache names and attributes.
    pub ttl: Duration,
    /// Print one line per copy-up, whiteout and opaque-dir event.
    pub trace: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config { ttl: Duration::from_secs(86400), trace: false }
    }
}

/// A place where a test makes copy-up fail on purpose.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FaultPoint {
    /// After the first chunk of data is written to the temp file.
    MidData,
    /// After the temp file is complete, before it is renamed into the upper dir.
    BeforeRename,
}

/// Tells the kernel that cached facts about a node are stale (the FUSE adapter provides it).
pub trait Invalidate: Send + Sync {
    /// The attributes of node `ino` changed behind the kernel's back.
    fn attr(&self, ino: u64);
    /// Asks the kernel to drop its cached entry `name` in `parent` (it forgets the node later).
    fn entry(&self, parent: u64, name: &std::ffi::OsStr);
}

/// The merged filesystem.
pub struct Overlay {
    /// The layers.
    pub stack: Stack,
    /// Nodes the kernel knows.
    pub inodes: InodeTable,
    /// Open files and directories.
    pub handles: HandleTable,
    /// Read for operations that resolve names, write for those that change names.
    tree: RwLock<()>,
    /// Counts changes of what names resolve to (namespace operations, copy-ups): a listing
    /// taken at one count still tells where each name is while the count stays.
    generation: AtomicU64,
    /// Open directories of the layers.
    dirs: dircache::DirCache,
    /// Recent merged listings (READDIR needs no handle).
    listings: readdir::Listings,
    /// Serialises directory copy-ups (short: mkdir, attributes, rename).
    dir_copy: parking_lot::Mutex<()>,
    tmp_seq: AtomicU64,
    /// The process id in temp names (read once).
    pid: u32,
    /// Per layer: a reflink from it into the upper dir failed (another filesystem, or one
    /// without reflinks), so copy-ups from it go straight to `copy_file_range`.
    no_reflink: Vec<std::sync::atomic::AtomicBool>,
    /// Tunables.
    pub config: Config,
    fault: parking_lot::Mutex<Option<FaultPoint>>,
    /// Whether the daemon may give objects to other owners (root, or root in a user namespace).
    privileged: bool,
    /// The daemon's own umask, which the upper filesystem applies to what Strata creates.
    own_umask: u32,
    /// The daemon's effective uid and gid: the owner the upper filesystem gives what it creates.
    own_ids: (u32, u32),
    invalidate: std::sync::OnceLock<Box<dyn Invalidate>>,
}

impl Overlay {
    /// Builds the merged view over a prepared stack.
    pub fn new(stack: Stack, config: Config) -> Result<Overlay> {
        let n_layers = stack.layers.len();
        let mut root_layers = Vec::new();
        for (i, layer) in stack.layers.iter().enumerate() {
            let marks = whiteout::dir_marks(layer.fd())?;
            root_layers.push(DirLayer::new(i as layers::LayerIdx, marks.xwhiteouts, std::path::Path::new("")));
        }
        // The root reports the inode number of the top layer's root, as kernel overlayfs does.
        let top = stack.layers.first().ok_or(Errno::INVAL)?;
        let root_ino = stack.compose_ino(0, crate::sys::fd::stat_fd(top.fd())?.st_ino);
        let ov = Overlay {
            inodes: InodeTable::new(Src::Dir(root_layers), root_ino),
            stack,
            handles: HandleTable::default(),
            tree: RwLock::new(()),
            generation: AtomicU64::new(0),
            dirs: dircache::DirCache::default(),
            listings: readdir::Listings::default(),
            dir_copy: parking_lot::Mutex::new(()),
            tmp_seq: AtomicU64::new(0),
            pid: std::process::id(),
            no_reflink: (0..n_layers).map(|_| Default::default()).collect(),
            config,
            fault: parking_lot::Mutex::new(None),
            privileged: rustix::process::geteuid().is_root(),
            own_umask: crate::sys::creds::current_umask(),
            own_ids: (rustix::process::geteuid().as_raw(), rustix::process::getegid().as_raw()),
            invalidate: std::sync::OnceLock::new(),
        };
        ov.finish_pending_links();
        Ok(ov)
    }

    /// Connects the kernel cache invalidation (once the FUSE session exists).
    pub fn set_invalidator(&self, inv: Box<dyn Invalidate>) {
        let _ = self.invalidate.set(inv);
    }

    /// Keeps the inode table near `keep` nodes: asks the kernel to drop the entries of the least
    /// recently used ones, which it then forgets. Call from a thread of its own, never from a
    /// request handler (the kernel takes the parent directory's lock). Returns how many it asked.
    pub fn shrink_kernel_cache(&self, keep: usize) -> usize {
        let Some(inv) = self.invalidate.get() else { return 0 };
        let victims = self.inodes.eviction_candidates(keep);
        for (parent, name) in &victims {
            inv.entry(*parent, name);
        }
        victims.len()
    }

    /// Drops the kernel's cached attributes of `ino` (after a copy-up changed them).
    fn attr_changed(&self, ino: u64) {
        if let Some(inv) = self.invalidate.get() {
            inv.attr(ino);
        }
    }

    /// Makes the next copy-up fail at `point` (for tests of atomicity).
    pub fn inject_fault(&self, point: FaultPoint) {
        *self.fault.lock() = Some(point);
    }

    fn take_fault(&self, point: FaultPoint) -> Result<()> {
        let mut f = self.fault.lock();
        if *f == Some(point) {
            *f = None;
            return Err(Errno::IO);
        }
        Ok(())
    }

    /// Takes the tree lock for a change of names (and counts the change).
    fn change_tree(&self) -> parking_lot::RwLockWriteGuard<'_, ()> {
        let guard = self.tree.write();
        self.changed();
        guard
    }

    /// Counts a change of what names resolve to.
    fn changed(&self) {
        self.generation.fetch_add(1, Ordering::AcqRel);
    }

    /// The current change count.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// A fresh name for a temp object in the work dir.
    fn tmp_name(&self) -> OsString {
        let n = self.tmp_seq.fetch_add(1, Ordering::Relaxed);
        OsString::from(format!("#strata-{}-{n}", self.pid))
    }

    /// Whether reflinks from layer `idx` are known to fail.
    fn no_reflink(&self, idx: layers::LayerIdx) -> bool {
        self.no_reflink.get(idx as usize).is_some_and(|f| f.load(Ordering::Relaxed))
    }

    /// Remembers that a reflink from layer `idx` failed.
    fn reflink_failed(&self, idx: layers::LayerIdx) {
        if let Some(f) = self.no_reflink.get(idx as usize) {
            f.store(true, Ordering::Relaxed);
        }
    }

    /// Prints a trace line when `--trace` is on.
    fn trace(&self, what: std::fmt::Arguments<'_>) {
        if self.config.trace {
            eprintln!("strata: {what}");
        }
    }
}
