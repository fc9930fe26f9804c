//! Mounts made through file descriptors (the new mount API): a filesystem or a bind is built
//! detached (`fsopen`/`fsmount`, `open_tree`), its flags set (`mount_setattr`), and attached
//! onto a target fd that was resolved inside the container's rootfs (`openat2` with
//! `RESOLVE_IN_ROOT`), so no path string is ever resolved on the host. Also `pivot_root` by fd.

use std::collections::VecDeque;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{Mode, OFlags, ResolveFlags};
use rustix::mount::{
    FsMountFlags, FsOpenFlags, MountAttrFlags, MountPropagationFlags, MoveMountFlags, OpenTreeFlags, UnmountFlags,
};

/// Flags of a mount (`MOUNT_ATTR_*`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// Read-only.
    pub rdonly: bool,
    /// Ignore setuid bits.
    pub nosuid: bool,
    /// No device nodes.
    pub nodev: bool,
    /// No execution.
    pub noexec: bool,
}

impl Attrs {
    fn flags(self) -> MountAttrFlags {
        let mut f = MountAttrFlags::empty();
        for (on, bit) in [
            (self.rdonly, MountAttrFlags::MOUNT_ATTR_RDONLY),
            (self.nosuid, MountAttrFlags::MOUNT_ATTR_NOSUID),
            (self.nodev, MountAttrFlags::MOUNT_ATTR_NODEV),
            (self.noexec, MountAttrFlags::MOUNT_ATTR_NOEXEC),
        ] {
            if on {
                f |= bit;
            }
        }
        f
    }
}

/// What to create at a mount target that does not exist yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TargetKind {
    /// A directory (and its missing parents).
    Dir,
    /// An empty regular file (and its missing parent directories).
    File,
}

const IN_ROOT: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

fn openat2_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    loop {
        match rustix::fs::openat2(root, path, flags | OFlags::CLOEXEC, mode, IN_ROOT) {
            Err(rustix::io::Errno::AGAIN) => continue,
            other => return Ok(other?),
        }
    }
}

/// Opens `path` (absolute or relative, read as inside the rootfs) beneath `root` as an `O_PATH`
/// fd, creating what is missing. Symlinks met on the way resolve as if `root` were `/`, so a
/// link in the image cannot lead the target out onto the host; a dangling link gets its target
/// made, inside the rootfs.
pub fn open_target(root: BorrowedFd<'_>, path: &Path, kind: TargetKind) -> io::Result<OwnedFd> {
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "'..' is not allowed in a container path"));
    }
    let mut todo: VecDeque<OsString> = names_of(path).collect();
    let mut walked = PathBuf::new();
    let mut fd = openat2_in_root(root, Path::new("."), OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
    let mut links = 0;
    while let Some(name) = todo.pop_front() {
        if name == ".." {
            walked.pop();
            continue;
        }
        let next = walked.join(&name);
        match openat2_in_root(root, &next, OFlags::PATH, Mode::empty()) {
            Ok(f) => fd = f,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                let parent = openat2_in_root(root, &walked, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
                if let Ok(target) = rustix::fs::readlinkat(&parent, &name, Vec::new()) {
                    links += 1;
                    if links > 40 {
                        return Err(io::Error::from_raw_os_error(libc::ELOOP));
                    }
                    let target = PathBuf::from(OsString::from_vec(target.into_bytes()));
                    if target.is_absolute() {
                        walked = PathBuf::new();
                    }
                    for n in names_of(&target).collect::<Vec<_>>().into_iter().rev() {
                        todo.push_front(n);
                    }
                    continue;
                }
                fd = create_in(root, &next, &name, todo.is_empty() && kind == TargetKind::File)?;
            }
            Err(e) => return Err(e),
        }
        walked = next;
    }
    Ok(fd)
}

