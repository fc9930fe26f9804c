//! Fd-relative access to layer content: `openat2` beneath a layer root, `*at` calls on one name.

use std::ffi::{OsStr, OsString};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags, RenameFlags, ResolveFlags, Stat, Timespec, Timestamps};

use super::{Errno, Result};

/// How every path inside a layer is resolved: never above the root, never through a symlink.
const RESOLVE: ResolveFlags = ResolveFlags::BENEATH.union(ResolveFlags::NO_SYMLINKS).union(ResolveFlags::NO_MAGICLINKS);

/// The longest path one `openat2` takes (`PATH_MAX` counts the terminating NUL).
const MAX_PATH: usize = libc::PATH_MAX as usize - 1;

/// Opens `path` (relative; empty means the root itself) beneath `root`.
///
/// The last component is not followed either: `O_PATH | O_NOFOLLOW` on a symlink gives the link.
/// A path longer than `PATH_MAX` is walked a part at a time, each part beneath the directory
/// the part before it opened: how deep a tree is never limits what can be reached in it.
pub fn open_beneath(root: BorrowedFd<'_>, path: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
    match split_long(path) {
        Some((head, rest)) => {
            let dir = open_beneath_once(root, head, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())?;
            open_beneath(dir.as_fd(), rest, flags, mode)
        }
        None => open_beneath_once(root, path, flags, mode),
    }
}

/// A path too long for one `openat2`, split after as many leading components as one takes.
fn split_long(path: &Path) -> Option<(&Path, &Path)> {
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() <= MAX_PATH {
        return None;
    }
    let cut = bytes[..=MAX_PATH].iter().rposition(|b| *b == b'/').filter(|&i| i > 0)?;
    let rest = bytes[cut..].iter().position(|b| *b != b'/').map(|skip| cut + skip)?;
    Some((Path::new(OsStr::from_bytes(&bytes[..cut])), Path::new(OsStr::from_bytes(&bytes[rest..]))))
}

fn open_beneath_once(root: BorrowedFd<'_>, path: &Path, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
    let path = if path.as_os_str().is_empty() { Path::new(".") } else { path };
    loop {
        match rustix::fs::openat2(root, path, flags | OFlags::CLOEXEC | OFlags::NOFOLLOW, mode, RESOLVE) {
            // The kernel answers EAGAIN when a concurrent rename may have raced the walk.
            Err(Errno::AGAIN) => continue,
            other => return other,
        }
    }
}

