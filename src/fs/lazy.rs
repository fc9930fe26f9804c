//! Lower layers whose file contents arrive on first use (lazy images).
//!
//! A lazy layer is an ordinary layer directory made from a table of contents: every name,
//! mode, owner, link and xattr is there, but a regular file whose content has not been fetched
//! is a hole of the right size marked with [`LAZY_XATTR`] (its name in the TOC). The layer's
//! root carries [`LAYER_XATTR`], which says where the content is; a [`Fetcher`] made from it
//! fills a marked file the first time the mount opens it for data (a read, an exec, a copy-up),
//! then drops the mark, so nothing is fetched twice and a crash halfway fetches the file again.
//! Metadata operations never wait for the network.
//!
//! The filesystem does not know registries: the program installs a [`Factory`] at start
//! (`cli` → `registry`), the floor below only asks it for a fetcher per lazy layer.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, OnceLock};

use rustix::fs::{Mode, OFlags};
use rustix::io::Errno;

use crate::sys::{fd, xattr};

/// On a file of a lazy layer whose content is not here yet: its name in the layer's TOC.
pub const LAZY_XATTR: &str = "user.strata.lazy";
/// On a lazy layer's root: where its content is (for the [`Factory`]).
pub const LAYER_XATTR: &str = "user.strata.lazy-layer";

/// Brings a lazy layer's file contents.
pub trait Fetcher: Send + Sync + std::fmt::Debug {
    /// Writes the whole content of the file named `name` in the TOC into `file` (open for
    /// writing, already of the right size). An error is logged by the fetcher, in one line.
    fn fill(&self, file: &File, name: &[u8]) -> Result<(), Errno>;

    /// The files to fetch in the background once mounted, in order (empty: none).
    fn background(&self) -> Vec<String>;
}

/// Makes the fetcher of a lazy layer from its root's [`LAYER_XATTR`] value and its root.
pub type Factory = dyn Fn(&[u8], BorrowedFd<'_>) -> anyhow::Result<Arc<dyn Fetcher>> + Send + Sync;

static FACTORY: OnceLock<Box<Factory>> = OnceLock::new();

/// Installs the factory (once, at program start).
pub fn install(factory: Box<Factory>) {
    let _ = FACTORY.set(factory);
}

/// The fetcher of the layer whose root is `root`, when it is lazy.
pub fn fetcher_for(root: BorrowedFd<'_>) -> anyhow::Result<Option<Arc<dyn Fetcher>>> {
    let Some(mark) = xattr::get(root, None, OsStr::new(LAYER_XATTR)).ok().flatten() else {
        return Ok(None);
    };
    let factory = FACTORY.get().ok_or_else(|| anyhow::anyhow!("this program cannot fetch lazy layers"))?;
    factory(&mark, root).map(Some)
}

/// Fetches every file `fetcher` names, in its order, on a thread of its own (a mount's
/// background fetch: a lazily started image ends up whole here). A file that fails is left for
/// its first use to try again.
pub fn spawn_background(root: OwnedFd, fetcher: Arc<dyn Fetcher>) {
    let names = fetcher.background();
    if names.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new().name("strata-lazy".into()).spawn(move || {
        let mut failed = 0;
        for name in &names {
            let path = Path::new(name);
            let (Some(parent), Some(file)) = (path.parent(), path.file_name()) else { continue };
            let done = fd::open_dir(root.as_fd(), parent).and_then(|dir| ensure(fetcher.as_ref(), dir.as_fd(), file));
            if let Err(e) = done {
                failed += 1;
                log::debug!("background fetch of /{name}: {e}");
            }
        }
        log::info!("lazy layer: background fetch done ({} files, {failed} failed)", names.len());
    });
    if let Err(e) = spawned {
        log::warn!("lazy layer: no background fetch: {e}");
    }
}

/// Files being filled, by (device, inode): a second opener waits for the first fill.
static FILLING: OnceLock<Filling> = OnceLock::new();

/// (device, inode) of the files being filled, and the wake-up of those waiting for one.
type Filling = (Mutex<HashSet<(u64, u64)>>, Condvar);

/// Makes sure `dir/name` (a regular file of a lazy layer) has its content.
pub fn ensure(fetcher: &dyn Fetcher, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let probe = File::from(fd::open_at(dir, name, OFlags::PATH | OFlags::NOFOLLOW, Mode::empty())?);
    if !is_marked(probe.as_fd())? {
        return Ok(());
    }
    let st = fd::stat_fd(probe.as_fd())?;
    let key = (st.st_dev, st.st_ino);
    let (lock, cv) = FILLING.get_or_init(|| (Mutex::new(HashSet::new()), Condvar::new()));
    {
        let mut busy = lock.lock().map_err(|_| Errno::IO)?;
        while busy.contains(&key) {
            busy = cv.wait(busy).map_err(|_| Errno::IO)?;
        }
        busy.insert(key);
    }
    let done = fill(fetcher, dir, name);
    let mut busy = lock.lock().map_err(|_| Errno::IO)?;
    busy.remove(&key);
    cv.notify_all();
    done
}

fn is_marked(file: BorrowedFd<'_>) -> Result<bool, Errno> {
    match xattr::get(file, None, OsStr::new(LAZY_XATTR)) {
        Ok(v) => Ok(v.is_some()),
        Err(Errno::OPNOTSUPP) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Fills a marked file (checked again under the lock: another opener may have done it).
fn fill(fetcher: &dyn Fetcher, dir: BorrowedFd<'_>, name: &OsStr) -> Result<(), Errno> {
    let file = File::from(fd::open_at(dir, name, OFlags::RDWR | OFlags::NOFOLLOW, Mode::empty())?);
    let Some(toc_name) = xattr::get(file.as_fd(), None, OsStr::new(LAZY_XATTR))? else {
        return Ok(());
    };
    fetcher.fill(&file, &toc_name)?;
    file.sync_data().map_err(|_| Errno::IO)?;
    xattr::remove(file.as_fd(), None, OsStr::new(LAZY_XATTR))?;
    Ok(())
}

/// Where opens of lower files are recorded (`STRATA_RECORD_OPENS`, set by `convert
/// --prefetch-from` for the container it runs): one path per line, in order.
static RECORD: OnceLock<Option<Mutex<File>>> = OnceLock::new();

fn record() -> &'static Option<Mutex<File>> {
    RECORD.get_or_init(|| {
        let to = std::env::var_os("STRATA_RECORD_OPENS")?;
        std::fs::OpenOptions::new().append(true).create(true).open(to).ok().map(Mutex::new)
    })
}

/// Whether opens are recorded (see [`record_open`]).
pub fn recording() -> bool {
    record().is_some()
}

/// Records that the file at `path` (from the mount's root) was opened for its content.
pub fn record_open(path: &Path) {
    if let Some(f) = record()
        && let Ok(mut f) = f.lock()
    {
        use std::io::Write;
        let mut line = path.as_os_str().as_encoded_bytes().to_vec();
        line.push(b'\n');
        let _ = f.write_all(&line);
    }
}
