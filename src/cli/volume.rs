//! `strata volume create|ls|inspect|rm|prune`: the store's volumes, with docker's flags and
//! output (`docker volume ...`).

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use serde_json::{Value, json};

use super::run::failed;
use super::store_root::{human_size, print_table_min};
use crate::container::record;
use crate::container::volumes::{self, New, Volume};
use crate::sys::lock::LockKind;

/// The volume verbs.
#[derive(clap::Subcommand, Debug)]
pub enum VolumeCommand {
    /// Create a volume (prints its name).
    Create(CreateArgs),
    /// List volumes.
    #[command(alias = "list")]
    Ls(LsArgs),
    /// Show volumes as JSON.
    Inspect(InspectArgs),
    /// Remove volumes (one a container uses stays).
    #[command(alias = "remove")]
    Rm(RmArgs),
    /// Remove the anonymous volumes no container uses (with -a, every volume no container uses).
    Prune(PruneArgs),
}

/// Arguments of `strata volume create`.
#[derive(clap::Args, Debug)]
pub struct CreateArgs {
    /// The driver (only `local`).
    #[arg(short = 'd', long, default_value = volumes::DRIVER)]
    driver: String,
    /// Set a label.
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Set a driver option (type, device, o).
    #[arg(short = 'o', long = "opt", value_name = "K=V")]
    opts: Vec<String>,
    /// Its name (default: 64 random hex characters).
    #[arg(value_name = "NAME")]
    name: Option<String>,
}

/// Arguments of `strata volume ls`.
#[derive(clap::Args, Debug)]
pub struct LsArgs {
    /// Only the names.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Only volumes that match: dangling=true|false, name=PART, label=K[=V], driver=local.
    #[arg(short = 'f', long = "filter", value_name = "KEY=VALUE")]
    filters: Vec<String>,
    /// Print each volume through this template ({{.Name}}, {{.Mountpoint}}, {{json .Labels}}).
    #[arg(long)]
    format: Option<String>,
}

/// Arguments of `strata volume inspect`.
#[derive(clap::Args, Debug)]
pub struct InspectArgs {
    /// Print each volume through this template ({{.Mountpoint}}, {{json .Labels}}).
    #[arg(short = 'f', long)]
    format: Option<String>,
    /// Volumes.
    #[arg(value_name = "VOLUME", required = true)]
    names: Vec<String>,
}

/// Arguments of `strata volume rm`.
#[derive(clap::Args, Debug)]
pub struct RmArgs {
    /// No error for a volume that is not there.
    #[arg(short = 'f', long)]
    force: bool,
    /// Volumes.
    #[arg(value_name = "VOLUME", required = true)]
    names: Vec<String>,
}

/// Arguments of `strata volume prune`.
#[derive(clap::Args, Debug)]
pub struct PruneArgs {
    /// Every volume no container uses, not only anonymous ones.
    #[arg(short = 'a', long)]
    all: bool,
    /// Do not ask.
    #[arg(short = 'f', long)]
    force: bool,
}

/// Runs a volume verb.
pub fn run(c: VolumeCommand, root: &Path) -> anyhow::Result<ExitCode> {
    match c {
        VolumeCommand::Create(a) => create(a, root),
        VolumeCommand::Ls(a) => ls(a, root),
        VolumeCommand::Inspect(a) => inspect(a, root),
        VolumeCommand::Rm(a) => rm(a, root),
        VolumeCommand::Prune(a) => prune(a, root),
    }
}

/// `K=V` pairs (a label without `=` has an empty value; an option needs one).
fn pairs(items: &[String], what: &str, value_needed: bool) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for item in items {
        match item.split_once('=') {
            Some((k, v)) if !k.is_empty() => out.insert(k.to_string(), v.to_string()),
            None if !item.is_empty() && !value_needed => out.insert(item.clone(), String::new()),
            _ => bail!("invalid {what} {item:?}: expected KEY=VALUE"),
        };
    }
    Ok(out)
}

fn create(a: CreateArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let new = New {
        driver: Some(a.driver),
        labels: pairs(&a.labels, "label", false)?,
        options: pairs(&a.opts, "option", true)?,
        anonymous: false,
    };
    let _lock = volumes::lock(root, LockKind::Shared)?;
    let v = volumes::create(root, a.name.as_deref(), &new)?;
    println!("{}", v.name);
    Ok(ExitCode::SUCCESS)
}

/// One `--filter` of `volume ls`.
enum Filter {
    Dangling(bool),
    Name(String),
    Label(String, Option<String>),
    Driver(String),
}

