//! Starting a container (for `run`, and `start` of a stopped one): the client side. It puts
//! the container's stdio together, forks the monitor (see [`super::monitor`]), maps the user
//! namespace of a rootless container, and returns once the command runs, or with the one-line
//! reason it could not start.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use super::monitor::{self, Launch};
use super::namespaces::{self, NsError};
use super::ports::{self, PortError};
use super::record::{Container, RecordError, Status};
use super::report::{self, Report};
use super::state;
use super::tty::Stdio;
use crate::fs::layers::StackSpec;
use crate::fs::options::MountSpec;
use crate::image::digest::Digest;
use crate::image::spec::{Descriptor, MediaType};
use crate::image::store::{Store, StoreError};
use crate::sys::{fdpass, ns, pty};

/// What went wrong starting a container.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// It already runs.
    #[error("container {0} is already running")]
    Running(String),
    /// It was made by root and started rootless, or the other way round.
    #[error("container {0} was created {1}: start it the same way")]
    Privilege(String, &'static str),
    /// The record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The image is no longer in the store.
    #[error("container {name}: image {image}: {source}")]
    Image {
        /// The container.
        name: String,
        /// The image.
        image: String,
        /// The cause.
        source: Box<StoreError>,
    },
    /// Setting up failed before the monitor ran.
    #[error("starting container {name}: {what}: {source}")]
    Io {
        /// The container.
        name: String,
        /// Which step.
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The user namespace could not be mapped.
    #[error(transparent)]
    Namespaces(#[from] NsError),
    /// A published port cannot be had.
    #[error(transparent)]
    Ports(#[from] PortError),
    /// The container could not start; `code` is the exit status to give (125, 126, 127).
    #[error("{message}")]
    Failed {
        /// Exit status.
        code: i32,
        /// Why.
        message: String,
    },
}

impl StartError {
    /// The exit status `run` gives for it.
    pub fn code(&self) -> i32 {
        match self {
            StartError::Failed { code, .. } => *code,
            _ => 125,
        }
    }

    /// Whether its network could not be set up (a port taken, the helper failing).
    pub fn is_network(&self) -> bool {
        match self {
            StartError::Ports(_) => true,
            StartError::Failed { message, .. } => super::network::is_failure(message),
            _ => false,
        }
    }
}

/// Whether a client stays attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The caller's stdio is the container's (`run` without `-d`).
    Foreground,
    /// Output goes to the log; stdin is empty.
    Detached,
}

/// A container whose command runs.
pub struct Started {
    /// The monitor's pid (a child of the caller).
    pub monitor: i32,
    /// The host pid of the container's PID 1.
    pub pid: i32,
    /// The terminal's master, for a foreground `-t`.
    pub master: Option<OwnedFd>,
    /// A tied container's end of the monitor's socket ([`start_tied`]): closing it (dropping
    /// this, or the caller dying) ends the container.
    pub tie: Option<OwnedFd>,
}

fn io_err<'a>(name: &'a str, what: &'a str) -> impl FnOnce(io::Error) -> StartError + 'a {
    move |source| StartError::Io { name: name.to_string(), what: what.to_string(), source }
}

/// Starts `c`. Call it while the process has a single thread (it forks).
pub fn start(root: &Path, c: &Container, mode: Mode) -> Result<Started, StartError> {
    launch(root, c, mode, false)
}

/// Starts `c` tied to the caller (a build's RUN step): if the caller dies, or drops
/// [`Started::tie`], before the command ends, the command is killed and the container removed,
/// so a killed build leaves no step running. Same rules as [`start`].
pub fn start_tied(root: &Path, c: &Container, mode: Mode) -> Result<Started, StartError> {
    launch(root, c, mode, true)
}

fn launch(root: &Path, c: &Container, mode: Mode, tied: bool) -> Result<Started, StartError> {
    let c = state::refresh(root, c)?;
    if c.state.status == Status::Running {
        return Err(StartError::Running(c.name));
    }
    let rootless = !rustix::process::geteuid().is_root();
    if rootless != c.config.rootless {
        let how = if c.config.rootless { "rootless" } else { "as root" };
        return Err(StartError::Privilege(c.name, how));
    }
    // A taken port is named before anything starts (the helper would fail on it later).
    ports::check_free(&c.config.ports)?;
    // The monitor leaves the caller's working directory: the root must not be relative to it.
    let root = &std::path::absolute(root).map_err(io_err(&c.name, "the store root"))?;
    let mount = mount_spec(root, &c)?;
    let stdio = stdio(root, &c, mode).map_err(io_err(&c.name, "setting up stdio"))?;
    let (client, channel) = fdpass::socket_pair().map_err(io_err(&c.name, "socket pair"))?;
    let name = c.name.clone();
    let launch = Launch {
        root: root.to_path_buf(),
        container: c,
        mount,
        stdio,
        channel,
        detached: mode == Mode::Detached,
        tied,
    };
    super::signals::hold();
    let pid = match ns::fork().map_err(io_err(&name, "forking the monitor"))? {
        None => {
            drop(client);
            monitor::main(launch)
        }
        Some(pid) => pid,
    };
    drop(launch);
    let started = handshake(&client, pid, &name);
    if started.is_err() {
        let _ = ns::wait_child(pid);
    }
    started.map(|s| Started { tie: tied.then_some(client), ..s })
}

/// Follows the monitor's reports until the command runs or fails.
fn handshake(client: &OwnedFd, monitor: i32, name: &str) -> Result<Started, StartError> {
    loop {
        match report::recv(client.as_fd()).map_err(io_err(name, "waiting for its monitor"))? {
            (Report::UserNs, _) => {
                let mapped = namespaces::map_ids(monitor);
                let reply = if mapped.is_ok() { Report::Mapped } else { Report::Other("not mapped".into()) };
                report::send(client.as_fd(), &reply, None).map_err(io_err(name, "answering its monitor"))?;
                mapped?;
            }
            (Report::Ok(pid), master) => return Ok(Started { monitor, pid, master, tie: None }),
            (Report::Error { code, message }, _) => return Err(StartError::Failed { code, message }),
            (Report::End, _) => {
                let message = "the container's monitor ended before the container started".into();
                return Err(StartError::Failed { code: 125, message });
            }
            (other, _) => {
                return Err(StartError::Failed { code: 125, message: format!("unexpected report {other:?}") });
            }
        }
    }
}

/// The rootfs mount: the init layer and the image's layers (top first) under the container's
/// upper dir.
fn mount_spec(root: &Path, c: &Container) -> Result<MountSpec, StartError> {
    let image_err = |e| StartError::Image { name: c.name.clone(), image: c.image.clone(), source: Box::new(e) };
    let store = Store::open(root).map_err(image_err)?;
    let digest = Digest::parse(&c.manifest)
        .map_err(|e| image_err(StoreError::Io { path: PathBuf::from(&c.manifest), source: io::Error::other(e) }))?;
    let img = {
        let _lock = store.read().map_err(image_err)?;
        store.load_image(&Descriptor::new(MediaType::OciManifest, digest, 0)).map_err(image_err)?
    };
    let dir = c.dir(root);
    let stack = StackSpec {
        lowers: std::iter::once(dir.join("init"))
            .chain(img.config.rootfs.diff_ids.iter().rev().map(|d| store.layer_path(d)))
            .collect(),
        upper: Some(dir.join("upper")),
        work: Some(dir.join("work")),
        userxattr: c.config.rootless,
        volatile: false,
    };
    let mut spec = MountSpec { stack, fsname: Some(format!("strata:{}", c.id)), ..Default::default() };
    // Setuid programs of the image work; device nodes do not (without a devices cgroup, a
    // node made inside could reach a host disk).
    spec.flags = vec![fuser::MountOption::Suid, fuser::MountOption::NoDev];
    Ok(spec)
}

/// PID 1's stdio: the caller's (stdin only with `-i`), the log when detached, or a terminal.
fn stdio(root: &Path, c: &Container, mode: Mode) -> io::Result<Stdio> {
    let size = || pty::size(io::stdin().as_fd()).or_else(|| pty::size(io::stdout().as_fd()));
    let null = || std::fs::OpenOptions::new().read(true).write(true).open("/dev/null").map(OwnedFd::from);
    match (mode, c.config.tty) {
        (Mode::Foreground, true) => Ok(Stdio::Tty(size())),
        (Mode::Detached, true) => Ok(Stdio::Tty(None)),
        (Mode::Foreground, false) => {
            let stdin = if c.config.interactive { io::stdin().as_fd().try_clone_to_owned()? } else { null()? };
            Ok(Stdio::Fds([
                stdin,
                io::stdout().as_fd().try_clone_to_owned()?,
                io::stderr().as_fd().try_clone_to_owned()?,
            ]))
        }
        (Mode::Detached, false) => {
            let log = OwnedFd::from(super::logs::open_for_append(&c.dir(root))?);
            Ok(Stdio::Fds([null()?, log.try_clone()?, log]))
        }
    }
}
