//! `strata layers IMAGE|CONTAINER`: one row per layer with what it changes and wastes, the
//! image's efficiency; `--files N` lists a layer's changes; `--svg`/`--html` draw the stack.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;

use super::store_root::{open_store, print_table, print_text};
use crate::explain::render::layers::{HEADERS, changes, rows, summary};
use crate::explain::render::svg::Picture;
use crate::explain::stats::Stats;
use crate::explain::target::Target;

/// Arguments of `strata layers`.
#[derive(clap::Args, Debug)]
pub struct LayersArgs {
    /// The image (name or id) or container (name or id).
    #[arg(value_name = "IMAGE|CONTAINER")]
    target: String,
    /// An image not in the store is pulled lazily first: only its tables of contents are read
    /// (eStargz layers; others are pulled whole).
    #[arg(long)]
    lazy: bool,
    /// List the changes of layer N (a number of the LAYER column, or `upper`): A added,
    /// C modified, D deleted, O made opaque.
    #[arg(long, value_name = "N")]
    files: Option<String>,
    /// Draw the stack as a picture into FILE (SVG).
    #[arg(long, value_name = "FILE")]
    svg: Option<PathBuf>,
    /// Draw the stack as a picture into FILE (an HTML page with the table).
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Draw at most this many paths in the picture.
    #[arg(long, value_name = "N", default_value_t = 40)]
    max_paths: usize,
    /// Do not shorten the CREATED BY column.
    #[arg(long)]
    no_trunc: bool,
}

/// Prints the table (or a layer's changes) and writes the pictures asked for.
pub fn run(a: LayersArgs, root: &Path) -> anyhow::Result<ExitCode> {
    if a.lazy {
        super::pull::lazy_if_missing(root, &a.target, super::pull::LazyArg::Only)?;
    }
    let store = open_store(root)?;
    let target = Target::open(&store, &a.target)?;
    let stack = &target.stack;
    let (stats, view) = Stats::of(stack);
    if let Some(label) = &a.files {
        print_text(&changes(stack, &stats, stack.by_label(label)?))?;
        return Ok(ExitCode::SUCCESS);
    }
    print_table(&HEADERS, &rows(stack, &stats, if a.no_trunc { 0 } else { 45 }));
    println!("{}", summary(&stats));
    let picture = Picture { stack, view: &view, stats: &stats, title: target.describe(), max_columns: a.max_paths };
    if let Some(file) = &a.svg {
        std::fs::write(file, picture.svg()).with_context(|| format!("writing {}", file.display()))?;
        println!("Wrote {}", file.display());
    }
    if let Some(file) = &a.html {
        std::fs::write(file, picture.html()).with_context(|| format!("writing {}", file.display()))?;
        println!("Wrote {}", file.display());
    }
    Ok(ExitCode::SUCCESS)
}
