//! Mount-table helpers: unmounting, and finding what is mounted where.

use std::path::Path;

use rustix::mount::UnmountFlags;

use super::Result;

/// `umount2(path, flags)`; `lazy` detaches (MNT_DETACH).
pub fn unmount(path: &Path, lazy: bool) -> Result<()> {
    let flags = if lazy { UnmountFlags::DETACH } else { UnmountFlags::empty() };
    rustix::mount::unmount(path, flags)
}

/// Where root turns FUSE over io_uring on and off (Linux 6.14+).
pub const FUSE_URING_PARAM: &str = "/sys/module/fuse/parameters/enable_uring";

/// Whether the kernel offers FUSE over io_uring to new mounts (`enable_uring` is `Y`).
pub fn fuse_uring_enabled() -> bool {
    std::fs::read_to_string(FUSE_URING_PARAM).is_ok_and(|v| v.trim() == "Y")
}

/// Whether `path` is a mount point, by `/proc/self/mountinfo`.
pub fn is_mount_point(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return false;
    };
    info.lines().any(|line| line.split(' ').nth(4).map(unescape_mount_path).as_deref() == Some(canon.as_os_str()))
}

/// `/proc/self/mountinfo` escapes space, tab, newline and backslash as octal `\NNN`.
pub fn unescape_mount_path(s: &str) -> std::ffi::OsString {
    use std::os::unix::ffi::OsStringExt;
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    std::ffi::OsString::from_vec(out)
}