/// Opens the directory at `path` beneath `root` as an `O_PATH` fd, for use as a `dirfd`.
pub fn open_dir(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    open_beneath(root, path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
}

/// Opens the directory at `path` beneath `root` for reading its entries.
pub fn open_dir_read(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd> {
    open_beneath(root, path, OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
}

/// Opens a directory the user named (a layer root, the work dir): follows symlinks, as `mount` does.
pub fn open_user_dir(path: &Path) -> Result<OwnedFd> {
    rustix::fs::open(path, OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC, Mode::empty())
}

/// `fstatat(dir, name, AT_SYMLINK_NOFOLLOW)`.
pub fn stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Stat> {
    check_name(name)?;
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
}

/// Like [`stat_at`], but a missing name is `None`.
pub fn try_stat_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<Option<Stat>> {
    match stat_at(dir, name) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// `fstat(fd)`.
pub fn stat_fd(fd: BorrowedFd<'_>) -> Result<Stat> {
    rustix::fs::fstat(fd)
}

/// Opens one entry of `dir` (never following a symlink).
pub fn open_at(dir: BorrowedFd<'_>, name: &OsStr, flags: OFlags, mode: Mode) -> Result<OwnedFd> {
    check_name(name)?;
    rustix::fs::openat(dir, name, flags | OFlags::CLOEXEC | OFlags::NOFOLLOW, mode)
}

/// `mkdirat`.
pub fn mkdir_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<()> {
    check_name(name)?;
    rustix::fs::mkdirat(dir, name, Mode::from_raw_mode(mode))
}

/// `mknodat` of any non-directory, non-regular type given in `mode`'s `S_IFMT` bits.
pub fn mknod_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32, rdev: u64) -> Result<()> {
    check_name(name)?;
    let kind = FileType::from_raw_mode(mode);
    rustix::fs::mknodat(dir, name, kind, Mode::from_raw_mode(mode & 0o7777), rdev)
}

/// Creates a kernel-format whiteout: a character device 0/0.
pub fn mkwhiteout_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    check_name(name)?;
    rustix::fs::mknodat(dir, name, FileType::CharacterDevice, Mode::empty(), 0)
}

/// `symlinkat(target, dir, name)`; the target is stored verbatim.
pub fn symlink_at(target: &OsStr, dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    check_name(name)?;
    rustix::fs::symlinkat(target, dir, name)
}

/// `readlinkat`, as raw bytes.
pub fn readlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<OsString> {
    check_name(name)?;
    let target = rustix::fs::readlinkat(dir, name, Vec::new())?;
    Ok(OsStr::from_bytes(target.as_bytes()).to_owned())
}

/// `linkat` without following symlinks.
pub fn link_at(old_dir: BorrowedFd<'_>, old: &OsStr, new_dir: BorrowedFd<'_>, new: &OsStr) -> Result<()> {
    check_name(old)?;
    check_name(new)?;
    rustix::fs::linkat(old_dir, old, new_dir, new, AtFlags::empty())
}

/// `unlinkat` of a non-directory.
pub fn unlink_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    check_name(name)?;
    rustix::fs::unlinkat(dir, name, AtFlags::empty())
}

/// `unlinkat(AT_REMOVEDIR)`.
pub fn rmdir_at(dir: BorrowedFd<'_>, name: &OsStr) -> Result<()> {
    check_name(name)?;
    rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR)
}

/// `renameat2` with the given flags (`RENAME_NOREPLACE`, `RENAME_EXCHANGE`, `RENAME_WHITEOUT`).
pub fn rename_at(
    old_dir: BorrowedFd<'_>,
    old: &OsStr,
    new_dir: BorrowedFd<'_>,
    new: &OsStr,
    flags: RenameFlags,
) -> Result<()> {
    check_name(old)?;
    check_name(new)?;
    rustix::fs::renameat_with(old_dir, old, new_dir, new, flags)
}

/// `fchownat(AT_SYMLINK_NOFOLLOW)`; `None` leaves that id unchanged.
pub fn chown_at(dir: BorrowedFd<'_>, name: &OsStr, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    check_name(name)?;
    rustix::fs::chownat(dir, name, uid.map(uid_of), gid.map(gid_of), AtFlags::SYMLINK_NOFOLLOW)
}

/// `fchown` (by `AT_EMPTY_PATH`, so an `O_PATH` fd works too); `None` leaves that id unchanged.
pub fn chown_fd(fd: BorrowedFd<'_>, uid: Option<u32>, gid: Option<u32>) -> Result<()> {
    rustix::fs::chownat(fd, "", uid.map(uid_of), gid.map(gid_of), AtFlags::EMPTY_PATH)
}

/// Opens the object of `fd` (any fd, `O_PATH` ones included) again with `flags`, through its
/// `/proc/self/fd` link: it works when the object has no name left.
pub fn reopen(fd: BorrowedFd<'_>, flags: OFlags) -> Result<OwnedFd> {
    use std::os::fd::AsRawFd;
    rustix::fs::open(format!("/proc/self/fd/{}", fd.as_raw_fd()), flags | OFlags::CLOEXEC, Mode::empty())
}

