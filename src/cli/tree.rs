//! `strata tree IMAGE|CONTAINER [PATH]`: the merged tree, each entry annotated by its layer.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::store_root::{open_store, print_text};
use crate::explain::merge::View;
use crate::explain::render::Style;
use crate::explain::render::tree::TreeWriter;
use crate::explain::target::Target;

/// Arguments of `strata tree`.
#[derive(clap::Args, Debug)]
pub struct TreeArgs {
    /// The image (name or id) or container (name or id).
    #[arg(value_name = "IMAGE|CONTAINER")]
    target: String,
    /// An image not in the store is pulled lazily first: only its tables of contents are read
    /// (eStargz layers; others are pulled whole).
    #[arg(long)]
    lazy: bool,
    /// The directory to start from [default: /].
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    /// Also show what is not seen: whiteouts, shadowed versions, hidden directories.
    #[arg(long, short)]
    all: bool,
}

/// Prints the tree.
pub fn run(a: TreeArgs, root: &Path) -> anyhow::Result<ExitCode> {
    if a.lazy {
        super::pull::lazy_if_missing(root, &a.target, super::pull::LazyArg::Only)?;
    }
    let store = open_store(root)?;
    let target = Target::open(&store, &a.target)?;
    let view = View::of(&target.stack);
    let asked = a.path.unwrap_or_default();
    let path = view.resolve(&asked).path;
    let Some(top) = view.get(&path) else {
        anyhow::bail!(
            "{}: not seen in {} (`strata explain {} {}` says why)",
            asked.display(),
            target.describe(),
            a.target,
            asked.display()
        );
    };
    let title = Path::new("/").join(&path);
    let writer = TreeWriter::new(&target.stack, Style::for_stdout(), a.all);
    print_text(&writer.render(top, &title.to_string_lossy()))?;
    Ok(ExitCode::SUCCESS)
}
