//! A container's namespaces: which ones it gets, entering them (hostname, loopback), the user
//! namespace of a rootless container and its id mapping (newuidmap/newgidmap with the ranges of
//! /etc/subuid and /etc/subgid when present, else the caller alone mapped to root), and which
//! namespaces `exec` joins.

use std::io;
use std::os::fd::AsFd;
use std::path::Path;
use std::process::Command;

use super::config::RunConfig;
use super::report::{self, Report};
use super::syscall::Syscall;
use crate::sys::ns::{self, Namespaces};
use crate::sys::{creds, fdpass};

/// What went wrong with a namespace; each names the namespace or process at fault.
#[derive(Debug, thiserror::Error)]
pub enum NsError {
    /// `unshare` failed.
    #[error("creating namespaces {ns:?}: {source}")]
    Unshare {
        /// What was asked.
        ns: Namespaces,
        /// The cause.
        source: io::Error,
    },
    /// `sethostname` failed.
    #[error("setting hostname {name:?}: {source}")]
    Hostname {
        /// The hostname.
        name: String,
        /// The cause.
        source: io::Error,
    },
    /// `lo` could not be brought up.
    #[error("bringing the loopback interface up: {0}")]
    Loopback(io::Error),
    /// Work done as root of a mapped user namespace failed.
    #[error("{0}")]
    AsMappedRoot(String),
    /// The user namespace of `pid` could not be given its id mapping.
    #[error("mapping user ids of process {pid}: {reason}")]
    Map {
        /// The process.
        pid: i32,
        /// Why.
        reason: String,
    },
}

/// The namespaces a container's PID 1 unshares itself (its PID and network namespaces, and the
/// user namespace of a rootless container, come from the monitor).
pub fn container_namespaces() -> Namespaces {
    Namespaces { mount: true, uts: true, ipc: true, ..Default::default() }
}

/// Enters the container's own namespaces: unshare, hostname, loopback up (in a network
/// namespace of its own).
pub fn enter(sys: &dyn Syscall, cfg: &RunConfig) -> Result<(), NsError> {
    let ns = container_namespaces();
    sys.unshare(ns).map_err(|source| NsError::Unshare { ns, source })?;
    sys.set_hostname(&cfg.hostname).map_err(|source| NsError::Hostname { name: cfg.hostname.clone(), source })?;
    if cfg.network.own_namespace() {
        sys.loopback_up().map_err(NsError::Loopback)?;
    }
    Ok(())
}

/// A subordinate id range: `start`, `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SubRange {
    /// First host id.
    pub start: u32,
    /// How many.
    pub count: u32,
}

/// The first range of `/etc/subuid`-format `content` for the user `name` or id `id`.
pub fn sub_range(content: &str, name: &str, id: u32) -> Option<SubRange> {
    content.lines().find_map(|line| {
        let mut f = line.trim().split(':');
        let (who, start, count) = (f.next()?, f.next()?, f.next()?);
        if who != name && who.parse::<u32>().ok() != Some(id) {
            return None;
        }
        Some(SubRange { start: start.parse().ok()?, count: count.parse().ok()? }).filter(|r| r.count > 0)
    })
}

/// The name of the user `uid` in `/etc/passwd` (empty if none).
fn user_name(uid: u32) -> String {
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    let entry = passwd.lines().find(|l| l.split(':').nth(2).and_then(|u| u.parse::<u32>().ok()) == Some(uid));
    entry.and_then(|l| l.split(':').next()).unwrap_or_default().to_string()
}

/// Gives the user namespace of `pid` its mapping: the caller is root inside; with a subordinate
/// range and newuidmap/newgidmap, ids 1.. map onto that range too.
pub fn map_ids(pid: i32) -> Result<(), NsError> {
    let (uid, gid) = (rustix::process::getuid().as_raw(), rustix::process::getgid().as_raw());
    let name = user_name(uid);
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let ranges = (sub_range(&read("/etc/subuid"), &name, uid), sub_range(&read("/etc/subgid"), &name, gid));
    if let (Some(ur), Some(gr)) = ranges
        && super::network::find_program("newuidmap").is_some()
        && super::network::find_program("newgidmap").is_some()
    {
        run_map_helper("newuidmap", pid, uid, ur)?;
        return run_map_helper("newgidmap", pid, gid, gr);
    }
    let map_err = |e: io::Error| NsError::Map { pid, reason: e.to_string() };
    let proc = Path::new("/proc").join(pid.to_string());
    std::fs::write(proc.join("setgroups"), "deny").map_err(map_err)?;
    std::fs::write(proc.join("uid_map"), format!("0 {uid} 1\n")).map_err(map_err)?;
    std::fs::write(proc.join("gid_map"), format!("0 {gid} 1\n")).map_err(map_err)?;
    Ok(())
}