/// Sets the mode of entry `name` of `dir`; a symlink is refused, never followed (Linux has no
/// mode for links): `fchmodat2` with `AT_SYMLINK_NOFOLLOW` (Linux 6.6+), elsewhere through an
/// `O_PATH` fd.
pub fn chmod_at(dir: BorrowedFd<'_>, name: &OsStr, mode: u32) -> Result<()> {
    use std::os::fd::AsRawFd;
    check_name(name)?;
    let cname = std::ffi::CString::new(name.as_bytes()).map_err(|_| Errno::INVAL)?;
    // SAFETY: fchmodat2 reads the NUL-terminated name, alive for the call; the fd is borrowed.
    let r = unsafe {
        libc::syscall(
            libc::SYS_fchmodat2,
            dir.as_raw_fd(),
            cname.as_ptr(),
            (mode & 0o7777) as libc::c_uint,
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    match r {
        0 => Ok(()),
        _ => match Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)) {
            // No fchmodat2 (before 6.6), or a seccomp filter that does not know it (EPERM; a
            // real EPERM comes back from the second way too).
            Errno::NOSYS | Errno::PERM => chmod_fd(open_at(dir, name, OFlags::PATH, Mode::empty())?.as_fd(), mode),
            e => Err(e),
        },
    }
}

/// `fchmod`; an `O_PATH` fd (which `fchmod` refuses) through its `/proc/self/fd` link, which
/// leads to the object itself.
pub fn chmod_fd(fd: BorrowedFd<'_>, mode: u32) -> Result<()> {
    let mode = Mode::from_raw_mode(mode & 0o7777);
    match rustix::fs::fchmod(fd, mode) {
        Err(Errno::BADF) => {
            use std::os::fd::AsRawFd;
            rustix::fs::chmod(format!("/proc/self/fd/{}", fd.as_raw_fd()), mode)
        }
        other => other,
    }
}

/// A time to set: a value, "now", or "leave unchanged".
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetTime {
    /// Leave this timestamp as it is.
    Omit,
    /// The current time.
    Now,
    /// This exact time.
    At(Timespec),
}

impl SetTime {
    fn spec(self) -> Timespec {
        match self {
            SetTime::Omit => Timespec { tv_sec: 0, tv_nsec: libc::UTIME_OMIT },
            SetTime::Now => Timespec { tv_sec: 0, tv_nsec: libc::UTIME_NOW },
            SetTime::At(t) => t,
        }
    }
}

/// `utimensat(AT_SYMLINK_NOFOLLOW)` on one entry, or on `dir` itself when `name` is `None`.
pub fn utimes_at(dir: BorrowedFd<'_>, name: Option<&OsStr>, atime: SetTime, mtime: SetTime) -> Result<()> {
    let times = Timestamps { last_access: atime.spec(), last_modification: mtime.spec() };
    match name {
        Some(name) => {
            check_name(name)?;
            rustix::fs::utimensat(dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
        }
        None => rustix::fs::utimensat(dir, "", &times, AtFlags::EMPTY_PATH),
    }
}

/// The access and modification times of `st`, ready to be set again.
pub fn times_of(st: &Stat) -> (SetTime, SetTime) {
    (
        SetTime::At(Timespec { tv_sec: st.st_atime, tv_nsec: st.st_atime_nsec as _ }),
        SetTime::At(Timespec { tv_sec: st.st_mtime, tv_nsec: st.st_mtime_nsec as _ }),
    )
}

/// One directory entry as the kernel reports it (no stat).
#[derive(Clone, Debug)]
pub struct RawEntry {
    /// The entry's name (never `.` or `..`).
    pub name: OsString,
    /// `d_ino`.
    pub ino: u64,
    /// `d_type` (`Unknown` on filesystems that do not fill it).
    pub kind: FileType,
}

/// Reads every entry of the directory `fd` (opened for reading), skipping `.` and `..`.
pub fn read_dir(fd: OwnedFd) -> Result<Vec<RawEntry>> {
    let mut dir = Dir::new(fd)?;
    let mut out = Vec::new();
    while let Some(entry) = dir.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name == b"." || name == b".." {
            continue;
        }
        out.push(RawEntry { name: OsStr::from_bytes(name).to_owned(), ino: entry.ino(), kind: entry.file_type() });
    }
    Ok(out)
}

/// `fsync` (or `fdatasync`).
pub fn sync_fd(fd: BorrowedFd<'_>, data_only: bool) -> Result<()> {
    if data_only { rustix::fs::fdatasync(fd) } else { rustix::fs::fsync(fd) }
}

