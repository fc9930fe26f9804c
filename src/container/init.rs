//! The container's PID 1 before it becomes the command: forked by the monitor into the new PID
//! namespace, it waits for the rootfs mount, enters its own namespaces, builds the rootfs and
//! pivots into it, sets up its stdio (a new terminal from the container's own devpts, or the
//! descriptors it was given) and executes the command.
//!
//! It talks to the monitor over a socket: the monitor sends `go`; PID 1 answers with `pty`
//! (and the terminal's master) when it has one, with `error CODE MESSAGE` if a step fails, and
//! the socket closes by itself (close-on-exec) when the command starts. With `run --init` it
//! stays PID 1 instead and runs the command as its child ([`super::reaper`]).

use std::os::fd::{AsFd, OwnedFd};

use super::config::RunConfig;
use super::namespaces::{self, NsError};
use super::process::{self, ProcessError};
use super::report::{self, Report};
use super::rootfs::{self, Plan, RootfsError};
use super::syscall::LinuxSyscall;
use super::tty::{self, Stdio};
use crate::sys::{creds, ns};

/// What PID 1 needs.
pub struct Init {
    /// The socket to the monitor.
    pub channel: OwnedFd,
    /// The process configuration.
    pub config: RunConfig,
    /// The command.
    pub command: Vec<String>,
    /// The rootfs to build.
    pub plan: Plan,
    /// Stdio.
    pub stdio: Stdio,
}

/// Why PID 1 could not become the command.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Entering the namespaces failed.
    #[error(transparent)]
    Namespaces(#[from] NsError),
    /// Building the rootfs failed.
    #[error(transparent)]
    Rootfs(#[from] RootfsError),
    /// Stdio could not be set up.
    #[error("setting up stdio: {0}")]
    Stdio(std::io::Error),
    /// The last steps or the exec failed.
    #[error(transparent)]
    Process(#[from] ProcessError),
}

impl InitError {
    /// The exit status `run` gives for it (127 not found, 126 not runnable, else 125).
    pub fn code(&self) -> i32 {
        match self {
            InitError::Process(p) => p.code(),
            _ => 125,
        }
    }
}

/// Runs PID 1 up to `execve`; on failure reports to the monitor and exits with the failure's code.
pub fn main(init: Init) -> ! {
    let _ = ns::set_parent_death_signal(libc::SIGKILL);
    match report::recv(init.channel.as_fd()) {
        Ok((Report::Go, _)) => {}
        _ => creds::exit_now(1),
    }
    let e = match enter(&init) {
        Ok(()) if init.config.init => super::reaper::main(init.channel, init.config, init.command, init.stdio),
        Ok(()) => match become_command(&init) {
            Ok(never) => match never {},
            Err(e) => e,
        },
        Err(e) => e,
    };
    let _ = report::send(init.channel.as_fd(), &Report::Error { code: e.code(), message: e.to_string() }, None);
    creds::exit_now(e.code())
}

/// The container's namespaces and rootfs.
fn enter(init: &Init) -> Result<(), InitError> {
    let sys = LinuxSyscall::default();
    namespaces::enter(&sys, &init.config)?;
    rootfs::setup(&sys, &init.plan)?;
    Ok(())
}

/// Stdio, then the command replaces PID 1.
fn become_command(init: &Init) -> Result<std::convert::Infallible, InitError> {
    stdio(init).map_err(InitError::Stdio)?;
    let spec = process::Spec {
        args: &init.command,
        env: &init.config.env,
        cwd: &init.config.cwd,
        user: &init.config.user,
        no_new_privs: init.config.no_new_privs,
    };
    Err(process::exec(&spec).into())
}

/// Sets up 0, 1 and 2: the given descriptors, or a new terminal whose master goes to the monitor.
fn stdio(init: &Init) -> std::io::Result<()> {
    match &init.stdio {
        Stdio::Fds(fds) => {
            for (i, fd) in fds.iter().enumerate() {
                creds::dup_to(fd.as_fd(), i as i32)?;
            }
            Ok(())
        }
        Stdio::Tty(size) => {
            let p = tty::open_terminal(*size)?;
            report::send(init.channel.as_fd(), &Report::Pty, Some(p.master.as_fd()))?;
            tty::attach_terminal(p.slave)
        }
    }
}
