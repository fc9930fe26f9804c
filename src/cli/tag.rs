//! `strata tag SOURCE TARGET`: give an image another name.

use std::path::Path;
use std::process::ExitCode;

use super::store_root::open_store;
use crate::image::reference::Name;

/// Arguments of `strata tag`.
#[derive(clap::Args, Debug)]
pub struct TagArgs {
    /// The image: a name or an id.
    #[arg(value_name = "SOURCE_IMAGE[:TAG]")]
    source: String,
    /// The new name.
    #[arg(value_name = "TARGET_IMAGE[:TAG]")]
    target: String,
}

/// Points TARGET at the image SOURCE names (moving it from any image it named before).
pub fn run(a: TagArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let target = Name::parse(&a.target)?;
    let store = open_store(root)?;
    let lock = store.write()?;
    let img = store.resolve(&a.source)?;
    let mut index = store.index()?;
    crate::image::store::set_name(&mut index, &target, &img.descriptor);
    lock.save_index(&index)?;
    Ok(ExitCode::SUCCESS)
}
