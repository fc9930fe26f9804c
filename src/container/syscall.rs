//! The system calls that build a container's namespaces and rootfs, behind a trait: the real
//! one ([`LinuxSyscall`]) and a recording double ([`RecordingSyscall`]) that lets the order and
//! the arguments of the setup be unit-tested without privileges.

use std::cell::{OnceCell, RefCell};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::sys::mountfd::{self, Attrs, TargetKind};
use crate::sys::ns::{self, Namespaces};

/// The calls a container's setup makes. Paths called `target` are inside the rootfs opened by
/// [`Syscall::open_rootfs`] and resolved there (symlinks cannot lead out of it).
pub trait Syscall {
    /// Leaves the given namespaces for new ones.
    fn unshare(&self, ns: Namespaces) -> io::Result<()>;
    /// Sets the hostname (UTS namespace).
    fn set_hostname(&self, name: &str) -> io::Result<()>;
    /// Brings `lo` up (network namespace).
    fn loopback_up(&self) -> io::Result<()>;
    /// Stops mount propagation to and from the host.
    fn make_private(&self) -> io::Result<()>;
    /// Opens the rootfs mount (a host path) that later calls work in.
    fn open_rootfs(&self, path: &Path) -> io::Result<()>;
    /// Mounts a new instance of `fstype` with `options` on `target`.
    fn mount_fs(&self, fstype: &str, options: &[(&str, &str)], attrs: Attrs, target: &Path) -> io::Result<()>;
    /// Bind-mounts the host path `source` (recursively) on `target`, created as `kind` if missing.
    fn bind(&self, source: &Path, target: &Path, kind: TargetKind, attrs: Attrs) -> io::Result<()>;
    /// Makes what is at `target` (a subtree of a mount) read-only: bound on itself, read-only.
    /// A missing target is an error of kind `NotFound`.
    fn bind_readonly(&self, target: &Path) -> io::Result<()>;
    /// Hides what is at `target`: an empty read-only tmpfs over a directory, `/dev/null` over a
    /// file. A missing target is an error of kind `NotFound`.
    fn mask(&self, target: &Path) -> io::Result<()>;
    /// Creates the symlink `name` -> `link` in the directory `dir`.
    fn symlink(&self, dir: &Path, name: &str, link: &str) -> io::Result<()>;
    /// Makes the rootfs the root and drops the old root.
    fn pivot_root(&self) -> io::Result<()>;
}

/// The real system calls.
#[derive(Default)]
pub struct LinuxSyscall {
    rootfs: OnceCell<OwnedFd>,
}

impl LinuxSyscall {
    fn rootfs(&self) -> io::Result<&OwnedFd> {
        self.rootfs.get().ok_or_else(|| io::Error::other("the rootfs is not open"))
    }
}

/// A directory binds only onto a directory, a file only onto a non-directory: says which side
/// is wrong instead of the kernel's bare `EINVAL`.
fn same_kind(at: BorrowedFd<'_>, kind: TargetKind) -> io::Result<()> {
    let is_dir = rustix::fs::fstat(at)?.st_mode & libc::S_IFMT == libc::S_IFDIR;
    match (kind, is_dir) {
        (TargetKind::Dir, false) => Err(io::Error::other("the source is a directory, the target is not")),
        (TargetKind::File, true) => Err(io::Error::other("the source is a file, the target is a directory")),
        _ => Ok(()),
    }
}

impl Syscall for LinuxSyscall {
    fn unshare(&self, n: Namespaces) -> io::Result<()> {
        ns::unshare(n)
    }

    fn set_hostname(&self, name: &str) -> io::Result<()> {
        ns::set_hostname(name)
    }

    fn loopback_up(&self) -> io::Result<()> {
        ns::loopback_up()
    }

    fn make_private(&self) -> io::Result<()> {
        mountfd::make_private()
    }

    fn open_rootfs(&self, path: &Path) -> io::Result<()> {
        let fd = mountfd::open_host_dir(path)?;
        self.rootfs.set(fd).map_err(|_| io::Error::other("the rootfs is already open"))
    }

    fn mount_fs(&self, fstype: &str, options: &[(&str, &str)], attrs: Attrs, target: &Path) -> io::Result<()> {
        let mnt = mountfd::new_fs(fstype, options, attrs)?;
        let at = mountfd::open_target(self.rootfs()?.as_fd(), target, TargetKind::Dir)?;
        mountfd::attach(mnt.as_fd(), at.as_fd())
    }

    fn bind(&self, source: &Path, target: &Path, kind: TargetKind, attrs: Attrs) -> io::Result<()> {
        let mnt = mountfd::clone_tree(source, true)?;
        if attrs != Attrs::default() {
            mountfd::set_attrs(mnt.as_fd(), attrs, true)?;
        }
        let at = mountfd::open_target(self.rootfs()?.as_fd(), target, kind)?;
        same_kind(at.as_fd(), kind)?;
        mountfd::attach(mnt.as_fd(), at.as_fd())
    }

