//! Test helpers: layer builders, real mounts (Strata and kernel overlayfs), operations run on a
//! mount with their outcome as a comparable value, tree snapshots, and real OCI registries.

#![allow(dead_code)]

pub mod container;
pub mod debian;
pub mod engines;
pub mod ops;
pub mod registry;
pub mod store;
pub mod tree;
pub mod uring;

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(unused_imports)]
pub use ops::{Op, run_op};
#[allow(unused_imports)]
pub use tree::{Snapshot, snapshot};

/// The strata binary under test.
pub fn strata() -> &'static str {
    env!("CARGO_BIN_EXE_strata")
}

/// Whether this test may run: root is required. Off CI the test is skipped (returns false);
/// with `CI=true` a missing privilege fails the test.
pub fn require_root(test: &str) -> bool {
    if rustix::process::geteuid().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("{test}: needs root, and CI=true forbids skipping");
    }
    eprintln!("{test}: skipped (needs root)");
    false
}

/// One entry of a layer, created by [`build_layer`].
#[derive(Clone, Debug)]
pub enum Entry {
    /// A directory (parents are made 0755).
    Dir(&'static str, u32),
    /// A regular file with content and mode.
    File(String, Vec<u8>, u32),
    /// A symlink: path, target.
    Symlink(String, String),
    /// A kernel-format whiteout (char device 0/0).
    Whiteout(String),
    /// An AUFS/OCI whiteout file `.wh.NAME` for this path.
    WhFile(String),
    /// Marks a directory opaque with `trusted.overlay.opaque=y`.
    Opaque(String),
    /// Marks a directory opaque with a `.wh..wh..opq` file.
    OpaqueFile(String),
    /// A hardlink: new path, existing path.
    Hardlink(String, String),
    /// A FIFO.
    Fifo(String),
    /// A character device (major, minor).
    CharDev(String, u32, u32),
    /// An xattr: path, name, value.
    Xattr(String, String, Vec<u8>),
    /// Owner of a path (lchown).
    Owner(String, u32, u32),
    /// A regular file (mode 0644) at a path that may be longer than `PATH_MAX`: made one
    /// directory at a time, relative to the one before.
    DeepFile(String, Vec<u8>),
}

/// Shorthand for a file entry with mode 0644.
pub fn file(path: &str, content: &str) -> Entry {
    Entry::File(path.into(), content.as_bytes().to_vec(), 0o644)
}

fn parents(root: &Path, path: &str) {
    if let Some(p) = Path::new(path).parent() {
        std::fs::create_dir_all(root.join(p)).unwrap();
    }
}

/// Creates `entries` under `root` (in order).
pub fn build_layer(root: &Path, entries: &[Entry]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(root).unwrap();
    for e in entries {
        match e {
            Entry::Dir(p, mode) => {
                std::fs::create_dir_all(root.join(p)).unwrap();
                std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::File(p, data, mode) => {
                parents(root, p);
                std::fs::write(root.join(p), data).unwrap();
                std::fs::set_permissions(root.join(p), std::fs::Permissions::from_mode(*mode)).unwrap();
            }
            Entry::Symlink(p, t) => {
                parents(root, p);
                std::os::unix::fs::symlink(t, root.join(p)).unwrap();
            }
            Entry::Whiteout(p) => {
                parents(root, p);
                rustix::fs::mknodat(
                    rustix::fs::CWD,
                    root.join(p),
                    rustix::fs::FileType::CharacterDevice,
                    rustix::fs::Mode::empty(),
                    0,
                )
                .unwrap();
            }
            Entry::WhFile(p) => {
                parents(root, p);
                let path = Path::new(p);
                let name = format!(".wh.{}", path.file_name().unwrap().to_string_lossy());
                std::fs::write(root.join(path.parent().unwrap()).join(name), b"").unwrap();
            }
            Entry::Opaque(p) => {
                std::fs::create_dir_all(root.join(p)).unwrap();
                rustix::fs::lsetxattr(root.join(p), "trusted.overlay.opaque", b"y", rustix::fs::XattrFlags::empty())
                    .unwrap();
            }
            Entry::OpaqueFile(p) => {
                std::fs::create_dir_all(root.join(p)).unwrap();
                std::fs::write(root.join(p).join(".wh..wh..opq"), b"").unwrap();
            }
            Entry::Hardlink(p, target) => {
                parents(root, p);
                std::fs::hard_link(root.join(target), root.join(p)).unwrap();
            }
            Entry::Fifo(p) => {
                parents(root, p);
                rustix::fs::mknodat(rustix::fs::CWD, root.join(p), rustix::fs::FileType::Fifo, 0o644.into(), 0)
                    .unwrap();
            }
            Entry::CharDev(p, ma, mi) => {
                parents(root, p);
                let dev = rustix::fs::makedev(*ma, *mi);
                let kind = rustix::fs::FileType::CharacterDevice;
                rustix::fs::mknodat(rustix::fs::CWD, root.join(p), kind, 0o666.into(), dev).unwrap();
            }
            Entry::Xattr(p, n, v) => {
                rustix::fs::lsetxattr(root.join(p), n.as_str(), v, rustix::fs::XattrFlags::empty()).unwrap();
            }
            Entry::DeepFile(p, data) => deep_file(root, p, data),
            Entry::Owner(p, u, g) => {
                rustix::fs::chownat(
                    rustix::fs::CWD,
                    root.join(p),
                    Some(rustix::fs::Uid::from_raw(*u)),
                    Some(rustix::fs::Gid::from_raw(*g)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )
                .unwrap();
            }
        }
    }
}

/// Creates `rel` under `root` with `data`, its parents made one at a time (any depth).
fn deep_file(root: &Path, rel: &str, data: &[u8]) {
    use rustix::fs::{Mode, OFlags};
    let (dirs, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    let mut dir = rustix::fs::open(root, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap();
    for comp in dirs.split('/').filter(|c| !c.is_empty()) {
        match rustix::fs::mkdirat(&dir, comp, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(rustix::io::Errno::EXIST) => {}
            Err(e) => panic!("mkdir {comp} in {rel}: {e}"),
        }
        dir =
            rustix::fs::openat(&dir, comp, OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW, Mode::empty()).unwrap();
    }
    let f = rustix::fs::openat(&dir, name, OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL, Mode::from_raw_mode(0o644))
        .unwrap();
    rustix::io::write(&f, data).unwrap();
}

/// Which union filesystem a mount is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fs {
    /// Strata, through its CLI.
    Strata,
    /// Kernel overlayfs as the reference (`index=on,redirect_dir=on`, so hardlinks and
    /// directory renames work as Strata does them).
    Kernel,
    /// Kernel overlayfs with default options (to read an upper dir Strata wrote).
    KernelPlain,
}

/// A mounted union; unmounted on drop.
pub struct Mount {
    /// What is mounted.
    pub fs: Fs,
    /// Mount point.
    pub mnt: PathBuf,
    /// Upper dir, if any.
    pub upper: Option<PathBuf>,
}

fn escape(p: &Path) -> String {
    p.to_string_lossy().replace(':', "\\:").replace(',', "\\,")
}

/// Mounts `fs` with these layers. `upper`/`work` `None` makes a read-only mount.
pub fn mount(fs: Fs, lowers: &[PathBuf], upper: Option<&Path>, work: Option<&Path>, mnt: &Path) -> Mount {
    std::fs::create_dir_all(mnt).unwrap();
    let lowerdir = lowers.iter().map(|p| escape(p)).collect::<Vec<_>>().join(":");
    let mut opts = format!("lowerdir={lowerdir}");
    if let (Some(u), Some(w)) = (upper, work) {
        std::fs::create_dir_all(u).unwrap();
        std::fs::create_dir_all(w).unwrap();
        opts.push_str(&format!(",upperdir={},workdir={}", escape(u), escape(w)));
    }
    if fs == Fs::Kernel && upper.is_some() {
        opts.push_str(",index=on,redirect_dir=on");
    }
    if fs == Fs::Strata {
        opts.push_str(uring::transport_option());
    }
    let status = match fs {
        Fs::Strata => Command::new(strata()).args(["mount", "-o", &opts]).arg(mnt).status().unwrap(),
        Fs::Kernel | Fs::KernelPlain => kernel_mount(&opts, mnt),
    };
    assert!(status.success(), "mounting {fs:?} on {} failed", mnt.display());
    Mount { fs, mnt: mnt.to_path_buf(), upper: upper.map(Path::to_path_buf) }
}

/// `mount -t overlay` with `opts`. A mount of an upper dir just unmounted may fail for a while
/// (`upperdir is in-use`, with `index=on`): a mount namespace another process made at that
/// moment holds a copy of the old mount until it lets go of it.
fn kernel_mount(opts: &str, mnt: &Path) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = Command::new("mount").args(["-t", "overlay", "overlay", "-o", opts]).arg(mnt).status().unwrap();
        if status.success() || std::time::Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
}

impl Mount {
    /// A path inside the mount.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.mnt.join(rel)
    }

    /// Unmounts now (waits for the Strata daemon to finish its work).
    pub fn unmount(mut self) {
        self.do_unmount();
    }

    fn do_unmount(&mut self) {
        if self.mnt.as_os_str().is_empty() {
            return;
        }
        let mut ok = false;
        for _ in 0..50 {
            if Command::new("umount").arg(&self.mnt).status().map(|s| s.success()).unwrap_or(false) {
                ok = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        if !ok {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
        self.mnt = PathBuf::new();
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        self.do_unmount();
    }
}

/// Bytes of an `OsStr` as a lossless, printable string (for messages).
pub fn show(name: &OsStr) -> String {
    String::from_utf8_lossy(name.as_bytes()).into_owned()
}

/// The mount points under `root` (per this process's mount table).
pub fn mounts_under(root: &Path) -> Vec<PathBuf> {
    let root = root.to_string_lossy().into_owned();
    let table = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    table.lines().filter_map(|l| l.split(' ').nth(4)).filter(|m| m.starts_with(&root)).map(Into::into).collect()
}
