//! What a container process becomes just before `execve`: its user and groups, its bounded
//! capabilities, `no_new_privs`, default signal handling, no inherited descriptors beyond
//! stdio; and `execve` itself.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};

use rustix::process::{Gid, Uid};
use rustix::thread::{CapabilitySet, CapabilitySets};

fn check(r: libc::c_int) -> io::Result<()> {
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// The highest capability number the kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(40)
}

/// Drops every capability not in `keep` (bit `1 << CAP_X`) from the bounding set, sets the
/// effective, permitted and inheritable sets to `keep` (within what the caller has) and
/// clears the ambient set.
pub fn bound_capabilities(keep: u64) -> io::Result<()> {
    for cap in 0..=last_cap() {
        if keep & (1u64 << cap) == 0 {
            // SAFETY: prctl(PR_CAPBSET_DROP, cap) takes integers.
            match check(unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) }) {
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {}
                other => other?,
            }
        }
    }
    let now = rustix::thread::capabilities(None)?;
    let keep = CapabilitySet::from_bits_retain(keep);
    let sets = CapabilitySets {
        effective: now.permitted & keep,
        permitted: now.permitted & keep,
        inheritable: now.permitted & keep,
    };
    rustix::thread::set_capabilities(None, sets)?;
    rustix::thread::clear_ambient_capability_set()?;
    Ok(())
}

/// Sets `no_new_privs`: setuid bits and file capabilities give nothing from now on.
pub fn set_no_new_privs() -> io::Result<()> {
    Ok(rustix::thread::set_no_new_privs(true)?)
}

/// Becomes `uid`:`gid` with supplementary `groups`. Groups that cannot be set (a user
/// namespace with `setgroups` denied) are skipped when `groups` is empty or equal to `[gid]`.
pub fn set_ids(uid: u32, gid: u32, groups: &[u32]) -> io::Result<()> {
    let gids: Vec<Gid> = groups.iter().map(|g| Gid::from_raw(*g)).collect();
    match rustix::thread::set_thread_groups(&gids) {
        Ok(()) => {}
        Err(rustix::io::Errno::PERM) if groups.iter().all(|g| *g == gid) => {}
        Err(e) => return Err(e.into()),
    }
    let g = Gid::from_raw(gid);
    rustix::thread::set_thread_res_gid(g, g, g)?;
    let u = Uid::from_raw(uid);
    rustix::thread::set_thread_res_uid(u, u, u)?;
    Ok(())
}

/// Restores default handling of every signal and unblocks them all (ignored signals and the
/// mask survive `execve`; Rust ignores SIGPIPE).
pub fn reset_signals() {
    for sig in 1..libc::SIGRTMAX() {
        if sig != libc::SIGKILL && sig != libc::SIGSTOP {
            // SAFETY: SIG_DFL is a valid disposition for every catchable signal.
            unsafe { libc::signal(sig, libc::SIG_DFL) };
        }
    }
    // SAFETY: an empty set is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Blocks (`block`) or unblocks `sigs` for the calling thread; threads it starts afterwards
/// inherit the mask, and so does a forked child. A blocked signal waits, pending, until some
/// thread unblocks it.
pub fn block_signals(sigs: &[i32], block: bool) {
    let how = if block { libc::SIG_BLOCK } else { libc::SIG_UNBLOCK };
    // SAFETY: the set is initialised by sigemptyset before use and lives across the calls.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in sigs {
            libc::sigaddset(&mut set, *s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// Makes `fd` the standard descriptor `target` (0, 1 or 2), kept across `execve`.
pub fn dup_to(fd: BorrowedFd<'_>, target: i32) -> io::Result<()> {
    // SAFETY: dup2 onto a standard descriptor this process owns.
    check(unsafe { libc::dup2(fd.as_raw_fd(), target) }).map(drop)
}

/// Marks every descriptor from 3 up close-on-exec.
pub fn cloexec_from_3() -> io::Result<()> {
    // SAFETY: close_range with CLOSE_RANGE_CLOEXEC only sets flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    if r == -1 { Err(io::Error::last_os_error()) } else { Ok(()) }
}

/// `execve(path, args, env)`; returns only on failure.
pub fn exec(path: &CString, args: &[CString], env: &[CString]) -> io::Error {
    let mut argv: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = env.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    // SAFETY: every pointer is to a NUL-terminated string that outlives the call; both
    // arrays end with a null pointer.
    unsafe { libc::execve(path.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
    io::Error::last_os_error()
}

/// Leaves the process now with `code`, without running destructors or flushing stdio
/// buffers the parent also holds (for a forked child that failed).
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit ends the process; nothing is left to run.
    unsafe { libc::_exit(code) }
}

/// The process's umask, read without changing it (`/proc/self/status`); 022 if unreadable.
pub fn current_umask() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("Umask:"))
        .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
        .unwrap_or(0o022)
}

/// Whether process `pid` holds `CAP_SYS_ADMIN` in this process's user namespace (the check the
/// kernel makes before showing `trusted.*` xattrs). False when it cannot be told.
pub fn has_sys_admin(pid: u32) -> bool {
    const CAP_SYS_ADMIN: u32 = 21;
    let same_ns = match (std::fs::metadata(format!("/proc/{pid}/ns/user")), std::fs::metadata("/proc/self/ns/user")) {
        (Ok(a), Ok(b)) => std::os::unix::fs::MetadataExt::ino(&a) == std::os::unix::fs::MetadataExt::ino(&b),
        _ => false,
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let caps =
        status.lines().find_map(|l| l.strip_prefix("CapEff:")).and_then(|v| u64::from_str_radix(v.trim(), 16).ok());
    same_ns && caps.is_some_and(|c| c & (1 << CAP_SYS_ADMIN) != 0)
}
