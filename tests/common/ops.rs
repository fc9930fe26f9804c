//! Operations run through a mount point, with their outcome as a value to compare.

use std::ffi::CString;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// One operation on a path relative to the mount root.
#[derive(Clone, Debug)]
pub enum Op {
    Write(String, Vec<u8>),
    Append(String, Vec<u8>),
    Read(String),
    Stat(String),
    List(String),
    Mkdir(String, u32),
    Rmdir(String),
    Unlink(String),
    Rename(String, String, u32),
    Link(String, String),
    Symlink(String, String),
    Readlink(String),
    Chmod(String, u32),
    Chown(String, u32, u32),
    Truncate(String, u64),
    SetXattr(String, String, Vec<u8>),
    GetXattr(String, String),
    ListXattr(String),
    RemoveXattr(String, String),
    Mkfifo(String),
    /// mknod of a character device (major, minor) or, with `None`, a socket.
    Mknod(String, Option<(u32, u32)>),
    Utimes(String, i64),
    /// Open read-write, unlink, write through the fd, read back, fstat nlink.
    OpenUnlinked(String),
    /// Open read-only, then write the file through another open: what does the first fd read?
    ReadOldThenWrite(String),
    /// readdir with seekdir/telldir: list, seek back to the middle, list again.
    SeekDir(String),
    /// A shell script run in the mount root as `uid:gid` (no supplementary groups): its output,
    /// or its exit status and error output. Paths in it are relative, so messages compare.
    Sh(u32, u32, String),
    /// Open read-write, unlink, then change the open file's metadata through the fd: fchmod,
    /// fchown, fsetxattr, fgetxattr, ftruncate, futimens, fstat.
    UnlinkedMeta(String),
    /// `mknod` of a character device 0/0 (a whiteout, which a union refuses to make).
    MknodWhiteout(String),
    /// Unmount and mount again (the differential runner does it; elsewhere a no-op).
    Remount,
    /// Runs the operation and tells, for each path, whether its mtime (`M`) and ctime (`C`)
    /// changed (`m`, `c`: unchanged; `-`: missing before or after).
    Changes(Vec<String>, Box<Op>),
    /// Runs the operation while the path is held open read-only (if it opens): what the
    /// operation does must not depend on a reader. What the held file reads afterwards is
    /// not compared: kernel overlayfs switches it to the copy-up, Strata may keep the lower file.
    HoldOpen(String, Box<Op>),
    /// Runs the operation in a directory reached one component at a time (its paths relative
    /// to it), however deep it is: paths from the mount root may be longer than `PATH_MAX`.
    Under(String, Box<Op>),
}

/// The result of an operation: a normalised value or an errno name.
pub type Outcome = Result<String, String>;

fn errno(e: std::io::Error) -> String {
    match e.raw_os_error() {
        Some(n) => rustix::io::Errno::from_raw_os_error(n).to_string(),
        None => e.to_string(),
    }
}

fn rx(e: rustix::io::Errno) -> String {
    e.to_string()
}

/// Summary of an lstat that two union filesystems must agree on.
pub fn stat_line(md: &std::fs::Metadata) -> String {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        "d"
    } else if ft.is_symlink() {
        "l"
    } else if ft.is_file() {
        "f"
    } else {
        "o"
    };
    let size = if ft.is_dir() { 0 } else { md.size() };
    format!("{kind} {:o} {}:{} size={size} nlink={}", md.permissions().mode() & 0o7777, md.uid(), md.gid(), md.nlink())
}

/// Opens without blocking on FIFOs (a no-op for regular files).
fn open(path: &Path, write: bool, append: bool) -> std::io::Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(!write)
        .write(write && !append)
        .append(append)
        .create(write && !append)
        .truncate(write && !append)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
}

