//! Freezing a container's processes while its upper dir is read (`strata commit --pause`), as
//! `docker commit` pauses a container.
//!
//! The cgroup v2 freezer is used when the container's PID 1 has a cgroup of its own, holding
//! only processes of its PID namespace (never this process, nor anything else on the host).
//! Otherwise every process of the container's PID namespace gets `SIGSTOP` (and later
//! `SIGCONT`; processes that were stopped already are left stopped).
//!
//! Thawing is done by a watchdog process forked once everything is frozen: it waits for the
//! end of a pipe whose other end only this process holds, then thaws and exits. So the
//! container is thawed when [`Frozen`] is dropped, and also when this process dies — even by
//! `SIGKILL`.

use std::ffi::CString;
use std::fs;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::pipe::PipeFlags;
use rustix::process::{Pid, Signal};

/// A frozen container; thawed when dropped.
#[derive(Debug)]
pub struct Frozen {
    how: How,
    /// The watchdog's pid and the write end of its pipe.
    watchdog: Option<(i32, OwnedFd)>,
}

#[derive(Debug)]
enum How {
    /// `cgroup.freeze` of this cgroup dir was set to 1.
    Cgroup(PathBuf),
    /// These processes got `SIGSTOP`.
    Signals(Vec<i32>),
}

impl Frozen {
    /// How the container was frozen, in words.
    pub fn describe(&self) -> String {
        match &self.how {
            How::Cgroup(dir) => format!("cgroup freezer of {}", dir.display()),
            How::Signals(pids) => format!("SIGSTOP to {} processes", pids.len()),
        }
    }
}

/// Freezes every process of the container whose PID 1 is `pid` (a host pid).
pub fn freeze(pid: i32) -> io::Result<Frozen> {
    let ns = pid_ns(pid)?;
    let how = match own_cgroup(pid, ns)? {
        Some(dir) => {
            fs::write(dir.join("cgroup.freeze"), "1")?;
            wait_until(|| fs::read_to_string(dir.join("cgroup.events")).is_ok_and(|e| e.contains("frozen 1")));
            How::Cgroup(dir)
        }
        None => How::Signals(stop_all(ns)?),
    };
    let watchdog = match spawn_watchdog(&how) {
        Ok(w) => Some(w),
        Err(e) => {
            log::warn!("no watchdog to thaw the container if this process dies: {e}");
            None
        }
    };
    Ok(Frozen { how, watchdog })
}

impl Drop for Frozen {
    fn drop(&mut self) {
        match self.watchdog.take() {
            Some((child, end)) => {
                drop(end);
                let _ = rustix::process::waitpid(Pid::from_raw(child), rustix::process::WaitOptions::empty());
            }
            None => thaw(&self.how),
        }
    }
}

fn thaw(how: &How) {
    match how {
        How::Cgroup(dir) => {
            let _ = fs::write(dir.join("cgroup.freeze"), "0");
        }
        How::Signals(pids) => {
            for &p in pids {
                if let Some(p) = Pid::from_raw(p) {
                    let _ = rustix::process::kill_process(p, Signal::CONT);
                }
            }
        }
    }
}

/// The identity (device, inode) of a process's PID namespace.
fn pid_ns(pid: i32) -> io::Result<(u64, u64)> {
    let md = fs::metadata(format!("/proc/{pid}/ns/pid"))?;
    Ok((md.dev(), md.ino()))
}

/// The cgroup v2 path of a process (`0::/path`).
fn cgroup_of(pid: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    text.lines().find_map(|l| l.strip_prefix("0::")).map(str::to_string)
}

/// The container's cgroup dir, if it has one of its own that only its processes are in.
fn own_cgroup(pid: i32, ns: (u64, u64)) -> io::Result<Option<PathBuf>> {
    let (Some(theirs), Some(ours)) = (cgroup_of(&pid.to_string()), cgroup_of("self")) else { return Ok(None) };
    if theirs == ours || theirs == "/" || ours.starts_with(&format!("{theirs}/")) {
        return Ok(None);
    }
    let dir = Path::new("/sys/fs/cgroup").join(theirs.trim_start_matches('/'));
    if !dir.join("cgroup.freeze").exists() {
        return Ok(None);
    }
    let mut procs = Vec::new();
    collect_procs(&dir, &mut procs)?;
    let all_ours = procs.iter().all(|p| pid_ns(*p).map(|n| n == ns).unwrap_or(true));
    Ok(all_ours.then_some(dir))
}

fn collect_procs(dir: &Path, out: &mut Vec<i32>) -> io::Result<()> {
    let procs = fs::read_to_string(dir.join("cgroup.procs"))?;
    out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    for entry in fs::read_dir(dir)?.flatten() {
        if entry.file_type().is_ok_and(|t| t.is_dir()) {
            collect_procs(&entry.path(), out)?;
        }
    }
    Ok(())
}

