//! `strata diff CONTAINER`: what a container changed relative to its image, as `docker diff`
//! prints it (`A /path`, `C /path`, `D /path`, sorted by path).

use std::path::Path;
use std::process::ExitCode;

use super::container_ref;
use super::store_root::{open_store, print_text};
use crate::image::diff;

/// Arguments of `strata diff`.
#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// The container: its name, id, or a unique prefix of its id.
    #[arg(value_name = "CONTAINER")]
    container: String,
}

/// Prints one line per changed path.
pub fn run(a: DiffArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let _lock = store.read()?;
    let c = container_ref::open(&store, &a.container)?;
    let plan = diff::plan(&c.record.upper(), &c.lowers)?;
    let text: String = plan.changes.iter().map(|ch| format!("{ch}\n")).collect();
    print_text(&text)?;
    Ok(ExitCode::SUCCESS)
}
