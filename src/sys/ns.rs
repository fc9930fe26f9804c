//! Namespaces and processes for containers: `unshare`, `setns` through a pidfd, `fork`,
//! `waitpid`, the hostname, bringing the loopback interface up, and the prctls a monitor uses.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};

use rustix::process::{Pid, PidfdFlags, WaitOptions};
use rustix::thread::{ThreadNameSpaceType, UnshareFlags};

/// A set of namespaces (the `CLONE_NEW*` bits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Namespaces {
    /// `CLONE_NEWUSER`.
    pub user: bool,
    /// `CLONE_NEWNS`.
    pub mount: bool,
    /// `CLONE_NEWPID`.
    pub pid: bool,
    /// `CLONE_NEWUTS`.
    pub uts: bool,
    /// `CLONE_NEWIPC`.
    pub ipc: bool,
    /// `CLONE_NEWNET`.
    pub net: bool,
}

impl Namespaces {
    fn bits(self) -> u32 {
        let pairs = [
            (self.user, UnshareFlags::NEWUSER),
            (self.mount, UnshareFlags::NEWNS),
            (self.pid, UnshareFlags::NEWPID),
            (self.uts, UnshareFlags::NEWUTS),
            (self.ipc, UnshareFlags::NEWIPC),
            (self.net, UnshareFlags::NEWNET),
        ];
        pairs.iter().filter(|(on, _)| *on).fold(0, |acc, (_, f)| acc | f.bits())
    }
}

/// `unshare(2)` of `ns`. `user` needs a single-threaded process; `mount` one that shares no
/// filesystem context with other threads.
pub fn unshare(ns: Namespaces) -> io::Result<()> {
    // SAFETY: unsharing namespaces (not CLONE_FILES/CLONE_FS) changes nothing the Rust runtime
    // relies on; the callers are single-threaded when they unshare the user namespace.
    unsafe { rustix::thread::unshare_unsafe(UnshareFlags::from_bits_retain(ns.bits())) }?;
    Ok(())
}

/// Joins the namespaces `ns` of the process behind `pidfd` at once (`setns(pidfd, flags)`).
pub fn join(pidfd: BorrowedFd<'_>, ns: Namespaces) -> io::Result<()> {
    rustix::thread::move_into_thread_name_spaces(pidfd, ThreadNameSpaceType::from_bits_retain(ns.bits()))?;
    Ok(())
}

/// A pidfd for `pid`.
pub fn pidfd(pid: i32) -> io::Result<OwnedFd> {
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ESRCH))?;
    Ok(rustix::process::pidfd_open(pid, PidfdFlags::empty())?)
}

/// Waits until `peer` (a socket) is closed by the other side or the process behind `pidfd`
/// ends; in the first case sends that process `SIGKILL`. `Ok(true)`: it was killed.
pub fn kill_when_closed(pidfd: BorrowedFd<'_>, peer: BorrowedFd<'_>) -> io::Result<bool> {
    let mut fds = [
        libc::pollfd { fd: pidfd.as_raw_fd(), events: libc::POLLIN, revents: 0 },
        libc::pollfd { fd: peer.as_raw_fd(), events: libc::POLLRDHUP, revents: 0 },
    ];
    loop {
        // SAFETY: `fds` is an array of two initialised pollfds, alive for the call.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, -1) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if fds[0].revents != 0 {
            return Ok(false);
        }
        if fds[1].revents & libc::POLLNVAL != 0 {
            return Err(io::Error::from_raw_os_error(libc::EBADF));
        }
        if fds[1].revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0 {
            // The pidfd names the process itself: a reaped and reused pid is never signalled.
            rustix::process::pidfd_send_signal(pidfd, rustix::process::Signal::KILL)?;
            return Ok(true);
        }
    }
}

/// `fork(2)`: `None` in the child, the child's pid in the parent. Call it only while the
/// process has one thread.
pub fn fork() -> io::Result<Option<i32>> {
    // SAFETY: callers fork while single-threaded, so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid)),
    }
}

