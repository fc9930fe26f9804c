//! `exec`: a new process in a running container. A helper forked by the client joins the
//! container's namespaces through a pidfd of its PID 1 (user, mount, PID, UTS, IPC, network:
//! those that differ from the caller's), forks once more so the child lands in the PID
//! namespace, and that child becomes the command like PID 1 did (user, capabilities,
//! `no_new_privs`), with a terminal from the container's devpts for `-t`.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use super::config::{self, ConfigError, ImageRuntime};
use super::namespaces;
use super::process;
use super::record::{Container, RecordError, Status};
use super::report::{self, Report};
use super::state;
use super::tty;
use crate::sys::pty::{self, Size};
use crate::sys::{creds, fdpass, ns};

/// What went wrong with `exec`.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The container does not run.
    #[error("container {0} is not running")]
    NotRunning(String),
    /// The record could not be read.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// `-e` is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A step on the way in failed.
    #[error("exec in container {name}: {what}: {source}")]
    Io {
        /// The container.
        name: String,
        /// Which step.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The command could not start (`code`: 125, 126 or 127).
    #[error("{message}")]
    Failed {
        /// Exit status.
        code: i32,
        /// Why.
        message: String,
    },
}

impl ExecError {
    /// The exit status `exec` gives for it.
    pub fn code(&self) -> i32 {
        match self {
            ExecError::Failed { code, .. } => *code,
            _ => 125,
        }
    }
}

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Request {
    /// Program and arguments.
    pub command: Vec<String>,
    /// `-t`.
    pub tty: bool,
    /// `-i`.
    pub interactive: bool,
    /// `-e`.
    pub env: Vec<String>,
    /// `-u` (default: the container's user).
    pub user: Option<String>,
    /// `-w` (default: the container's working directory).
    pub workdir: Option<String>,
}

/// A process started in a container.
pub struct Running {
    /// The helper (child of the caller); its exit status is the command's.
    pub helper: i32,
    /// The command's host pid, for signals.
    pub pid: i32,
    /// The terminal's master with `-t`.
    pub master: Option<OwnedFd>,
}

/// Starts `req` in `c`. Call it while the process has a single thread (it forks).
pub fn start(root: &Path, c: &Container, req: &Request) -> Result<Running, ExecError> {
    let c = state::refresh(root, c)?;
    let pid = match c.state.pid {
        Some(pid) if c.state.status == Status::Running && state::is_alive(&c) => pid,
        _ => return Err(ExecError::NotRunning(c.name)),
    };
    let io_err = |what: &str| {
        let (name, what) = (c.name.clone(), what.to_string());
        move |source| ExecError::Io { name, what, source }
    };
    let rt = ImageRuntime { env: Some(c.config.env.clone()), ..Default::default() };
    let env = config::environment(&rt, &req.env, &c.config.hostname, req.tty)?;
    let pidfd = ns::pidfd(pid).map_err(io_err("opening the container's process"))?;
    let join = namespaces::to_join(pid).map_err(io_err("reading the container's namespaces"))?;
    let (client, helper_end) = fdpass::socket_pair().map_err(io_err("socket pair"))?;
    let size = if req.tty { pty::size(io::stdin().as_fd()).or_else(|| pty::size(io::stdout().as_fd())) } else { None };
    let user = req.user.clone().unwrap_or_else(|| c.config.user.clone());
    let cwd = req.workdir.clone().unwrap_or_else(|| c.config.cwd.clone());
    let child = Child { channel: helper_end, args: &req.command, env, cwd, user, no_new_privs: c.config.no_new_privs };
    super::signals::hold();
    let helper = match ns::fork().map_err(io_err("forking"))? {
        None => {
            drop(client);
            helper_main(child, pidfd, join, req, size)
        }
        Some(p) => p,
    };
    drop(child);
    collect(client, helper)
}

/// Reads the helper's reports until the command runs: its pid, the terminal, or an error.
fn collect(client: OwnedFd, helper: i32) -> Result<Running, ExecError> {
    let (mut pid, mut master, mut error) = (0, None, None);
    loop {
        match report::recv(client.as_fd()) {
            Ok((Report::Pid(p), _)) => pid = p,
            Ok((Report::Pty, fd)) => master = fd,
            Ok((Report::Error { code, message }, _)) => error = Some(ExecError::Failed { code, message }),
            Ok((Report::End, _)) | Err(_) => break,
            Ok(_) => {}
        }
    }
    if let Some(e) = error {
        let _ = ns::wait_child(helper);
        return Err(e);
    }
    Ok(Running { helper, pid, master })
}

struct Child<'a> {
    channel: OwnedFd,
    args: &'a [String],
    env: Vec<String>,
    cwd: String,
    user: String,
    no_new_privs: bool,
}

fn report_and_exit(channel: &OwnedFd, code: i32, msg: &str) -> ! {
    let _ = report::send(channel.as_fd(), &Report::Error { code, message: msg.to_string() }, None);
    creds::exit_now(code)
}

/// The helper: joins the namespaces, forks the command into the PID namespace, waits for it.
fn helper_main(child: Child<'_>, pidfd: OwnedFd, join: ns::Namespaces, req: &Request, size: Option<Size>) -> ! {
    if let Err(e) = ns::join(pidfd.as_fd(), join) {
        report_and_exit(&child.channel, 125, &format!("joining the container's namespaces: {e}"));
    }
    drop(pidfd);
    let pid = match ns::fork() {
        Ok(None) => command_main(&child, req, size),
        Ok(Some(pid)) => pid,
        Err(e) => report_and_exit(&child.channel, 125, &format!("forking: {e}")),
    };
    let _ = report::send(child.channel.as_fd(), &Report::Pid(pid), None);
    // The command holds the channel until it executes: the client sees the end then.
    drop(child);
    let code = ns::wait_child(pid).map(ns::Exit::status).unwrap_or(125);
    creds::exit_now(code)
}

/// The command, inside the container: stdio, then the same last steps as PID 1.
fn command_main(child: &Child<'_>, req: &Request, size: Option<Size>) -> ! {
    let _ = ns::set_parent_death_signal(libc::SIGKILL);
    if let Err(e) = stdio(child, req, size) {
        report_and_exit(&child.channel, 125, &format!("setting up stdio: {e}"));
    }
    let spec = process::Spec {
        args: child.args,
        env: &child.env,
        cwd: &child.cwd,
        user: &child.user,
        no_new_privs: child.no_new_privs,
    };
    let e = process::exec(&spec);
    report_and_exit(&child.channel, e.code(), &e.to_string())
}

fn stdio(child: &Child<'_>, req: &Request, size: Option<Size>) -> io::Result<()> {
    if req.tty {
        let p = tty::open_terminal(size)?;
        report::send(child.channel.as_fd(), &Report::Pty, Some(p.master.as_fd()))?;
        return tty::attach_terminal(p.slave);
    }
    if !req.interactive {
        let null = std::fs::File::open("/dev/null")?;
        creds::dup_to(null.as_fd(), 0)?;
    }
    Ok(())
}