    fn bind_readonly(&self, target: &Path) -> io::Result<()> {
        let at = mountfd::open_existing(self.rootfs()?.as_fd(), target)?;
        let mnt = mountfd::clone_at(at.as_fd())?;
        mountfd::set_attrs(mnt.as_fd(), Attrs { rdonly: true, ..Default::default() }, true)?;
        mountfd::attach(mnt.as_fd(), at.as_fd())
    }

    fn mask(&self, target: &Path) -> io::Result<()> {
        let at = mountfd::open_existing(self.rootfs()?.as_fd(), target)?;
        let mnt = if rustix::fs::fstat(&at)?.st_mode & libc::S_IFMT == libc::S_IFDIR {
            let ro = Attrs { rdonly: true, nosuid: true, nodev: true, noexec: true };
            mountfd::new_fs("tmpfs", &[("size", "0")], ro)?
        } else {
            mountfd::clone_tree(Path::new("/dev/null"), false)?
        };
        mountfd::attach(mnt.as_fd(), at.as_fd())
    }

    fn symlink(&self, dir: &Path, name: &str, link: &str) -> io::Result<()> {
        let d = mountfd::open_dir_in_root(self.rootfs()?.as_fd(), dir)?;
        mountfd::symlink_in(d.as_fd(), name, link)
    }

    fn pivot_root(&self) -> io::Result<()> {
        mountfd::pivot_root(self.rootfs()?.as_fd())
    }
}

/// One call seen by [`RecordingSyscall`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    /// `unshare`.
    Unshare(Namespaces),
    /// `set_hostname`.
    Hostname(String),
    /// `loopback_up`.
    LoopbackUp,
    /// `make_private`.
    MakePrivate,
    /// `open_rootfs`.
    OpenRootfs(PathBuf),
    /// `mount_fs`: type, options as `k=v`, attrs, target.
    Mount(String, Vec<String>, Attrs, PathBuf),
    /// `bind`: source, target, kind, attrs.
    Bind(PathBuf, PathBuf, TargetKind, Attrs),
    /// `bind_readonly`.
    ReadOnly(PathBuf),
    /// `mask`.
    Mask(PathBuf),
    /// `symlink`: dir, name, link.
    Symlink(PathBuf, String, String),
    /// `pivot_root`.
    PivotRoot,
}

/// A test double: records every call, and fails the calls `fail` picks with EPERM.
#[derive(Default)]
pub struct RecordingSyscall {
    /// What was called, in order.
    pub calls: RefCell<Vec<Call>>,
    /// Which calls fail (with EPERM).
    pub fail: Option<fn(&Call) -> bool>,
}

impl RecordingSyscall {
    fn record(&self, c: Call) -> io::Result<()> {
        let failed = self.fail.is_some_and(|f| f(&c));
        self.calls.borrow_mut().push(c);
        if failed { Err(io::Error::from_raw_os_error(libc::EPERM)) } else { Ok(()) }
    }
}

impl Syscall for RecordingSyscall {
    fn unshare(&self, ns: Namespaces) -> io::Result<()> {
        self.record(Call::Unshare(ns))
    }
    fn set_hostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::Hostname(name.into()))
    }
    fn loopback_up(&self) -> io::Result<()> {
        self.record(Call::LoopbackUp)
    }
    fn make_private(&self) -> io::Result<()> {
        self.record(Call::MakePrivate)
    }
    fn open_rootfs(&self, path: &Path) -> io::Result<()> {
        self.record(Call::OpenRootfs(path.into()))
    }
    fn mount_fs(&self, fstype: &str, options: &[(&str, &str)], attrs: Attrs, target: &Path) -> io::Result<()> {
        let opts = options.iter().map(|(k, v)| if v.is_empty() { k.to_string() } else { format!("{k}={v}") });
        self.record(Call::Mount(fstype.into(), opts.collect(), attrs, target.into()))
    }
    fn bind(&self, source: &Path, target: &Path, kind: TargetKind, attrs: Attrs) -> io::Result<()> {
        self.record(Call::Bind(source.into(), target.into(), kind, attrs))
    }
    fn bind_readonly(&self, target: &Path) -> io::Result<()> {
        self.record(Call::ReadOnly(target.into()))
    }
    fn mask(&self, target: &Path) -> io::Result<()> {
        self.record(Call::Mask(target.into()))
    }
    fn symlink(&self, dir: &Path, name: &str, link: &str) -> io::Result<()> {
        self.record(Call::Symlink(dir.into(), name.into(), link.into()))
    }
    fn pivot_root(&self) -> io::Result<()> {
        self.record(Call::PivotRoot)
    }
}
