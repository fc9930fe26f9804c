//! `run --init`: PID 1 stays Strata's own code — the forked copy of the monitor that built the
//! rootfs, so nothing has to be in the image — and runs the command as its only child (PID 2).
//! It passes on the signals it gets, reaps every process orphaned into it (a PID namespace's
//! orphans go to its PID 1, and a command that never waits for children leaves them as zombies),
//! and exits as the command did: its exit code, or 128+N when signal N killed it. PID 1's end
//! ends the namespace and every process left in it.
//!
//! Without `--init` the command itself is PID 1, as with Docker.

use std::os::fd::{AsFd, OwnedFd};

use signal_hook::consts::SIGCHLD;
use signal_hook::iterator::Signals;

use super::init::{self, Init, InitError, Stdio};
use super::process::{self, ProcessError};
use super::report::{self, Report};
use super::signals::FORWARDED;
use crate::sys::{creds, ns};

/// Becomes the reaper: sets the command's stdio up, forks it, and follows it. Never returns;
/// a failure before the command runs is reported to the monitor.
pub fn main(init: Init) -> ! {
    let Init { channel, config, command, stdio, .. } = init;
    let slave = match terminal(&channel, stdio) {
        Ok(s) => s,
        Err(e) => fail(&channel, &InitError::Stdio(e)),
    };
    let mut caught = FORWARDED.to_vec();
    caught.push(SIGCHLD);
    // Held until the handlers are in place: nothing sent meanwhile is lost.
    creds::block_signals(&caught, true);
    let child = match ns::fork() {
        Ok(None) => command_main(&channel, slave, &config, &command),
        Ok(Some(pid)) => pid,
        Err(e) => fail(&channel, &InitError::Process(setup("forking the command", e))),
    };
    // The command holds the channel until it executes: the monitor sees the end then.
    drop((channel, slave));
    let _ = rustix::thread::set_name(c"init");
    let _ = creds::bound_capabilities(process::DEFAULT_CAPS);
    let _ = creds::set_no_new_privs();
    let code = follow(child, &caught);
    creds::exit_now(code)
}

/// Stdio: the given descriptors become PID 1's (and so the command's); a terminal's master goes
/// to the monitor and its slave is returned, for the command to make its controlling terminal.
fn terminal(channel: &OwnedFd, stdio: Stdio) -> std::io::Result<Option<OwnedFd>> {
    match stdio {
        Stdio::Fds(fds) => {
            for (i, fd) in fds.iter().enumerate() {
                creds::dup_to(fd.as_fd(), i as i32)?;
            }
            Ok(None)
        }
        Stdio::Tty(size) => {
            let p = init::open_terminal(size)?;
            report::send(channel.as_fd(), &Report::Pty, Some(p.master.as_fd()))?;
            Ok(Some(p.slave))
        }
    }
}

/// The command, PID 2: its terminal, then the same last steps as a PID 1 without `--init`.
fn command_main(channel: &OwnedFd, slave: Option<OwnedFd>, config: &super::config::RunConfig, args: &[String]) -> ! {
    if let Some(slave) = slave
        && let Err(e) = init::attach_terminal(slave)
    {
        fail(channel, &InitError::Stdio(e));
    }
    let spec = process::Spec {
        args,
        env: &config.env,
        cwd: &config.cwd,
        user: &config.user,
        no_new_privs: config.no_new_privs,
    };
    fail(channel, &InitError::Process(process::exec(&spec)))
}

/// Passes signals on to `child` and reaps every child until `child` ends; returns its status.
fn follow(child: i32, caught: &[i32]) -> i32 {
    let Ok(mut signals) = Signals::new(caught) else {
        // No handlers: still wait for the command, reaping nothing else.
        creds::block_signals(caught, false);
        return ns::wait_child(child).map(ns::Exit::status).unwrap_or(125);
    };
    creds::block_signals(caught, false);
    // The command may have ended before the handlers were there.
    if let Some(code) = reap(child) {
        return code;
    }
    for sig in signals.forever() {
        if sig != SIGCHLD {
            let _ = ns::kill(child, sig);
        } else if let Some(code) = reap(child) {
            return code;
        }
    }
    125
}

/// Reaps every child that has ended; the command's status once it is among them.
fn reap(child: i32) -> Option<i32> {
    let mut status = None;
    while let Some((pid, exit)) = ns::reap_any() {
        if pid == child {
            status = Some(exit.status());
        }
    }
    status
}

fn setup(what: &str, source: std::io::Error) -> ProcessError {
    ProcessError::Setup { what: what.to_string(), source }
}

/// Reports `e` to the monitor and exits with its code.
fn fail(channel: &OwnedFd, e: &InitError) -> ! {
    let _ = report::send(channel.as_fd(), &Report::Error { code: e.code(), message: e.to_string() }, None);
    creds::exit_now(e.code())
}
