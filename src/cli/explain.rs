//! `strata explain IMAGE|CONTAINER PATH`: where a path comes from, in plain words.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use super::store_root::{open_store, print_text};
use crate::explain::merge::View;
use crate::explain::render::Style;
use crate::explain::render::text::Explainer;
use crate::explain::target::Target;

/// Arguments of `strata explain`.
#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// The image (name or id) or container (name or id).
    #[arg(value_name = "IMAGE|CONTAINER")]
    target: String,
    /// An image not in the store is pulled lazily first: only its tables of contents are read
    /// (eStargz layers; others are pulled whole).
    #[arg(long)]
    lazy: bool,
    /// The path inside it.
    #[arg(value_name = "PATH")]
    path: PathBuf,
}

/// Prints the layer the path is shown from and what it shadows, or what hides it.
pub fn run(a: ExplainArgs, root: &Path) -> anyhow::Result<ExitCode> {
    if a.lazy {
        super::pull::lazy_if_missing(root, &a.target, super::pull::LazyArg::Only)?;
    }
    let store = open_store(root)?;
    let target = Target::open(&store, &a.target)?;
    let view = View::of(&target.stack);
    let image = target.stack.upper().map(|upper| View::build(&target.stack, upper, |_, _| {}));
    let ex = Explainer { stack: &target.stack, view: &view, image: image.as_ref(), style: Style::for_stdout() };
    match ex.explain(&a.path, &target.describe())? {
        Some(text) => {
            print_text(&text)?;
            Ok(ExitCode::SUCCESS)
        }
        None => anyhow::bail!("{}: no layer of {} has this path", a.path.display(), target.describe()),
    }
}
