//! `strata convert --estargz IMAGE NEWREF`: the image with every layer written again as
//! eStargz — still an ordinary gzip layer for every other tool, and lazily pullable (`strata
//! pull --lazy`, `run --lazy`). `--prefetch PATH` puts the files a workload reads first at the
//! front of their layer, behind the prefetch landmark.

use std::path::Path;
use std::process::ExitCode;

use super::store_root::open_store;
use crate::image::convert::to_estargz;
use crate::image::reference::Name;

/// Arguments of `strata convert`.
#[derive(clap::Args, Debug)]
pub struct ConvertArgs {
    /// Write the layers as eStargz (the only conversion there is; required).
    #[arg(long, required = true)]
    estargz: bool,
    /// A file (absolute path in the image) to fetch first when the image is used lazily.
    #[arg(long, value_name = "PATH")]
    prefetch: Vec<String>,
    /// The image: a name or an id.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// The new image's name.
    #[arg(value_name = "NEWREF")]
    target: String,
}

/// Converts, names the new image and prints its id.
pub fn run(a: ConvertArgs, root: &Path) -> anyhow::Result<ExitCode> {
    debug_assert!(a.estargz);
    let target = Name::parse(&a.target)?;
    let store = open_store(root)?;
    let lock = store.write()?;
    let img = store.resolve(&a.image)?;
    let prefetch: Vec<String> = a.prefetch.iter().map(|p| p.trim_start_matches('/').to_string()).collect();
    let converted = crate::image::store::undo_on_error(&lock, to_estargz(&lock, &img, &prefetch))?;
    let mut index = store.index()?;
    crate::image::store::set_name(&mut index, &target, &converted.descriptor);
    lock.save_index(&index)?;
    let new = store.resolve(&a.target)?;
    println!("{}", new.id());
    Ok(ExitCode::SUCCESS)
}
