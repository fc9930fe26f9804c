//! Extended attributes of one entry, addressed by its parent fd and name.
//!
//! On Linux 6.13+ this is one `getxattrat`/`listxattrat`/`setxattrat`/`removexattrat` call with
//! `AT_SYMLINK_NOFOLLOW` (the directory itself is named `.`). Older kernels name the entry
//! through its parent's `/proc/self/fd/N` magic link plus one component, with the `l*xattr`
//! calls: the parent is the exact directory of the fd, and the final name is never followed.

use std::ffi::{CString, OsStr, OsString};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::fs::XattrFlags;

use super::fd::check_name;
use super::{Errno, Result};

/// How `set` treats an existing attribute.
pub use rustix::fs::XattrFlags as SetFlags;

/// The path naming the object, and whether its last component must be followed: the
/// `/proc/self/fd/N` magic link (no name) is followed to the directory itself; a name is not.
fn target(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Result<(PathBuf, bool)> {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    if let Some(name) = name {
        check_name(name)?;
        p.push(name);
        return Ok((p, false));
    }
    Ok((p, true))
}

/// Whether the `*xattrat` syscalls exist (unknown until the first call says otherwise).
static NO_XATTRAT: AtomicBool = AtomicBool::new(false);

const SYS_SETXATTRAT: libc::c_long = 463;
const SYS_GETXATTRAT: libc::c_long = 464;
const SYS_LISTXATTRAT: libc::c_long = 465;
const SYS_REMOVEXATTRAT: libc::c_long = 466;

/// `struct xattr_args` of the `*xattrat` syscalls.
#[repr(C)]
struct XattrArgs {
    value: u64,
    size: u32,
    flags: u32,
}

fn c(s: &OsStr) -> Result<CString> {
    CString::new(s.as_bytes()).map_err(|_| Errno::INVAL)
}

/// Runs one `*xattrat` syscall; `None` when the kernel does not have it, or when the fd itself
/// is the object and is not a directory (an `O_PATH` fd of a file whose last name is gone: the
/// `/proc/self/fd` path reaches it, `AT_EMPTY_PATH` refuses `O_PATH` fds).
fn xattrat(call: impl FnOnce(&CString) -> libc::c_long, name: Option<&OsStr>) -> Option<Result<usize>> {
    if NO_XATTRAT.load(Ordering::Relaxed) {
        return None;
    }
    let path = match name {
        Some(n) => match check_name(n).and_then(|()| c(n)) {
            Ok(p) => p,
            Err(e) => return Some(Err(e)),
        },
        None => CString::from(c"."),
    };
    let r = call(&path);
    if r >= 0 {
        return Some(Ok(r as usize));
    }
    let e = Errno::from_raw_os_error(std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO));
    if e == Errno::NOSYS {
        NO_XATTRAT.store(true, Ordering::Relaxed);
        return None;
    }
    if e == Errno::NOTDIR && name.is_none() {
        return None;
    }
    Some(Err(e))
}

