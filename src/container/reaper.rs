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

use super::config::RunConfig;
use super::process::{self, ProcessError};
use super::report::{self, Report};
use super::signals::FORWARDED;
use super::tty::{self, Stdio};
use crate::sys::{creds, ns};

/// Becomes the reaper: sets the command's stdio up, forks it, and follows it. Never returns;
/// a failure before the command runs is reported to the monitor.
pub fn main(channel: OwnedFd, config: RunConfig, command: Vec<String>, stdio: Stdio) -> ! {
    let slave = match terminal(&channel, stdio) {
        Ok(s) => s,
        Err(e) => fail(&channel, 125, &stdio_error(&e)),
    };
    let mut caught = FORWARDED.to_vec();
    caught.push(SIGCHLD);
    // Held until the handlers are in place: nothing sent meanwhile is lost.
    creds::block_signals(&caught, true);
    let child = match ns::fork() {
        Ok(None) => command_main(&channel, slave, &config, &command),
        Ok(Some(pid)) => pid,
        Err(e) => process_failed(&channel, &setup("forking the command", e)),
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
            let p = tty::open_terminal(size)?;
            report::send(channel.as_fd(), &Report::Pty, Some(p.master.as_fd()))?;
            Ok(Some(p.slave))
        }
    }
}

/// The command, PID 2: its terminal, then the same last steps as a PID 1 without `--init`.
fn command_main(channel: &OwnedFd, slave: Option<OwnedFd>, config: &super::config::RunConfig, args: &[String]) -> ! {
    if let Some(slave) = slave
        && let Err(e) = tty::attach_terminal(slave)
    {
        fail(channel, 125, &stdio_error(&e));
    }
    let spec = process::Spec {
        args,
        env: &config.env,
        cwd: &config.cwd,
        user: &config.user,
        no_new_privs: config.no_new_privs,
    };
    process_failed(channel, &process::exec(&spec))
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

/// How a stdio failure is reported (as PID 1 without `--init` reports it).
fn stdio_error(e: &std::io::Error) -> String {
    format!("setting up stdio: {e}")
}

fn process_failed(channel: &OwnedFd, e: &ProcessError) -> ! {
    fail(channel, e.code(), &e.to_string())
}

/// Reports a failure to the monitor and exits with its code.
fn fail(channel: &OwnedFd, code: i32, message: &str) -> ! {
    let _ = report::send(channel.as_fd(), &Report::Error { code, message: message.to_string() }, None);
    creds::exit_now(code)
}
