//! The monitor: one process per running container, forked by `run`/`start` (and a build's RUN
//! steps) and detached from the terminal. It owns the container's rootfs mount (the Strata
//! union served by its threads), forks PID 1 into a new PID namespace (and, rootless, first
//! enters a user namespace the client maps), fills the container's new volumes from the
//! mounted rootfs, passes on the signals it gets, waits for PID 1, records how it ended,
//! unmounts, and removes the container and its anonymous volumes when asked (`--rm`). A
//! container tied to its client (a build's step) is killed and removed when the client goes.
//!
//! It reports to the client over a socket: `userns` (rootless: map my ids, answered by
//! `mapped`), then `ok PID` (with the terminal's master for a foreground `-t`) or
//! `error CODE MESSAGE`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::time::Duration;

use super::init::{self, Init};
use super::record::{self, Container, Status};
use super::report::{self, Report};
use super::rootfs::Plan;
use super::signals::Forwarder;
use super::tty::Stdio;
use crate::fs::options::MountSpec;
use crate::sys::ns::{self, Exit, Namespaces};
use crate::sys::{creds, fdpass};

/// What the monitor is started with.
pub struct Launch {
    /// The store root.
    pub root: PathBuf,
    /// The container.
    pub container: Container,
    /// The rootfs mount (layers, upper, work).
    pub mount: MountSpec,
    /// PID 1's stdio.
    pub stdio: Stdio,
    /// The socket to the client.
    pub channel: OwnedFd,
    /// No client waits for the end: a terminal's output goes to the log.
    pub detached: bool,
    /// The container lives only as long as its client (a build's RUN step): when the client's
    /// end of `channel` closes before the command ends, PID 1 is killed and the container
    /// removed (see [`watch_client`]).
    pub tied: bool,
}

/// Runs the monitor; never returns.
pub fn main(l: Launch) -> ! {
    let code = run(l);
    creds::exit_now(code)
}

/// Stdio of the monitor itself: nothing (what PID 1 gets was set aside before).
fn quiet_stdio() {
    if let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") {
        for i in 0..3 {
            let _ = creds::dup_to(null.as_fd(), i);
        }
    }
}

fn fail(l: &Launch, code: i32, msg: &str) -> i32 {
    let _ = record::update(&l.root, &l.container.id, |c| {
        c.state.status = if c.state.started.is_some() { Status::Exited } else { Status::Created };
        c.state.exit_code = Some(code);
        c.state.error = Some(msg.to_string());
        c.state.pid = None;
    });
    let _ = report::send(l.channel.as_fd(), &Report::Error { code, message: msg.to_string() }, None);
    if l.container.config.auto_remove {
        let _ = super::remove::delete(&l.root, &l.container, true);
    }
    code
}

fn run(mut l: Launch) -> i32 {
    let _ = rustix::process::setsid();
    let _ = std::env::set_current_dir("/");
    quiet_stdio();
    if l.container.config.rootless
        && let Err(e) = enter_user_namespace(&l.channel)
    {
        return fail(&l, 125, &format!("entering a user namespace: {e}"));
    }
    let (mon_end, init_end) = match fdpass::socket_pair() {
        Ok(p) => p,
        Err(e) => return fail(&l, 125, &format!("socket pair: {e}")),
    };
    let dir = l.container.dir(&l.root);
    // The network namespace comes with PID 1, so that its helper can connect it before the
    // command runs.
    let pid = match ns::fork_into_new_pid_namespace(l.container.config.network.own_namespace()) {
        Ok(None) => {
            drop(mon_end);
            let stdio = std::mem::replace(&mut l.stdio, Stdio::Tty(None));
            let c = &l.container;
            init::main(Init {
                channel: init_end,
                config: c.config.clone(),
                command: c.command.clone(),
                plan: Plan::new(&l.root, &dir, &c.config),
                stdio,
            })
        }
        Ok(Some(pid)) => pid,
        Err(e) => return fail(&l, 125, &format!("forking the container process: {e}")),
    };
    // PID 1 has its copies; the monitor closes its own (else a reader would never see the end).
    drop(init_end);
    l.stdio = Stdio::Tty(None);
    supervise(&l, pid, mon_end)
}

/// Rootless: a new user namespace, mapped by the client, then a mount namespace of its own.
fn enter_user_namespace(client: &OwnedFd) -> std::io::Result<()> {
    ns::unshare(Namespaces { user: true, ..Default::default() })?;
    report::send(client.as_fd(), &Report::UserNs, None)?;
    match report::recv(client.as_fd())? {
        (Report::Mapped, _) => {}
        (other, _) => return Err(std::io::Error::other(format!("the client answered {other:?}"))),
    }
    ns::unshare(Namespaces { mount: true, ..Default::default() })
}