/// Forks a child that is PID 1 of a new PID namespace (`clone(CLONE_NEWPID)` with fork
/// semantics), and of a new network namespace too with `net`: `None` in the child, its pid in
/// the parent. Unlike `unshare(CLONE_NEWPID)`, the caller may still start threads afterwards.
/// Call it only while the process has one thread.
pub fn fork_into_new_pid_namespace(net: bool) -> io::Result<Option<i32>> {
    let net = if net { libc::CLONE_NEWNET } else { 0 };
    let flags = (libc::CLONE_NEWPID | net | libc::SIGCHLD) as libc::c_ulong;
    // SAFETY: without CLONE_VM and with a null stack, clone behaves as fork: the child gets a
    // copy of the address space. The caller is single-threaded, so no lock is held elsewhere.
    let r = unsafe { libc::syscall(libc::SYS_clone, flags, 0usize, 0usize, 0usize, 0usize) };
    match r {
        -1 => Err(io::Error::last_os_error()),
        0 => Ok(None),
        pid => Ok(Some(pid as i32)),
    }
}

/// How a child ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// `exit(code)`.
    Code(i32),
    /// Killed by a signal.
    Signal(i32),
}

impl Exit {
    /// The shell's view: the code, or 128 + the signal.
    pub fn status(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
        }
    }
}

/// Waits for the child `pid` to end (retrying on EINTR, ignoring stops).
pub fn wait_child(pid: i32) -> io::Result<Exit> {
    let p = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
    loop {
        match rustix::process::waitpid(Some(p), WaitOptions::empty()) {
            Ok(Some((_, st))) => {
                if let Some(c) = st.exit_status() {
                    return Ok(Exit::Code(c));
                }
                if let Some(s) = st.terminating_signal() {
                    return Ok(Exit::Signal(s));
                }
            }
            Ok(None) => {}
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Reaps any child that has ended, without waiting; returns its pid and how it ended.
pub fn reap_any() -> Option<(i32, Exit)> {
    // wait4(-1): any child. (`waitpid(None, ..)` is wait4(0): only the caller's process group,
    // which misses orphans of other groups.)
    let (pid, st) = rustix::process::wait(WaitOptions::NOHANG).ok()??;
    let exit = match (st.exit_status(), st.terminating_signal()) {
        (Some(c), _) => Exit::Code(c),
        (None, Some(s)) => Exit::Signal(s),
        _ => return None,
    };
    Some((pid.as_raw_nonzero().get(), exit))
}

/// Sends `sig` to `pid`.
pub fn kill(pid: i32, sig: i32) -> io::Result<()> {
    // SAFETY: kill(2) has no memory-safety requirements.
    if unsafe { libc::kill(pid, sig) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// `sethostname(2)` (in the caller's UTS namespace).
pub fn set_hostname(name: &str) -> io::Result<()> {
    Ok(rustix::system::sethostname(name.as_bytes())?)
}

/// Brings the loopback interface `lo` of the caller's network namespace up.
pub fn loopback_up() -> io::Result<()> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket(2) returns a new fd we own (or -1).
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `raw` is a fresh fd owned by nobody else.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: an all-zero ifreq is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS/SIOCSIFFLAGS read and write the ifreq we pass, which lives across the calls.
    unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            return Err(io::Error::last_os_error());
        }
        req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Makes the caller a child subreaper: orphans of its descendants come to it.
pub fn set_child_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER) takes an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Asks for `sig` when the parent process dies.
pub fn set_parent_death_signal(sig: i32) -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes an integer argument.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, sig, 0, 0, 0) } == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Fields 3 and on of `/proc/PID/stat` (the command, field 2, may hold spaces and parentheses).
fn stat_fields(pid: i32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    Some(rest.split(' ').map(str::to_string).collect())
}

/// The start time of `pid` (clock ticks since boot, field 22 of `/proc/PID/stat`): with the pid,
/// it names one process for good.
pub fn start_time(pid: i32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` exists and has not ended (a zombie waiting for its parent has ended).
pub fn is_running(pid: i32) -> bool {
    pid > 0 && stat_fields(pid).and_then(|f| f.first().cloned()).is_some_and(|s| s != "Z" && s != "X")
}