/// Runs `op` under `root`.
pub fn run_op(root: &Path, op: &Op) -> Outcome {
    let p = |s: &str| root.join(s);
    match op {
        Op::Write(f, d) => {
            open(&p(f), true, false).and_then(|mut fh| fh.write_all(d)).map(|_| String::new()).map_err(errno)
        }
        Op::Append(f, d) => {
            open(&p(f), true, true).and_then(|mut fh| fh.write_all(d)).map(|_| String::new()).map_err(errno)
        }
        Op::Read(f) => {
            let mut s = Vec::new();
            open(&p(f), false, false).and_then(|mut fh| fh.read_to_end(&mut s)).map_err(errno)?;
            Ok(String::from_utf8_lossy(&s).into_owned())
        }
        Op::Stat(f) => std::fs::symlink_metadata(p(f)).map(|m| stat_line(&m)).map_err(errno),
        Op::List(d) => {
            let mut names: Vec<String> = std::fs::read_dir(p(d))
                .map_err(errno)?
                .map(|e| e.map(|e| e.file_name().to_string_lossy().into_owned()).map_err(errno))
                .collect::<Result<_, _>>()?;
            // See `tree::snapshot`: the kernel lists bottom-layer whiteouts it cannot look up.
            names.retain(|n| std::fs::symlink_metadata(p(d).join(n)).is_ok());
            names.sort();
            Ok(names.join(","))
        }
        Op::Mkdir(d, m) => std::fs::DirBuilder::new().mode(*m).create(p(d)).map(|_| String::new()).map_err(errno),
        Op::Rmdir(d) => std::fs::remove_dir(p(d)).map(|_| String::new()).map_err(errno),
        Op::Unlink(f) => std::fs::remove_file(p(f)).map(|_| String::new()).map_err(errno),
        Op::Rename(a, b, flags) => rustix::fs::renameat_with(
            rustix::fs::CWD,
            p(a),
            rustix::fs::CWD,
            p(b),
            rustix::fs::RenameFlags::from_bits_retain(*flags),
        )
        .map(|_| String::new())
        .map_err(rx),
        Op::Link(a, b) => std::fs::hard_link(p(a), p(b)).map(|_| String::new()).map_err(errno),
        Op::Symlink(t, l) => std::os::unix::fs::symlink(t, p(l)).map(|_| String::new()).map_err(errno),
        Op::Readlink(l) => std::fs::read_link(p(l)).map(|t| t.to_string_lossy().into_owned()).map_err(errno),
        Op::Chmod(f, m) => {
            std::fs::set_permissions(p(f), std::fs::Permissions::from_mode(*m)).map(|_| String::new()).map_err(errno)
        }
        Op::Chown(f, u, g) => rustix::fs::chownat(
            rustix::fs::CWD,
            p(f),
            Some(rustix::fs::Uid::from_raw(*u)),
            Some(rustix::fs::Gid::from_raw(*g)),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map(|_| String::new())
        .map_err(rx),
        Op::Truncate(f, n) => {
            let c = CString::new(p(f).as_os_str().as_bytes()).unwrap();
            // SAFETY: truncate(2) on a valid NUL-terminated path.
            match unsafe { libc::truncate(c.as_ptr(), *n as i64) } {
                0 => Ok(String::new()),
                _ => Err(errno(std::io::Error::last_os_error())),
            }
        }
        Op::SetXattr(f, n, v) => rustix::fs::lsetxattr(p(f), n.as_str(), v, rustix::fs::XattrFlags::empty())
            .map(|_| String::new())
            .map_err(rx),
        Op::GetXattr(f, n) => {
            let mut buf = vec![0u8; 4096];
            rustix::fs::lgetxattr(p(f), n.as_str(), &mut buf[..])
                .map(|len| String::from_utf8_lossy(&buf[..len]).into_owned())
                .map_err(rx)
        }
        Op::ListXattr(f) => {
            let mut buf = vec![0u8; 4096];
            let len = rustix::fs::llistxattr(p(f), &mut buf[..]).map_err(rx)?;
            let mut names: Vec<String> = buf[..len]
                .split(|b| *b == 0)
                .filter(|s| !s.is_empty())
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .filter(|n| n.starts_with("user."))
                .collect();
            names.sort();
            Ok(names.join(","))
        }
        Op::RemoveXattr(f, n) => rustix::fs::lremovexattr(p(f), n.as_str()).map(|_| String::new()).map_err(rx),
        Op::Mkfifo(f) => {
            let c = CString::new(p(f).as_os_str().as_bytes()).unwrap();
            rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), rustix::fs::FileType::Fifo, 0o644.into(), 0)
                .map(|_| String::new())
                .map_err(rx)
        }
        Op::Mknod(f, dev) => {
            let c = CString::new(p(f).as_os_str().as_bytes()).unwrap();
            let (kind, rdev) = match dev {
                Some((ma, mi)) => (rustix::fs::FileType::CharacterDevice, rustix::fs::makedev(*ma, *mi)),
                None => (rustix::fs::FileType::Socket, 0),
            };
            rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), kind, 0o640.into(), rdev)
                .map(|_| String::new())
                .map_err(rx)
        }
        Op::Utimes(f, t) => {
            let ts = rustix::fs::Timespec { tv_sec: *t, tv_nsec: 0 };
            rustix::fs::utimensat(
                rustix::fs::CWD,
                p(f),
                &rustix::fs::Timestamps { last_access: ts, last_modification: ts },
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .map(|_| {
                let md = std::fs::symlink_metadata(p(f)).unwrap();
                format!("mtime={}", md.mtime())
            })
            .map_err(rx)
        }
        // A FIFO's reader would wait for a writer forever.
        Op::OpenUnlinked(f) | Op::ReadOldThenWrite(f) if is_fifo(&p(f)) => Ok("fifo".into()),
        Op::OpenUnlinked(f) => {
            let mut fh = std::fs::OpenOptions::new().read(true).write(true).open(p(f)).map_err(errno)?;
            std::fs::remove_file(p(f)).map_err(errno)?;
            fh.seek(SeekFrom::End(0)).map_err(errno)?;
            fh.write_all(b"+unlinked").map_err(errno)?;
            fh.seek(SeekFrom::Start(0)).map_err(errno)?;
            let mut s = String::new();
            fh.read_to_string(&mut s).map_err(errno)?;
            let nlink = fh.metadata().map_err(errno)?.nlink();
            let gone = std::fs::symlink_metadata(p(f)).is_err();
            Ok(format!("{s} nlink={nlink} gone={gone}"))
        }
        Op::ReadOldThenWrite(f) => {
            let mut old = std::fs::File::open(p(f)).map_err(errno)?;
            std::fs::write(p(f), b"new content").map_err(errno)?;
            let mut s = String::new();
            old.read_to_string(&mut s).map_err(errno)?;
            let now = std::fs::read(p(f)).map_err(errno)?;
            Ok(format!("now={}", String::from_utf8_lossy(&now)))
        }
        Op::SeekDir(d) => seekdir(&p(d)),
        Op::Sh(uid, gid, script) => sh(root, *uid, *gid, script),
        Op::Remount => Ok(String::new()),
        Op::Changes(paths, op) => {
            let times = || paths.iter().map(|x| std::fs::symlink_metadata(p(x)).ok()).collect::<Vec<_>>();
            let before = times();
            // More than a clock tick, so that a change shows in the timestamps.
            std::thread::sleep(std::time::Duration::from_millis(20));
            let r = run_op(root, op);
            let marks: Vec<String> = paths
                .iter()
                .zip(before.iter().zip(times()))
                .map(|(x, t)| match t {
                    (Some(b), Some(a)) => {
                        let m = if (a.mtime(), a.mtime_nsec()) != (b.mtime(), b.mtime_nsec()) { 'M' } else { 'm' };
                        let c = if (a.ctime(), a.ctime_nsec()) != (b.ctime(), b.ctime_nsec()) { 'C' } else { 'c' };
                        format!("{x}:{m}{c}")
                    }
                    _ => format!("{x}:-"),
                })
                .collect();
            Ok(format!("{r:?} {}", marks.join(" ")))
        }
        Op::UnlinkedMeta(f) => unlinked_meta(&p(f)),
        Op::Under(d, op) => {
            use std::os::fd::AsRawFd;
            let dir = open_deep_dir(root, d).map_err(rx)?;
            run_op(Path::new(&format!("/proc/self/fd/{}", dir.as_raw_fd())), op)
        }
        Op::HoldOpen(f, op) => {
            let held = open(&p(f), false, false);
            let r = run_op(root, op);
            drop(held);
            r
        }
        Op::MknodWhiteout(f) => {
            let c = CString::new(p(f).as_os_str().as_bytes()).unwrap();
            rustix::fs::mknodat(rustix::fs::CWD, c.as_c_str(), rustix::fs::FileType::CharacterDevice, 0o644.into(), 0)
                .map(|_| String::new())
                .map_err(rx)
        }
    }
}