/// Treats "no such file" as done (for removals that may race or repeat).
pub fn ok_if_missing(r: Result<()>) -> Result<()> {
    match r {
        Err(Errno::NOENT) => Ok(()),
        other => other,
    }
}

/// Rejects names that are not one path component: empty, `.`, `..` or containing `/`.
pub fn check_name(name: &OsStr) -> Result<()> {
    let b = name.as_bytes();
    if b.is_empty() || b == b"." || b == b".." || b.contains(&b'/') || b.contains(&0) {
        return Err(Errno::INVAL);
    }
    Ok(())
}

/// The `S_IFMT` bits of a stat, as a [`FileType`].
pub fn kind_of(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// Whether `st` is a kernel-format whiteout (character device 0/0).
pub fn is_whiteout_dev(st: &Stat) -> bool {
    kind_of(st) == FileType::CharacterDevice && st.st_rdev == 0
}

fn uid_of(id: u32) -> rustix::fs::Uid {
    rustix::fs::Uid::from_raw(id)
}

fn gid_of(id: u32) -> rustix::fs::Gid {
    rustix::fs::Gid::from_raw(id)
}

/// Duplicates a borrowed fd into an owned one.
pub fn dup(fd: BorrowedFd<'_>) -> Result<OwnedFd> {
    rustix::io::fcntl_dupfd_cloexec(fd, 3)
}

/// The `st_dev` of an fd.
pub fn dev_of(fd: impl AsFd) -> Result<u64> {
    Ok(rustix::fs::fstat(fd)?.st_dev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chmod_at_sets_a_file_and_refuses_a_symlink_without_touching_its_target() {
        use std::os::unix::fs::PermissionsExt;
        let tmp = tempfile::tempdir().unwrap();
        std::fs::write(tmp.path().join("f"), "x").unwrap();
        std::os::unix::fs::symlink("f", tmp.path().join("l")).unwrap();
        let dir = open_user_dir(tmp.path()).unwrap();
        let mode = |n: &str| std::fs::metadata(tmp.path().join(n)).unwrap().permissions().mode() & 0o7777;
        chmod_at(dir.as_fd(), OsStr::new("f"), 0o4640).unwrap();
        assert_eq!(mode("f"), 0o4640);
        assert!(chmod_at(dir.as_fd(), OsStr::new("l"), 0o777).is_err());
        assert_eq!(mode("f"), 0o4640, "the link's target is not changed");
        assert_eq!(chmod_at(dir.as_fd(), OsStr::new("../f"), 0o600), Err(Errno::INVAL));
    }

    #[test]
    fn paths_longer_than_path_max_open_a_part_at_a_time_and_stay_beneath() {
        let tmp = tempfile::tempdir().unwrap();
        let root = open_user_dir(tmp.path()).unwrap();
        let comp = OsStr::new(&"d".repeat(200)).to_owned();
        let mut dir = dup(root.as_fd()).unwrap();
        let mut path = std::path::PathBuf::new();
        for _ in 0..50 {
            mkdir_at(dir.as_fd(), &comp, 0o755).unwrap();
            dir = open_dir(dir.as_fd(), Path::new(&comp)).unwrap();
            path.push(&comp);
        }
        assert!(path.as_os_str().len() > 2 * MAX_PATH);
        let deep = open_dir(root.as_fd(), &path).unwrap();
        assert_eq!(stat_fd(deep.as_fd()).unwrap().st_ino, stat_fd(dir.as_fd()).unwrap().st_ino);
        // A symlink on the way is refused in every part, as in a short path.
        symlink_at(OsStr::new("/"), dir.as_fd(), OsStr::new("up")).unwrap();
        assert!(open_dir(root.as_fd(), &path.join("up")).is_err());
        assert!(open_dir(root.as_fd(), &path.join("..").join("..")).is_ok());
        assert_eq!(split_long(Path::new("short")), None);
    }
}
