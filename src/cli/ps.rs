//! `strata ps [-a]`: list containers as docker does.

use std::path::Path;
use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use super::store_root::{human_age, human_duration, print_table};
use crate::container::ports;
use crate::container::record::{self, Container, Status};
use crate::container::state;

/// Arguments of `strata ps`.
#[derive(clap::Args, Debug)]
pub struct PsArgs {
    /// Show every container (default: running ones only).
    #[arg(short = 'a', long)]
    all: bool,
    /// Print ids only.
    #[arg(short = 'q', long)]
    quiet: bool,
}

/// Runs `strata ps`.
pub fn run(a: PsArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for c in record::list(root)? {
        let c = state::refresh(root, &c)?;
        if !a.all && c.state.status != Status::Running {
            continue;
        }
        if a.quiet {
            println!("{}", c.short_id());
            continue;
        }
        rows.push(vec![
            c.short_id().to_string(),
            c.image.clone(),
            command_text(&c.command),
            human_age(Some(&c.created)),
            status_text(&c),
            ports_text(&c),
            c.name.clone(),
        ]);
    }
    if !a.quiet {
        print_table(&["CONTAINER ID", "IMAGE", "COMMAND", "CREATED", "STATUS", "PORTS", "NAMES"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}

/// The COMMAND column: the command line quoted, cut at 20 characters.
fn command_text(cmd: &[String]) -> String {
    let line = cmd.join(" ");
    if line.chars().count() > 20 {
        format!("\"{}…\"", line.chars().take(19).collect::<String>())
    } else {
        format!("\"{line}\"")
    }
}

/// The PORTS column: what a running container publishes (and exposes), as docker shows it.
fn ports_text(c: &Container) -> String {
    if c.state.status != Status::Running {
        return String::new();
    }
    ports::column(&c.config.ports, &c.config.exposed, c.config.network.publishes_ipv6())
}

/// The STATUS column: `Up 5 minutes`, `Exited (0) 3 seconds ago`, `Created`.
fn status_text(c: &Container) -> String {
    let since = |t: &Option<String>| {
        let at = t.as_deref().and_then(|s| humantime::parse_rfc3339_weak(s).ok());
        at.and_then(|at| SystemTime::now().duration_since(at).ok()).unwrap_or(Duration::ZERO).as_secs()
    };
    match (c.state.status, c.state.exit_code) {
        (Status::Created, _) => "Created".into(),
        (Status::Running, _) => format!("Up {}", human_duration(since(&c.state.started))),
        (Status::Exited, Some(code)) => format!("Exited ({code}) {}", human_age(c.state.finished.as_deref())),
        (Status::Exited, None) => format!("Exited {}", human_age(c.state.finished.as_deref())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_commands_are_cut() {
        assert_eq!(command_text(&["sleep".into(), "5".into()]), "\"sleep 5\"");
        let long = command_text(&["/bin/sh".into(), "-c".into(), "while true; do sleep 1; done".into()]);
        assert_eq!(long, "\"/bin/sh -c while tr…\"");
    }
}
