//! `strata run`: create a container from an image and start its command, attached (the
//! command's exit status becomes ours) or detached (`-d`: print the id).

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use crate::container::config::Overrides;
use crate::container::create::{self, Request};
use crate::container::signals::Forwarder;
use crate::container::start::{self, Mode, Started};
use crate::container::tty;
use crate::sys::ns;

/// Arguments of `strata run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// A name for the container (default: one made up).
    #[arg(long)]
    name: Option<String>,
    /// Remove the container when its command ends.
    #[arg(long)]
    rm: bool,
    /// Keep stdin open and pass it to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Run in the background: print the container id; output goes to `strata logs`.
    #[arg(short = 'd', long)]
    detach: bool,
    /// Set an environment variable (`K=V`, or `K` to pass this one's value).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// User (and group) to run as: names from the image's /etc/passwd and /etc/group, or ids.
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Mount a volume (`NAME:/CTR`, made on first use; `/CTR`: a new anonymous volume) or bind a
    /// host path (`/HOST:/CTR`); OPTIONS: ro, rw, nocopy.
    #[arg(short = 'v', long = "volume", value_name = "[SOURCE:]CTR[:OPTIONS]")]
    volumes: Vec<String>,
    /// Mount a bind, volume or tmpfs: type=bind|volume|tmpfs,source=…,target=…[,readonly]
    /// [,volume-nocopy][,tmpfs-size=…][,tmpfs-mode=…].
    #[arg(long = "mount", value_name = "FIELDS")]
    mounts: Vec<String>,
    /// Mount a new tmpfs (nosuid, nodev, noexec unless `exec`); OPTIONS as mount -t tmpfs takes
    /// them (size=64m, mode=1777, ...).
    #[arg(long = "tmpfs", value_name = "CTR[:OPTIONS]")]
    tmpfs: Vec<String>,
    /// Mount the volumes and binds of another container, at the same places.
    #[arg(long = "volumes-from", value_name = "CONTAINER[:ro|rw]")]
    volumes_from: Vec<String>,
    /// Hostname inside the container (default: the short id).
    #[arg(long)]
    hostname: Option<String>,
    /// Run a small init as PID 1 (the command becomes PID 2) that passes signals on and reaps
    /// orphaned processes.
    #[arg(long)]
    init: bool,
    /// Network: bridge (the default: a namespace of its own with outbound access through pasta, or
    /// slirp4netns when pasta is not installed), pasta, slirp4netns, none (loopback only) or host.
    #[arg(long, visible_alias = "net", value_name = "MODE", default_value = "bridge")]
    network: String,
    /// Publish a container port on the host: [IP:][HOSTPORT:]CTRPORT[/tcp|/udp], ranges as
    /// 8000-8010:80-90; no host port: a free one.
    #[arg(short = 'p', long = "publish", value_name = "SPEC")]
    publish: Vec<String>,
    /// Publish every port the image exposes on a free host port.
    #[arg(short = 'P', long = "publish-all")]
    publish_all: bool,
    /// A DNS server for the container's /etc/resolv.conf (default: the network helper's).
    #[arg(long, value_name = "IP")]
    dns: Vec<String>,
    /// An extra line of /etc/hosts: NAME:IP, or NAME:host-gateway for the host.
    #[arg(long = "add-host", value_name = "NAME:IP")]
    add_hosts: Vec<String>,
    /// Pull the image lazily first if the store does not have it (see `strata pull --lazy`).
    #[arg(long, value_enum, num_args = 0..=1, require_equals = true, default_missing_value = "on", value_name = "only")]
    lazy: Option<super::pull::LazyArg>,
    /// The image: a name or an id.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The command and its arguments (default: the image's Entrypoint + Cmd).
    #[arg(value_name = "CMD", trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

impl RunArgs {
    fn request(&self) -> Request {
        let overrides = Overrides {
            command: self.command.clone(),
            env: self.env.clone(),
            workdir: self.workdir.clone(),
            user: self.user.clone(),
            volumes: self.volumes.clone(),
            mounts: self.mounts.clone(),
            tmpfs: self.tmpfs.clone(),
            volumes_from: self.volumes_from.clone(),
            hostname: self.hostname.clone(),
            network: self.network.clone(),
            publish: self.publish.clone(),
            publish_all: self.publish_all,
            dns: self.dns.clone(),
            add_hosts: self.add_hosts.clone(),
            tty: self.tty,
            interactive: self.interactive,
            auto_remove: self.rm,
            init: self.init,
        };
        Request { image: self.image.clone(), name: self.name.clone(), overrides }
    }
}

/// Prints `e` as strata's one error line and gives `code` as the exit status.
pub(super) fn failed(code: i32, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("strata: {e}");
    ExitCode::from(code.clamp(1, 255) as u8)
}

/// Runs `strata run`.
pub fn run(a: RunArgs, root: &Path) -> anyhow::Result<ExitCode> {
    if let Some(lazy) = a.lazy
        && let Err(e) = super::pull::lazy_if_missing(root, &a.image, lazy)
    {
        return Ok(failed(125, &e));
    }
    let c = match create::create(root, &a.request()) {
        Ok(c) => c,
        Err(e) => return Ok(failed(125, &e)),
    };
    let mode = if a.detach { Mode::Detached } else { Mode::Foreground };
    match start::start(root, &c, mode) {
        Err(e) => {
            // A container whose network could not be set up (a port taken meanwhile) is not
            // left behind.
            if e.is_network() {
                let _ = crate::container::remove::delete(root, &c, true);
            }
            Ok(failed(e.code(), &e))
        }
        Ok(_) if a.detach => {
            println!("{}", c.id);
            Ok(ExitCode::SUCCESS)
        }
        Ok(s) => Ok(attach(s, a.interactive)),
    }
}

/// Stays with a started command: passes signals on, relays its terminal, and gives its status.
pub(super) fn attach_to(pid: i32, waited: i32, master: Option<std::os::fd::OwnedFd>, interactive: bool) -> ExitCode {
    let for_signals = master.as_ref().and_then(|m| m.as_fd().try_clone_to_owned().ok());
    let forwarder = Forwarder::start(pid, for_signals).ok();
    if let Some(m) = master {
        let _ = tty::relay(m, interactive);
    }
    let code = ns::wait_child(waited).map(ns::Exit::status).unwrap_or(125);
    drop(forwarder);
    ExitCode::from(code.clamp(0, 255) as u8)
}

fn attach(s: Started, interactive: bool) -> ExitCode {
    attach_to(s.pid, s.monitor, s.master, interactive)
}