fn seekdir(path: &Path) -> Outcome {
    let c = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: plain libc directory stream calls on a valid, NUL-terminated path.
    unsafe {
        let dir = libc::opendir(c.as_ptr());
        if dir.is_null() {
            return Err(errno(std::io::Error::last_os_error()));
        }
        let mut first = Vec::new();
        let mut mid = None;
        loop {
            let e = libc::readdir(dir);
            if e.is_null() {
                break;
            }
            if first.len() == 2 {
                mid = Some(libc::telldir(dir));
            }
            first.push(std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned());
        }
        let mut again = Vec::new();
        if let Some(pos) = mid {
            libc::seekdir(dir, pos);
            loop {
                let e = libc::readdir(dir);
                if e.is_null() {
                    break;
                }
                again.push(std::ffi::CStr::from_ptr((*e).d_name.as_ptr()).to_string_lossy().into_owned());
            }
        }
        libc::closedir(dir);
        let n = first.len();
        // Offsets must resume exactly after the third entry; no entry may appear twice.
        let resumed = again == first[3.min(n)..];
        // See `tree::snapshot`: the kernel lists bottom-layer whiteouts it cannot look up.
        first.retain(|n| n == "." || n == ".." || std::fs::symlink_metadata(path.join(n)).is_ok());
        let mut sorted = first.clone();
        sorted.sort();
        sorted.dedup();
        Ok(format!("entries={} unique={} resumed={resumed}", first.len(), sorted.len()))
    }
}

