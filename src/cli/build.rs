//! `strata build [OPTIONS] CONTEXT|-`: an image from a Dockerfile, as docker's classic builder
//! makes it (see [`crate::build`]).

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

use super::registry_args::RegistryArgs;
use crate::build::base::PullPolicy;
use crate::build::context::Context;
use crate::build::executor::{self, Options};
use crate::image::reference::Name;

/// Arguments of `strata build`.
#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// The Dockerfile (default: CONTEXT/Dockerfile; `-`: stdin).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<String>,
    /// Name the image (repeatable).
    #[arg(short = 't', long = "tag", value_name = "NAME[:TAG]")]
    tags: Vec<String>,
    /// Set a build arg (`K=V`, or `K` to pass this one's value).
    #[arg(long = "build-arg", value_name = "K=V")]
    build_args: Vec<String>,
    /// Build up to this stage.
    #[arg(long)]
    target: Option<String>,
    /// Reuse nothing from the cache.
    #[arg(long)]
    no_cache: bool,
    /// Pull FROM images even when the store has them (without it: only those it lacks).
    #[arg(long)]
    pull: bool,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Add a label to the image (`K=V`, repeatable).
    #[arg(long = "label", value_name = "K=V")]
    labels: Vec<String>,
    /// Network of RUN steps (as `strata run --network`).
    #[arg(long, default_value = "bridge")]
    network: String,
    /// Print only the image id.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Write the image id to this file.
    #[arg(long, value_name = "FILE")]
    iidfile: Option<PathBuf>,
    /// The build context: a directory, or `-` for a tar on stdin.
    #[arg(value_name = "CONTEXT")]
    context: String,
}

/// Builds, prints the result.
pub fn run(a: BuildArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let ctx = if a.context == "-" {
        Context::tar(std::io::stdin().lock(), &root.join("build-tmp")).context("reading the context from stdin")?
    } else {
        Context::dir(Path::new(&a.context))?
    };
    let dockerfile = match a.file.as_deref() {
        Some("-") => {
            let mut s = String::new();
            std::io::stdin().read_to_string(&mut s).context("reading the Dockerfile from stdin")?;
            s
        }
        Some(f) => {
            let p = if a.context == "-" { ctx.root().join(f) } else { PathBuf::from(f) };
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?
        }
        None => {
            let p = ctx.root().join("Dockerfile");
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?
        }
    };
    let mut build_args = BTreeMap::new();
    for b in &a.build_args {
        match b.split_once('=') {
            Some((k, v)) => build_args.insert(k.to_string(), v.to_string()),
            None => build_args.insert(b.clone(), std::env::var(b).unwrap_or_default()),
        };
    }
    let labels = a
        .labels
        .iter()
        .map(|l| l.split_once('=').map(|(k, v)| (k.to_string(), v.to_string())).unwrap_or((l.clone(), String::new())))
        .collect();
    let tags = a.tags.iter().map(|t| Name::parse(t)).collect::<Result<Vec<_>, _>>()?;
    let opts = Options {
        dockerfile,
        tags,
        build_args,
        target: a.target,
        no_cache: a.no_cache,
        labels,
        network: a.network,
        quiet: a.quiet,
        pull: PullPolicy { always: a.pull, tls: a.registry.tls(), authfile: a.registry.authfile.authfile.clone() },
    };
    let mut out = std::io::stdout();
    let id = executor::build(root, &ctx, &opts, &mut out)?;
    if a.quiet {
        println!("{id}");
    }
    if let Some(f) = a.iidfile {
        std::fs::write(&f, id.to_string()).with_context(|| format!("writing {}", f.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}