/// The names of `path`'s components (`..` kept as a name, `.` and `/` dropped).
fn names_of(path: &Path) -> impl Iterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(n) => Some(n.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

/// Creates `name` (a file or a dir) in the parent of `walked` beneath `root`, and opens it.
fn create_in(root: BorrowedFd<'_>, walked: &Path, name: &OsStr, file: bool) -> io::Result<OwnedFd> {
    let parent = walked.parent().unwrap_or(Path::new("."));
    let p = openat2_in_root(root, parent, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())?;
    let made = if file {
        let flags = OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::CLOEXEC | OFlags::NOFOLLOW;
        rustix::fs::openat(&p, name, flags, Mode::from_raw_mode(0o644)).map(drop)
    } else {
        rustix::fs::mkdirat(&p, name, Mode::from_raw_mode(0o755))
    };
    match made {
        Ok(()) | Err(rustix::io::Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    openat2_in_root(root, walked, OFlags::PATH, Mode::empty())
}

/// Opens an existing `path` beneath `root` (resolved inside it) as an `O_PATH` fd.
pub fn open_existing(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    openat2_in_root(root, path, OFlags::PATH, Mode::empty())
}

/// A detached copy of the mount tree at the object `at` is open on (recursively).
pub fn clone_at(at: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let flags = OpenTreeFlags::OPEN_TREE_CLONE
        | OpenTreeFlags::OPEN_TREE_CLOEXEC
        | OpenTreeFlags::AT_RECURSIVE
        | OpenTreeFlags::AT_EMPTY_PATH;
    Ok(rustix::mount::open_tree(at, "", flags)?)
}

/// Opens a directory with `RESOLVE_IN_ROOT` for reading, to create symlinks in it.
pub fn open_dir_in_root(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    openat2_in_root(root, path, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty())
}

/// A new, detached instance of filesystem `fstype` with `options` (key, value; an empty value
/// sets a flag), mounted with `attrs`.
pub fn new_fs(fstype: &str, options: &[(&str, &str)], attrs: Attrs) -> io::Result<OwnedFd> {
    let fs = rustix::mount::fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    for (k, v) in options {
        if v.is_empty() {
            rustix::mount::fsconfig_set_flag(&fs, *k)?;
        } else {
            rustix::mount::fsconfig_set_string(&fs, *k, *v)?;
        }
    }
    rustix::mount::fsconfig_create(&fs)?;
    Ok(rustix::mount::fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs.flags())?)
}

/// A detached copy of the mount tree at `source` (a host path: the user typed it).
pub fn clone_tree(source: &Path, recursive: bool) -> io::Result<OwnedFd> {
    let mut flags = OpenTreeFlags::OPEN_TREE_CLONE | OpenTreeFlags::OPEN_TREE_CLOEXEC;
    if recursive {
        flags |= OpenTreeFlags::AT_RECURSIVE;
    }
    Ok(rustix::mount::open_tree(rustix::fs::CWD, source, flags)?)
}

/// Sets `attrs` on a mount (and, if `recursive`, every mount below it) with `mount_setattr(2)`.
pub fn set_attrs(mnt: BorrowedFd<'_>, attrs: Attrs, recursive: bool) -> io::Result<()> {
    let attr = libc::mount_attr { attr_set: attrs.flags().bits() as u64, attr_clr: 0, propagation: 0, userns_fd: 0 };
    let flags = libc::AT_EMPTY_PATH | if recursive { libc::AT_RECURSIVE } else { 0 };
    // SAFETY: the path is a valid C string, `attr` lives across the call and its size is passed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            mnt.as_raw_fd(),
            c"".as_ptr(),
            flags,
            &attr as *const libc::mount_attr,
            std::mem::size_of::<libc::mount_attr>(),
        )
    };
    if r == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Attaches the detached mount `mnt` onto the object `target` is open on.
pub fn attach(mnt: BorrowedFd<'_>, target: BorrowedFd<'_>) -> io::Result<()> {
    let flags = MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH;
    Ok(rustix::mount::move_mount(mnt, "", target, "", flags)?)
}

/// Makes every mount of the caller's mount namespace private (nothing propagates in or out).
pub fn make_private() -> io::Result<()> {
    Ok(rustix::mount::mount_change("/", MountPropagationFlags::PRIVATE | MountPropagationFlags::REC)?)
}

/// Makes the directory `root` (the root of a mount) the caller's root: `fchdir`, then
/// `pivot_root(".", ".")` and a lazy unmount of the old root stacked beneath it.
pub fn pivot_root(root: BorrowedFd<'_>) -> io::Result<()> {
    rustix::process::fchdir(root)?;
    rustix::process::pivot_root(".", ".")?;
    rustix::mount::unmount(".", UnmountFlags::DETACH)?;
    rustix::process::chdir("/")?;
    Ok(())
}

/// Opens a directory on the host (the rootfs mount point) as an `O_PATH` fd.
pub fn open_host_dir(path: &Path) -> io::Result<OwnedFd> {
    Ok(rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())?)
}

/// Creates the symlink `name` -> `target` in the directory `dir`, unless `name` exists.
pub fn symlink_in(dir: BorrowedFd<'_>, name: &str, target: &str) -> io::Result<()> {
    match rustix::fs::symlinkat(target, dir, name) {
        Ok(()) | Err(rustix::io::Errno::EXIST) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn targets_resolve_and_are_made_inside_the_root() {
        let t = tempfile::tempdir().unwrap();
        let (root, outside) = (t.path().join("root"), t.path().join("outside"));
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir(&outside).unwrap();
        // An absolute link to a host path, and a relative one climbing out.
        std::os::unix::fs::symlink(&outside, root.join("abs")).unwrap();
        std::os::unix::fs::symlink("../../../../outside", root.join("etc/rel")).unwrap();
        let rfd = open_host_dir(&root).unwrap();
        open_target(rfd.as_fd(), Path::new("/abs/sub"), TargetKind::Dir).unwrap();
        open_target(rfd.as_fd(), Path::new("/etc/rel/file"), TargetKind::File).unwrap();
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "nothing made outside the root");
        assert!(root.join(outside.strip_prefix("/").unwrap()).join("sub").is_dir());
        assert!(root.join("outside/file").is_file());
        let e = open_target(rfd.as_fd(), Path::new("/etc/../x"), TargetKind::Dir).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