impl Filter {
    fn parse(s: &str) -> anyhow::Result<Filter> {
        let bad = || anyhow::anyhow!("invalid filter {s:?} (dangling=true|false, name=…, label=K[=V], driver=…)");
        let (k, v) = s.split_once('=').ok_or_else(bad)?;
        Ok(match (k, v) {
            ("dangling", "true" | "1") => Filter::Dangling(true),
            ("dangling", "false" | "0") => Filter::Dangling(false),
            ("name", n) => Filter::Name(n.to_string()),
            ("label", l) => match l.split_once('=') {
                Some((k, v)) => Filter::Label(k.to_string(), Some(v.to_string())),
                None => Filter::Label(l.to_string(), None),
            },
            ("driver", d) => Filter::Driver(d.to_string()),
            _ => return Err(bad()),
        })
    }

    fn holds(&self, v: &Volume, used: bool) -> bool {
        match self {
            Filter::Dangling(d) => *d != used,
            Filter::Name(n) => v.name.contains(n.as_str()),
            Filter::Label(k, want) => v.labels.get(k).is_some_and(|have| want.as_ref().is_none_or(|w| w == have)),
            Filter::Driver(d) => v.driver == *d,
        }
    }
}

fn ls(a: LsArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let filters = a.filters.iter().map(|f| Filter::parse(f)).collect::<anyhow::Result<Vec<_>>>()?;
    let containers = record::list(root)?;
    // Filters of one kind are alternatives; filters of different kinds must all hold.
    let same_kind = |f: &Filter, g: &Filter| std::mem::discriminant(f) == std::mem::discriminant(g);
    let shown: Vec<Volume> = volumes::list(root)?
        .into_iter()
        .filter(|v| {
            let used = !volumes::users(&containers, &v.name).is_empty();
            filters.iter().all(|f| filters.iter().any(|g| same_kind(f, g) && g.holds(v, used)))
        })
        .collect();
    if a.quiet {
        shown.iter().for_each(|v| println!("{}", v.name));
    } else if let Some(f) = &a.format {
        let described: Vec<Value> = shown.iter().map(|v| describe(root, v)).collect();
        super::inspect::print(&described, Some(f))?;
    } else {
        let rows: Vec<Vec<String>> = shown.iter().map(|v| vec![v.driver.clone(), v.name.clone()]).collect();
        print_table_min(&["DRIVER", "VOLUME NAME"], &rows, 10);
    }
    Ok(ExitCode::SUCCESS)
}

/// A volume as `docker volume inspect` shows it.
pub fn describe(root: &Path, v: &Volume) -> Value {
    json!({
        "CreatedAt": v.created_at,
        "Driver": v.driver,
        "Labels": v.labels,
        "Mountpoint": volumes::data_dir(root, &v.name),
        "Name": v.name,
        "Options": v.options,
        "Scope": v.scope,
    })
}

fn inspect(a: InspectArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let mut out = Vec::new();
    for name in &a.names {
        out.push(describe(root, &volumes::load(root, name)?));
    }
    super::inspect::print(&out, a.format.as_deref())?;
    Ok(ExitCode::SUCCESS)
}

fn rm(a: RmArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let _lock = volumes::lock(root, LockKind::Exclusive)?;
    let containers = record::list(root)?;
    let mut code = ExitCode::SUCCESS;
    for name in &a.names {
        match volumes::remove(root, name, &containers) {
            Ok(()) => println!("{name}"),
            Err(volumes::VolumeError::NoSuchVolume(_)) if a.force => {}
            Err(e) => code = failed(1, &e),
        }
    }
    Ok(code)
}

/// Asks on the terminal; only `y` (or `Y`) is yes, the end of the input is no.
fn confirm(warning: &str) -> anyhow::Result<bool> {
    print!("{warning}\nAre you sure you want to continue? [y/N] ");
    std::io::stdout().flush().context("writing to standard output")?;
    let mut answer = String::new();
    let read = std::io::stdin().lock().read_line(&mut answer).context("reading the answer")?;
    if read == 0 {
        println!();
    }
    Ok(matches!(answer.trim(), "y" | "Y"))
}

fn prune(a: PruneArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let which = if a.all { "all local volumes" } else { "anonymous local volumes" };
    let warning = format!("WARNING! This will remove {which} not used by at least one container.");
    if !a.force && !confirm(&warning)? {
        return Ok(ExitCode::SUCCESS);
    }
    let _lock = volumes::lock(root, LockKind::Exclusive)?;
    let containers = record::list(root)?;
    let (mut deleted, mut bytes) = (Vec::new(), 0);
    for v in volumes::list(root)? {
        if (!a.all && !v.anonymous) || !volumes::users(&containers, &v.name).is_empty() {
            continue;
        }
        let size = volumes::size(root, &v.name);
        volumes::remove(root, &v.name, &containers)?;
        deleted.push(v.name);
        bytes += size;
    }
    if !deleted.is_empty() {
        println!("Deleted Volumes:");
        deleted.iter().for_each(|n| println!("{n}"));
        println!();
    }
    println!("Total reclaimed space: {}", human_size(bytes));
    Ok(ExitCode::SUCCESS)
}