fn get_at(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &CString, buf: &mut [u8]) -> Option<Result<usize>> {
    xattrat(
        |path| {
            let mut args = XattrArgs { value: buf.as_mut_ptr() as u64, size: buf.len() as u32, flags: 0 };
            // SAFETY: valid NUL-terminated strings and a buffer of the size given, for the call.
            unsafe {
                libc::syscall(
                    SYS_GETXATTRAT,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    key.as_ptr(),
                    &mut args as *mut XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            }
        },
        name,
    )
}

/// Reads attribute `key` of entry `name` in `dir` (or of `dir` itself). Missing is `None`.
pub fn get(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr) -> Result<Option<Vec<u8>>> {
    let ckey = c(key)?;
    let mut buf = vec![0u8; 256];
    loop {
        match get_at(dir, name, &ckey, &mut buf) {
            None => break,
            Some(Ok(n)) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Some(Err(Errno::NODATA)) => return Ok(None),
            Some(Err(Errno::RANGE)) => {
                let size = get_at(dir, name, &ckey, &mut []).unwrap_or(Err(Errno::RANGE))?;
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Some(Err(e)) => return Err(e),
        }
    }
    get_proc(dir, name, key)
}

fn get_proc(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr) -> Result<Option<Vec<u8>>> {
    let (path, follow) = target(dir, name)?;
    let mut buf = vec![0u8; 256];
    loop {
        let got = if follow {
            rustix::fs::getxattr(&path, key, &mut buf[..])
        } else {
            rustix::fs::lgetxattr(&path, key, &mut buf[..])
        };
        match got {
            Ok(n) => {
                buf.truncate(n);
                return Ok(Some(buf));
            }
            Err(Errno::NODATA) => return Ok(None),
            Err(Errno::RANGE) => {
                let size = if follow {
                    rustix::fs::getxattr_query(&path, key)?
                } else {
                    rustix::fs::lgetxattr_query(&path, key)?
                };
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    }
}

fn list_at(dir: BorrowedFd<'_>, name: Option<&OsStr>, buf: &mut [u8]) -> Option<Result<usize>> {
    xattrat(
        |path| {
            // SAFETY: a valid NUL-terminated path and a buffer of the size given, for the call.
            unsafe {
                libc::syscall(
                    SYS_LISTXATTRAT,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    buf.as_mut_ptr(),
                    buf.len(),
                )
            }
        },
        name,
    )
}

/// Lists the attribute names of entry `name` in `dir` (or of `dir` itself).
pub fn list(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Result<Vec<OsString>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match list_at(dir, name, &mut buf) {
            None => break,
            Some(Ok(n)) => return Ok(split_names(&buf[..n])),
            Some(Err(Errno::RANGE)) => {
                let size = list_at(dir, name, &mut []).unwrap_or(Err(Errno::RANGE))?;
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Some(Err(e)) => return Err(e),
        }
    }
    list_proc(dir, name)
}

fn split_names(b: &[u8]) -> Vec<OsString> {
    b.split(|&c| c == 0).filter(|s| !s.is_empty()).map(|s| OsString::from_vec(s.to_vec())).collect()
}

fn list_proc(dir: BorrowedFd<'_>, name: Option<&OsStr>) -> Result<Vec<OsString>> {
    let (path, follow) = target(dir, name)?;
    let mut buf = vec![0u8; 1024];
    let n = loop {
        let got = if follow {
            rustix::fs::listxattr(&path, &mut buf[..])
        } else {
            rustix::fs::llistxattr(&path, &mut buf[..])
        };
        match got {
            Ok(n) => break n,
            Err(Errno::RANGE) => {
                let size =
                    if follow { rustix::fs::listxattr_query(&path)? } else { rustix::fs::llistxattr_query(&path)? };
                buf.resize(size.max(buf.len() * 2), 0);
            }
            Err(e) => return Err(e),
        }
    };
    Ok(buf[..n].split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| OsString::from_vec(s.to_vec())).collect())
}

/// Sets attribute `key` of entry `name` in `dir` (or of `dir` itself).
pub fn set(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr, value: &[u8], flags: XattrFlags) -> Result<()> {
    let ckey = c(key)?;
    let r = xattrat(
        |path| {
            let args = XattrArgs { value: value.as_ptr() as u64, size: value.len() as u32, flags: flags.bits() };
            // SAFETY: valid NUL-terminated strings and a value buffer of the size given.
            unsafe {
                libc::syscall(
                    SYS_SETXATTRAT,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    ckey.as_ptr(),
                    &args as *const XattrArgs,
                    std::mem::size_of::<XattrArgs>(),
                )
            }
        },
        name,
    );
    if let Some(r) = r {
        return r.map(drop);
    }
    match target(dir, name)? {
        (path, true) => rustix::fs::setxattr(path, key, value, flags),
        (path, false) => rustix::fs::lsetxattr(path, key, value, flags),
    }
}

/// Removes attribute `key` of entry `name` in `dir` (or of `dir` itself).
pub fn remove(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr) -> Result<()> {
    let ckey = c(key)?;
    let r = xattrat(
        |path| {
            // SAFETY: valid NUL-terminated strings for the call.
            unsafe {
                libc::syscall(
                    SYS_REMOVEXATTRAT,
                    dir.as_raw_fd(),
                    path.as_ptr(),
                    libc::AT_SYMLINK_NOFOLLOW,
                    ckey.as_ptr(),
                )
            }
        },
        name,
    );
    if let Some(r) = r {
        return r.map(drop);
    }
    match target(dir, name)? {
        (path, true) => rustix::fs::removexattr(path, key),
        (path, false) => rustix::fs::lremovexattr(path, key),
    }
}

/// Whether the attribute `key` holds exactly `value`.
pub fn equals(dir: BorrowedFd<'_>, name: Option<&OsStr>, key: &OsStr, value: &[u8]) -> bool {
    matches!(get(dir, name, key), Ok(Some(v)) if v == value)
}

/// Turns a name into an `OsStr` key (convenience for literal names).
pub fn key(s: &str) -> &OsStr {
    OsStr::from_bytes(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use std::os::fd::AsFd;

    use super::*;

    #[test]
    fn syscall_and_proc_paths_agree() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(t.path().join("f"), "x").unwrap();
        let dir = crate::sys::fd::open_user_dir(t.path()).unwrap();
        let (d, f) = (dir.as_fd(), Some(OsStr::new("f")));
        set(d, f, key("user.a"), b"1", XattrFlags::empty()).unwrap();
        set(d, None, key("user.d"), b"2", XattrFlags::empty()).unwrap();
        assert_eq!(get(d, f, key("user.a")).unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(get_proc(d, f, key("user.a")).unwrap().as_deref(), Some(&b"1"[..]));
        assert_eq!(get(d, None, key("user.d")).unwrap(), get_proc(d, None, key("user.d")).unwrap());
        assert_eq!(list(d, f).unwrap(), list_proc(d, f).unwrap());
        assert_eq!(list(d, None).unwrap(), vec![OsString::from("user.d")]);
        assert_eq!(get(d, f, key("user.none")).unwrap(), None);
        let long = vec![7u8; 3000];
        set(d, f, key("user.long"), &long, XattrFlags::empty()).unwrap();
        assert_eq!(get(d, f, key("user.long")).unwrap(), Some(long));
        remove(d, f, key("user.a")).unwrap();
        assert_eq!(get(d, f, key("user.a")).unwrap(), None);
        assert_eq!(get(d, Some(OsStr::new("../f")), key("user.a")), Err(Errno::INVAL), "one component only");
        // An O_PATH fd of a file is the object itself.
        let file = rustix::fs::openat(d, "f", rustix::fs::OFlags::PATH, rustix::fs::Mode::empty()).unwrap();
        set(file.as_fd(), None, key("user.p"), b"3", XattrFlags::empty()).unwrap();
        assert_eq!(get(file.as_fd(), None, key("user.p")).unwrap().as_deref(), Some(&b"3"[..]));
        assert!(list(file.as_fd(), None).unwrap().contains(&OsString::from("user.p")));
        remove(file.as_fd(), None, key("user.p")).unwrap();
    }
}