/// Runs `f` in a child process that is root of a new user namespace mapped as a rootless
/// container's ([`map_ids`]): there it may change what a container made with any id of the
/// caller's ranges (which the caller itself may not remove). Its error comes back as one line.
/// Call it while the process has one thread.
pub fn as_mapped_root(f: impl FnOnce() -> Result<(), String>) -> Result<(), NsError> {
    let io_err = |e: io::Error| NsError::AsMappedRoot(e.to_string());
    let (ours, theirs) = fdpass::socket_pair().map_err(io_err)?;
    let Some(pid) = ns::fork().map_err(io_err)? else {
        drop(ours);
        let sock = theirs.as_fd();
        let done = ns::unshare(Namespaces { user: true, ..Default::default() })
            .and_then(|()| report::send(sock, &Report::UserNs, None))
            .and_then(|()| report::recv(sock))
            .map_err(|e| e.to_string())
            .and_then(|(r, _)| if r == Report::Mapped { f() } else { Err("the user namespace was not mapped".into()) });
        if let Err(message) = done {
            let _ = report::send(sock, &Report::Error { code: 1, message }, None);
            creds::exit_now(1)
        }
        creds::exit_now(0)
    };
    drop(theirs);
    let result = match report::recv(ours.as_fd()).map_err(io_err)? {
        (Report::UserNs, _) => {
            let mapped = map_ids(pid);
            let reply = if mapped.is_ok() { Report::Mapped } else { Report::Other("not mapped".into()) };
            report::send(ours.as_fd(), &reply, None).map_err(io_err)?;
            mapped.and_then(|()| match report::recv(ours.as_fd()).map_err(io_err)? {
                (Report::End, _) => Ok(()),
                (Report::Error { message, .. }, _) => Err(NsError::AsMappedRoot(message)),
                (other, _) => Err(NsError::AsMappedRoot(format!("unexpected report {other:?}"))),
            })
        }
        (Report::Error { message, .. }, _) => Err(NsError::AsMappedRoot(message)),
        (other, _) => Err(NsError::AsMappedRoot(format!("unexpected report {other:?}"))),
    };
    let _ = ns::wait_child(pid);
    result
}

fn run_map_helper(helper: &str, pid: i32, id: u32, r: SubRange) -> Result<(), NsError> {
    let args =
        [pid.to_string(), "0".into(), id.to_string(), "1".into(), "1".into(), r.start.to_string(), r.count.to_string()];
    let out = Command::new(helper)
        .args(&args)
        .output()
        .map_err(|e| NsError::Map { pid, reason: format!("running {helper}: {e}") })?;
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(NsError::Map { pid, reason: format!("{helper} failed: {msg}") });
    }
    Ok(())
}

/// The namespaces of `pid` that differ from the caller's: what `exec` joins.
pub fn to_join(pid: i32) -> io::Result<Namespaces> {
    let differs = |name: &str| -> io::Result<bool> {
        use std::os::unix::fs::MetadataExt;
        let theirs = std::fs::metadata(format!("/proc/{pid}/ns/{name}"))?;
        let ours = std::fs::metadata(format!("/proc/self/ns/{name}"))?;
        Ok((theirs.dev(), theirs.ino()) != (ours.dev(), ours.ino()))
    };
    Ok(Namespaces {
        user: differs("user")?,
        mount: differs("mnt")?,
        pid: differs("pid")?,
        uts: differs("uts")?,
        ipc: differs("ipc")?,
        net: differs("net")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::syscall::{Call, RecordingSyscall};

    #[test]
    fn network_none_gets_loopback_up() {
        let sys = RecordingSyscall::default();
        let cfg = RunConfig { hostname: "box".into(), ..Default::default() };
        enter(&sys, &cfg).unwrap();
        let ns = Namespaces { mount: true, uts: true, ipc: true, ..Default::default() };
        assert_eq!(*sys.calls.borrow(), vec![Call::Unshare(ns), Call::Hostname("box".into()), Call::LoopbackUp]);
    }

    #[test]
    fn host_network_keeps_the_host_namespace() {
        let sys = RecordingSyscall::default();
        let cfg =
            RunConfig { hostname: "h".into(), network: crate::container::config::Network::Host, ..Default::default() };
        enter(&sys, &cfg).unwrap();
        let calls = sys.calls.borrow();
        assert!(matches!(calls[0], Call::Unshare(ns) if !ns.net && ns.mount && ns.uts && ns.ipc && !ns.pid));
        assert!(!calls.contains(&Call::LoopbackUp));
    }

    #[test]
    fn a_failing_unshare_names_the_namespaces() {
        let sys = RecordingSyscall { fail: Some(|c| matches!(c, Call::Unshare(_))), ..Default::default() };
        let e = enter(&sys, &RunConfig::default()).unwrap_err();
        assert!(e.to_string().starts_with("creating namespaces"), "{e}");
        assert_eq!(sys.calls.borrow().len(), 1);
    }

    #[test]
    fn subordinate_ranges_by_name_or_id() {
        let f = "alice:100000:65536\n1001:200000:65536\nbob:300000:0\n";
        assert_eq!(sub_range(f, "alice", 5), Some(SubRange { start: 100000, count: 65536 }));
        assert_eq!(sub_range(f, "carol", 1001), Some(SubRange { start: 200000, count: 65536 }));
        assert_eq!(sub_range(f, "bob", 7), None);
    }
}
