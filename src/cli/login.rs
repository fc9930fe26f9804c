//! `strata login [REGISTRY]` and `strata logout [REGISTRY|--all]`: credentials checked against
//! the registry, then kept where docker and podman keep them (mode 0600, or a credential
//! helper). A password is read from a prompt without echo, from `--password-stdin`, or `-p`
//! (with docker's warning); it is never printed.

use std::io::{self, BufRead, IsTerminal, Write};
use std::process::ExitCode;

use anyhow::{Context, bail};

use super::registry_args::{AuthfileArgs, RegistryArgs};
use crate::registry::credentials::Auth;
use crate::registry::reference::{DOCKER_HUB, registry_host};

/// Arguments of `strata login`.
#[derive(clap::Args, Debug)]
pub struct LoginArgs {
    /// The registry (host[:port]) [default: docker.io].
    #[arg(value_name = "REGISTRY")]
    registry: Option<String>,
    /// User name.
    #[arg(short = 'u', long)]
    username: Option<String>,
    /// Password (visible to other users of this machine: prefer --password-stdin).
    #[arg(short = 'p', long, conflicts_with = "password_stdin")]
    password: Option<String>,
    /// Read the password from standard input.
    #[arg(long)]
    password_stdin: bool,
    #[command(flatten)]
    registry_args: RegistryArgs,
}

/// Arguments of `strata logout`.
#[derive(clap::Args, Debug)]
pub struct LogoutArgs {
    /// The registry (host[:port]) [default: docker.io].
    #[arg(value_name = "REGISTRY", conflicts_with = "all")]
    registry: Option<String>,
    /// Every registry.
    #[arg(short = 'a', long)]
    all: bool,
    #[command(flatten)]
    authfile: AuthfileArgs,
}

/// Checks the credentials against the registry and saves them.
pub fn login(a: LoginArgs) -> anyhow::Result<ExitCode> {
    let registry = registry_host(a.registry.as_deref().unwrap_or(DOCKER_HUB));
    if a.password.is_some() {
        log::warn!("WARNING! Using --password via the CLI is insecure. Use --password-stdin.");
    }
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    if username.is_empty() {
        bail!("login to {registry}: a user name is required (-u USER)");
    }
    let password = match (a.password, a.password_stdin) {
        (Some(p), _) => p,
        (None, true) => read_stdin_password()?,
        (None, false) => prompt_hidden("Password: ")?,
    };
    if password.is_empty() {
        bail!("login to {registry}: a password is required (-p, --password-stdin or the prompt)");
    }
    let auth = Auth { username, password };
    let client = a.registry_args.connect(&registry, Some(auth.clone()))?;
    client.check_login().with_context(|| format!("login to {registry}"))?;
    let place = a
        .registry_args
        .authfile
        .credentials()
        .save(&registry, &auth)
        .with_context(|| format!("saving the credentials for {registry}"))?;
    log::info!("credentials for {registry} saved in {place}");
    println!("Login Succeeded");
    Ok(ExitCode::SUCCESS)
}

/// Removes saved credentials.
pub fn logout(a: LogoutArgs) -> anyhow::Result<ExitCode> {
    let creds = a.authfile.credentials();
    if a.all {
        for r in creds.remove_all()? {
            println!("Removing login credentials for {r}");
        }
        return Ok(ExitCode::SUCCESS);
    }
    let registry = registry_host(a.registry.as_deref().unwrap_or(DOCKER_HUB));
    if creds.remove(&registry)? {
        println!("Removing login credentials for {registry}");
    } else {
        println!("Not logged in to {registry}");
    }
    Ok(ExitCode::SUCCESS)
}

fn prompt(text: &str) -> anyhow::Result<String> {
    if !io::stdin().is_terminal() {
        bail!("no terminal to ask the user name on: use -u USER");
    }
    eprint!("{text}");
    io::stderr().flush()?;
    let mut line = String::new();
    io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

/// Reads a password on the terminal with echo off (restored even when reading fails).
fn prompt_hidden(text: &str) -> anyhow::Result<String> {
    use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
    let stdin = io::stdin();
    if !stdin.is_terminal() {
        bail!("no terminal to ask the password on: use --password-stdin");
    }
    let saved = tcgetattr(&stdin)?;
    let mut quiet = saved.clone();
    quiet.local_modes.remove(LocalModes::ECHO);
    tcsetattr(&stdin, OptionalActions::Now, &quiet)?;
    eprint!("{text}");
    let _ = io::stderr().flush();
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    let _ = tcsetattr(&stdin, OptionalActions::Now, &saved);
    eprintln!();
    read?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}

fn read_stdin_password() -> anyhow::Result<String> {
    let mut s = String::new();
    io::stdin().lock().read_line(&mut s).context("reading the password from standard input")?;
    Ok(s.trim_end_matches(['\n', '\r']).to_string())
}