/// Mounts the rootfs, fills new volumes, lets PID 1 go, and follows it to its end.
fn supervise(l: &Launch, pid: i32, init: OwnedFd) -> i32 {
    let merged = l.container.dir(&l.root).join("merged");
    let session = match crate::fs::session::spawn(&l.mount, &merged) {
        Ok(s) => s,
        Err(e) => {
            kill_init(pid);
            return fail(l, 125, &format!("mounting the rootfs: {e:#}"));
        }
    };
    if let Err(e) = super::prefill::fill(&l.root, &merged, &l.container.config.mounts) {
        kill_init(pid);
        teardown(session);
        return fail(l, 125, &e.to_string());
    }
    let helper = match super::network::connect(&l.container.config, pid, &l.container.dir(&l.root)) {
        Ok(h) => h,
        Err(e) => {
            kill_init(pid);
            teardown(session);
            return fail(l, 125, &e.to_string());
        }
    };
    let started = report::send(init.as_fd(), &Report::Go, None).and_then(|()| wait_exec(&init));
    let master = match started {
        Ok(Ok(master)) => master,
        Ok(Err((code, msg))) => {
            let _ = ns::wait_child(pid);
            teardown(session);
            return fail(l, code, &msg);
        }
        Err(e) => {
            kill_init(pid);
            teardown(session);
            return fail(l, 125, &format!("starting the container: {e}"));
        }
    };
    drop(init);
    let (exit, abandoned) = follow(l, pid, master);
    if let Some(h) = helper {
        h.stop();
    }
    teardown(session);
    finish(l, exit, abandoned)
}

/// Ends PID 1 before it ran the command.
fn kill_init(pid: i32) {
    let _ = ns::kill(pid, libc::SIGKILL);
    let _ = ns::wait_child(pid);
}

/// Waits for PID 1 to exec: `Ok(master)` once the socket closes, or its error (code, message).
fn wait_exec(init: &OwnedFd) -> std::io::Result<Result<Option<OwnedFd>, (i32, String)>> {
    let mut master = None;
    loop {
        match report::recv(init.as_fd())? {
            (Report::End, _) => return Ok(Ok(master)),
            (Report::Pty, fd) => master = fd,
            (Report::Error { code, message }, _) => return Ok(Err((code, message))),
            (other, _) => return Ok(Err((125, format!("unexpected report {other:?}")))),
        }
    }
}

/// Records the start, tells the client, passes signals on, logs a detached terminal, and waits;
/// with whether a tied container's client went away first (its PID 1 was killed).
fn follow(l: &Launch, pid: i32, master: Option<OwnedFd>) -> (Exit, bool) {
    let _ = record::update(&l.root, &l.container.id, |c| {
        c.state.status = Status::Running;
        c.state.pid = Some(pid);
        c.state.pid_start = ns::start_time(pid);
        c.state.monitor_pid = Some(std::process::id() as i32);
        c.state.monitor_start = ns::start_time(std::process::id() as i32);
        c.state.started = Some(record::now());
        c.state.finished = None;
        c.state.exit_code = None;
        c.state.error = None;
    });
    let forwarder = Forwarder::start(pid, None).ok();
    let mut log_thread = None;
    let to_client = match master {
        Some(m) if l.detached => {
            let log = super::logs::open_for_append(&l.container.dir(&l.root));
            log_thread = log.ok().and_then(|f| super::tty::log_output(m, f).ok());
            None
        }
        other => other,
    };
    let fd = to_client.as_ref().map(|m| m.as_fd());
    let _ = report::send(l.channel.as_fd(), &Report::Ok(pid), fd);
    drop(to_client);
    let watcher = if l.tied { watch_client(l, pid) } else { None };
    let exit = ns::wait_child(pid).unwrap_or(Exit::Code(255));
    drop(forwarder);
    if let Some(t) = log_thread {
        let _ = t.join();
    }
    // The watcher returns once PID 1 has ended (its pidfd turns readable).
    let abandoned = watcher.and_then(|w| w.join().ok()).is_some_and(|killed| killed.unwrap_or(false));
    (exit, abandoned)
}

/// For a tied container: a thread that kills PID 1 when the client's end of the channel closes
/// (the client was killed or ended without waiting). `true` from the thread: it did.
fn watch_client(l: &Launch, pid: i32) -> Option<std::thread::JoinHandle<std::io::Result<bool>>> {
    let pidfd = ns::pidfd(pid).ok()?;
    let peer = l.channel.try_clone().ok()?;
    let thread = std::thread::Builder::new().name("client-watch".into());
    thread.spawn(move || ns::kill_when_closed(pidfd.as_fd(), peer.as_fd())).ok()
}

/// Records the end and removes the container if it was started with `--rm`, or if it was tied
/// to a client that went away (nobody is left to remove it).
fn finish(l: &Launch, exit: Exit, abandoned: bool) -> i32 {
    let code = exit.status();
    let _ = record::update(&l.root, &l.container.id, |c| {
        c.state.status = Status::Exited;
        c.state.exit_code = Some(code);
        c.state.pid = None;
        c.state.pid_start = None;
        c.state.monitor_pid = None;
        c.state.monitor_start = None;
        c.state.finished = Some(record::now());
    });
    if l.container.config.auto_remove || abandoned {
        let _ = super::remove::delete(&l.root, &l.container, true);
    }
    code
}

/// Unmounts the rootfs.
fn teardown(session: fuser::BackgroundSession) {
    let (tx, rx) = std::sync::mpsc::channel();
    let _ = std::thread::Builder::new().name("umount".into()).spawn(move || {
        let _ = tx.send(session.umount_and_join());
    });
    // The mount is detached at once; the serving threads end when the last user lets go.
    let _ = rx.recv_timeout(Duration::from_secs(5));
}
