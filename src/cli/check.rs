//! `strata check [--repair] [--quick]`: whether the store is whole (every blob's digest, every
//! index entry, every unpacked layer against its blob and diff_id, nothing `prune` would not
//! remove); one line per problem, exit 1 if there is any. `--repair` removes what is broken
//! (and the images it breaks), then checks again.

use std::path::Path;
use std::process::ExitCode;

use super::store_root::open_store;
use crate::image::check::{self, Report};

/// Arguments of `strata check`.
#[derive(clap::Args, Debug)]
pub struct CheckArgs {
    /// Remove what is broken: bad blobs, bad or half-made layers, the images they break.
    #[arg(long)]
    repair: bool,
    /// Skip unpacking every layer again to compare it (blobs and structure only).
    #[arg(long)]
    quick: bool,
}

fn summary(r: &Report) -> String {
    format!(
        "{} blobs, {} images, {} layers checked; {} unreachable (prune removes them); {} problem{}",
        r.blobs,
        r.images,
        r.layers,
        r.unreachable,
        r.problems.len(),
        if r.problems.len() == 1 { "" } else { "s" }
    )
}

/// Runs `strata check`.
pub fn run(a: CheckArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let report = {
        // Repairing holds the store exclusively from the check to the last removal.
        if a.repair {
            let lock = store.write()?;
            let report = check::check(&store, !a.quick)?;
            for p in &report.problems {
                println!("{}", p.what);
            }
            for line in check::repair(&lock, &report)? {
                println!("{line}");
            }
            check::check(&store, !a.quick)?
        } else {
            let _lock = store.read()?;
            check::check(&store, !a.quick)?
        }
    };
    if !a.repair {
        for p in &report.problems {
            println!("{}", p.what);
        }
    }
    println!("{}", summary(&report));
    Ok(if report.problems.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(1) })
}