fn sh(root: &Path, uid: u32, gid: u32, script: &str) -> Outcome {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args([&format!("--reuid={uid}"), &format!("--regid={gid}"), "--clear-groups", "sh", "-c", script]);
    let out = cmd.current_dir(root).output().map_err(errno)?;
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    if out.status.success() {
        Ok(text(&out.stdout))
    } else {
        Err(format!("exit {:?}: {}{}", out.status.code(), text(&out.stdout), text(&out.stderr)))
    }
}

fn unlinked_meta(path: &Path) -> Outcome {
    use std::os::fd::AsFd;
    let fh = std::fs::OpenOptions::new().read(true).write(true).open(path).map_err(errno)?;
    std::fs::remove_file(path).map_err(errno)?;
    let fd = fh.as_fd();
    let mut out = Vec::new();
    let r = |r: Result<(), rustix::io::Errno>| r.map(|_| "ok".to_string()).unwrap_or_else(rx);
    out.push(r(rustix::fs::fchmod(fd, rustix::fs::Mode::from_raw_mode(0o640))));
    let (u, g) = (Some(rustix::fs::Uid::from_raw(7)), Some(rustix::fs::Gid::from_raw(8)));
    out.push(r(rustix::fs::fchown(fd, u, g)));
    out.push(r(rustix::fs::fsetxattr(fd, "user.u", b"v", rustix::fs::XattrFlags::empty())));
    let mut buf = [0u8; 16];
    out.push(match rustix::fs::fgetxattr(fd, "user.u", &mut buf[..]) {
        Ok(n) => String::from_utf8_lossy(&buf[..n]).into_owned(),
        Err(e) => rx(e),
    });
    out.push(r(rustix::fs::ftruncate(fd, 3)));
    let ts = rustix::fs::Timespec { tv_sec: 12345, tv_nsec: 0 };
    out.push(r(rustix::fs::futimens(fd, &rustix::fs::Timestamps { last_access: ts, last_modification: ts })));
    let md = fh.metadata().map_err(errno)?;
    out.push(format!("{} mtime={}", stat_line(&md), md.mtime()));
    Ok(out.join(" "))
}

/// Opens the directory `rel` under `root` one component at a time (an `O_PATH` fd).
pub fn open_deep_dir(root: &Path, rel: &str) -> Result<std::os::fd::OwnedFd, rustix::io::Errno> {
    use rustix::fs::{Mode, OFlags};
    let flags = OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC;
    let mut dir = rustix::fs::open(root, flags, Mode::empty())?;
    for comp in rel.split('/').filter(|c| !c.is_empty()) {
        dir = rustix::fs::openat(&dir, comp, flags | OFlags::NOFOLLOW, Mode::empty())?;
    }
    Ok(dir)
}

/// Whether `path` (followed) is a FIFO.
fn is_fifo(path: &Path) -> bool {
    use std::os::unix::fs::FileTypeExt;
    std::fs::metadata(path).is_ok_and(|m| m.file_type().is_fifo())
}
