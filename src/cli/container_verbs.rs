//! `strata start`, `stop`, `rm`, `logs` and `port`: the container verbs that take container names.

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::run::failed;
use crate::container::start::{self, Mode};
use crate::container::{logs, ports, record, remove, state, stop};

/// Arguments of `strata start`.
#[derive(clap::Args, Debug)]
pub struct StartArgs {
    /// Containers: names or ids (prefixes).
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata stop`.
#[derive(clap::Args, Debug)]
pub struct StopArgs {
    /// Seconds to wait after SIGTERM before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10, value_name = "SECONDS")]
    time: u64,
    /// Containers: names or ids (prefixes).
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata rm`.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// Kill a running container first.
    #[arg(short = 'f', long)]
    force: bool,
    /// Remove its anonymous volumes too (named ones stay).
    #[arg(short = 'v', long)]
    volumes: bool,
    /// Containers: names or ids (prefixes).
    #[arg(value_name = "CONTAINER", required = true)]
    containers: Vec<String>,
}

/// Arguments of `strata logs`.
#[derive(clap::Args, Debug)]
pub struct LogsArgs {
    /// The container: a name or an id (prefix).
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// Arguments of `strata port`.
#[derive(clap::Args, Debug)]
pub struct PortArgs {
    /// The container: a name or an id (prefix).
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// Only this container port: PORT or PORT/PROTO.
    #[arg(value_name = "PRIVATE_PORT[/PROTO]")]
    port: Option<String>,
}

/// Applies `f` to each named container, printing the name on success and one line per error.
fn each(root: &Path, names: &[String], f: impl Fn(&record::Container) -> Result<(), String>) -> ExitCode {
    let mut code = ExitCode::SUCCESS;
    for name in names {
        let done = record::find(root, name).map_err(|e| e.to_string()).and_then(|c| f(&c));
        match done {
            Ok(()) => println!("{name}"),
            Err(e) => code = failed(1, &e),
        }
    }
    code
}

/// Runs `strata start`: each container starts detached.
pub fn start(a: StartArgs, root: &Path) -> anyhow::Result<ExitCode> {
    Ok(each(root, &a.containers, |c| start::start(root, c, Mode::Detached).map(drop).map_err(|e| e.to_string())))
}

/// Runs `strata stop`.
pub fn stop(a: StopArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let grace = Duration::from_secs(a.time);
    Ok(each(root, &a.containers, |c| stop::stop(root, c, grace).map(drop).map_err(|e| e.to_string())))
}

/// Runs `strata rm`.
pub fn rm(a: RmArgs, root: &Path) -> anyhow::Result<ExitCode> {
    Ok(each(root, &a.containers, |c| remove::remove(root, c, a.force, a.volumes).map_err(|e| e.to_string())))
}

/// Runs `strata logs`.
pub fn logs(a: LogsArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let c = record::find(root, &a.container)?;
    logs::print(&c.dir(root), &mut std::io::stdout().lock()).with_context(|| format!("logs of {}", c.name))?;
    Ok(ExitCode::SUCCESS)
}

/// Runs `strata port`: the published ports of a running container, `80/tcp -> 0.0.0.0:8080`.
pub fn port(a: PortArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let c = state::refresh(root, &record::find(root, &a.container)?)?;
    if c.state.status != record::Status::Running {
        return Ok(failed(1, &format!("container {} is not running", c.name)));
    }
    let lines = ports::lines(&c.config.ports, a.port.as_deref(), c.config.network.publishes_ipv6());
    if lines.is_empty()
        && let Some(p) = &a.port
    {
        return Ok(failed(1, &format!("no public port '{p}' published for {}", c.name)));
    }
    for l in lines {
        println!("{l}");
    }
    Ok(ExitCode::SUCCESS)
}