/// Stops every process of the PID namespace `ns`; returns those it stopped.
fn stop_all(ns: (u64, u64)) -> io::Result<Vec<i32>> {
    let mut stopped: Vec<i32> = Vec::new();
    let mut left_alone: Vec<i32> = Vec::new();
    // Processes may fork while others are being stopped: repeat until a pass finds none new.
    for _ in 0..10 {
        let mut fresh = Vec::new();
        for entry in fs::read_dir("/proc")?.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
            if stopped.contains(&p) || left_alone.contains(&p) || pid_ns(p).ok() != Some(ns) {
                continue;
            }
            if state_of(p) == Some('T') {
                left_alone.push(p);
                continue;
            }
            if let Some(pid) = Pid::from_raw(p)
                && rustix::process::kill_process(pid, Signal::STOP).is_ok()
            {
                fresh.push(p);
            }
        }
        if fresh.is_empty() {
            break;
        }
        wait_until(|| fresh.iter().all(|&p| matches!(state_of(p), Some('T') | None)));
        stopped.extend(fresh);
    }
    Ok(stopped)
}

/// The state letter of a process (`R`, `S`, `T`, ...), `None` if it is gone.
fn state_of(pid: i32) -> Option<char> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(')')?.1.split_whitespace().next()?.chars().next()
}

fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(2);
    while !done() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Forks the watchdog; returns its pid and the write end of its pipe.
fn spawn_watchdog(how: &How) -> io::Result<(i32, OwnedFd)> {
    // Everything the child needs is made before the fork: it only makes raw system calls.
    let (pids, freeze_file): (Vec<i32>, Option<CString>) = match how {
        How::Signals(p) => (p.clone(), None),
        How::Cgroup(dir) => {
            let path = dir.join("cgroup.freeze");
            (Vec::new(), Some(CString::new(path.as_os_str().as_encoded_bytes()).map_err(io::Error::other)?))
        }
    };
    let (read_end, write_end) = rustix::pipe::pipe_with(PipeFlags::CLOEXEC)?;
    // SAFETY: the child runs only async-signal-safe system calls on data made before the fork,
    // then `_exit`s; it never returns into Rust code of the parent.
    let child = unsafe { libc::fork() };
    if child < 0 {
        return Err(io::Error::last_os_error());
    }
    if child == 0 {
        // SAFETY: as above.
        unsafe { watchdog(read_end.as_raw_fd(), write_end.as_raw_fd(), &pids, freeze_file.as_ref()) }
    }
    drop(read_end);
    Ok((child, write_end))
}

/// The watchdog's body: waits for the pipe to close, thaws, exits.
///
/// # Safety
/// Only to be called in a freshly forked child.
unsafe fn watchdog(read_fd: i32, write_fd: i32, pids: &[i32], freeze_file: Option<&CString>) -> ! {
    // SAFETY: raw system calls on fds and buffers that are valid in the child.
    unsafe {
        libc::close(write_fd);
        let mut buf = [0u8; 1];
        while libc::read(read_fd, buf.as_mut_ptr().cast(), 1) < 0 && *libc::__errno_location() == libc::EINTR {}
        for &p in pids {
            libc::kill(p, libc::SIGCONT);
        }
        if let Some(path) = freeze_file {
            let fd = libc::open(path.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
            if fd >= 0 {
                libc::write(fd, b"0".as_ptr().cast(), 1);
                libc::close(fd);
            }
        }
        libc::_exit(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    #[test]
    fn stops_and_continues_a_pid_namespace() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("skipped: needs root (unshare --pid)");
            return;
        }
        let mut child = Command::new("unshare")
            .args(["--pid", "--fork", "--kill-child", "sh", "-c", "sleep 30 & sleep 30"])
            .spawn()
            .unwrap();
        // The namespace's PID 1 is the forked sh: wait until its sleeps exist.
        std::thread::sleep(Duration::from_millis(300));
        let init = fs::read_to_string(format!("/proc/{}/task/{}/children", child.id(), child.id())).unwrap();
        let init: i32 = init.split_whitespace().next().unwrap().parse().unwrap();
        let frozen = freeze(init).unwrap();
        assert!(frozen.describe().starts_with("SIGSTOP to"), "{}", frozen.describe());
        assert_eq!(state_of(init), Some('T'));
        drop(frozen);
        wait_until(|| state_of(init) != Some('T'));
        assert_ne!(state_of(init), Some('T'));
        child.kill().unwrap();
        child.wait().unwrap();
    }
}
