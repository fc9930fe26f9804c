//! FUSE passthrough bookkeeping: how each open file of an inode is served.
//!
//! The kernel's rules: while any file of an inode is open in passthrough mode, every open of
//! that inode must pass through to the same backing file (`mmap` always maps the backing file,
//! even with direct I/O), and no cached-mode open may exist beside them (nor the reverse).
//! Hence Strata never registers a lower file as backing on a writable mount: a later write
//! open after copy-up would have to map the lower file. Lower files use the page cache instead
//! (it outlives opens: they never change), upper files pass through, and an inode whose cached
//! opens predate its copy-up stays cached until they close. A write never reaches a lower
//! layer. Generic over the backing token so it is testable without a kernel.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

use super::layers::LayerIdx;

/// How one open file is served.
#[derive(Debug)]
pub enum Mode<T> {
    /// Through the kernel to this backing file.
    Passthrough(Arc<T>),
    /// By the daemon, bypassing the page cache (another backing file is registered).
    DirectIo,
    /// By the daemon through the page cache (passthrough unavailable).
    Cached,
}

/// The io mode of an inode, as the kernel holds it.
enum Entry<T> {
    /// Files open in passthrough mode to this backing file, in this layer.
    Backed { backing: Arc<T>, layer: LayerIdx, opens: usize },
    /// Files open in cached mode.
    Cached { opens: usize },
}

/// Backing files registered per inode, and the mode of each open file handle.
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

    /// Decides how handle `fh` of inode `ino`, whose real file is in `layer`, is served.
    /// `may_back` says whether that file may become the backing file (an upper file, or any
    /// file of a read-only mount); `register` makes the token (an error: cached mode for good).
    pub fn open<E>(
        &self,
        ino: u64,
        fh: u64,
        layer: LayerIdx,
        may_back: bool,
        register: impl FnOnce() -> Result<T, E>,
    ) -> Mode<T> {
        if !self.enabled() {
            return Mode::Cached;
        }
        let mut inodes = self.inodes.lock();
        let mode = match inodes.get_mut(&ino) {
            Some(Entry::Backed { backing, layer: l, opens }) if *l == layer => {
                *opens += 1;
                Mode::Passthrough(backing.clone())
            }
            // Another backing file: impossible without a write reaching it; should not happen
            // (only upper files back a writable mount), but never pass through then.
            Some(Entry::Backed { .. }) => return Mode::DirectIo,
            Some(Entry::Cached { opens }) => {
                *opens += 1;
                Mode::Cached
            }
            None if !may_back => {
                inodes.insert(ino, Entry::Cached { opens: 1 });
                Mode::Cached
            }
            None => match register() {
                Ok(t) => {
                    let backing = Arc::new(t);
                    inodes.insert(ino, Entry::Backed { backing: backing.clone(), layer, opens: 1 });
                    Mode::Passthrough(backing)
                }
                Err(_) => {
                    drop(inodes);
                    self.disable();
                    return Mode::Cached;
                }
            },
        };
        self.handles.lock().insert(fh, ino);
        mode
    }

    /// Handle `fh` was released; the inode's backing goes with its last passthrough file.
    pub fn release(&self, fh: u64) {
        let Some(ino) = self.handles.lock().remove(&fh) else { return };
        let mut inodes = self.inodes.lock();
        let last = match inodes.get_mut(&ino) {
            Some(Entry::Backed { opens, .. }) | Some(Entry::Cached { opens }) => {
                *opens -= 1;
                *opens == 0
            }
            None => false,
        };
        if last {
            inodes.remove(&ino);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode_name<T>(m: &Mode<T>) -> &'static str {
        match m {
            Mode::Passthrough(_) => "passthrough",
            Mode::DirectIo => "direct-io",
            Mode::Cached => "cached",
        }
    }

    #[test]
    fn a_lower_file_is_never_a_backing_file_of_a_writable_mount() {
        let b: Backings<&'static str> = Backings::new(true);
        // exec 3< f: a reader of the lower file (layer 2) is served through the page cache.
        assert_eq!(mode_name(&b.open(7, 1, 2, false, || Ok::<_, ()>("lower"))), "cached");
        // echo x > f: after copy-up the writer joins the inode's cached mode.
        assert_eq!(mode_name(&b.open(7, 2, 0, true, || Ok::<_, ()>("upper"))), "cached");
        b.release(2);
        b.release(1);
        // Once they are closed, the upper copy becomes the backing file.
        match b.open(7, 3, 0, true, || Ok::<_, ()>("upper")) {
            Mode::Passthrough(t) => assert_eq!(*t, "upper"),
            m => panic!("{}", mode_name(&m)),
        }
    }

    #[test]
    fn refused_registration_falls_back_to_cached_mode_for_good() {
        let b: Backings<u32> = Backings::new(true);
        assert_eq!(mode_name(&b.open(1, 1, 0, true, || Err("EPERM"))), "cached");
        assert_eq!(mode_name(&b.open(2, 2, 0, true, || Ok::<_, ()>(5))), "cached");
        assert!(!b.enabled());
    }

    #[test]
    fn opens_of_one_layer_share_one_backing_until_the_last_release() {
        let b: Backings<u32> = Backings::new(true);
        let mut made = 0;
        for fh in 1..=3 {
            b.open(9, fh, 1, true, || {
                made += 1;
                Ok::<_, ()>(made)
            });
        }
        assert_eq!(made, 1);
        b.release(1);
        b.release(2);
        assert!(matches!(b.open(9, 4, 1, true, || Ok::<_, ()>(99)), Mode::Passthrough(t) if *t == 1));
    }
}
