//! `strata exec [-it] CONTAINER CMD...`: run a command in a running container.

use std::path::Path;
use std::process::ExitCode;

use super::run::{attach_to, failed};
use crate::container::exec::{self, Request};
use crate::container::record;

/// Arguments of `strata exec`.
#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    /// Keep stdin open and pass it to the command.
    #[arg(short = 'i', long)]
    interactive: bool,
    /// Give the command a terminal.
    #[arg(short = 't', long)]
    tty: bool,
    /// Set an environment variable (`K=V`, or `K` to pass this one's value).
    #[arg(short = 'e', long = "env", value_name = "K=V")]
    env: Vec<String>,
    /// User (and group) to run as (default: the container's).
    #[arg(short = 'u', long, value_name = "USER[:GROUP]")]
    user: Option<String>,
    /// Working directory (default: the container's).
    #[arg(short = 'w', long = "workdir", value_name = "DIR")]
    workdir: Option<String>,
    /// The container: a name or an id (prefix).
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// The command and its arguments.
    #[arg(value_name = "CMD", required = true, trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Runs `strata exec`.
pub fn run(a: ExecArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let c = match record::find(root, &a.container) {
        Ok(c) => c,
        Err(e) => return Ok(failed(125, &e)),
    };
    let req = Request {
        command: a.command,
        tty: a.tty,
        interactive: a.interactive,
        env: a.env,
        user: a.user,
        workdir: a.workdir,
    };
    match exec::start(root, &c, &req) {
        Ok(r) => Ok(attach_to(r.pid, r.helper, r.master, a.interactive)),
        Err(e) => Ok(failed(e.code(), &e)),
    }
}
