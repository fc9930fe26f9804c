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
    /// Run this command (words split on spaces) in a container of the image first, and
    /// prefetch the files it opens, in the order it opens them.
    #[arg(long, value_name = "CMD")]
    prefetch_from: Option<String>,
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
    let mut prefetch: Vec<String> = a.prefetch.iter().map(|p| p.trim_start_matches('/').to_string()).collect();
    if let Some(cmd) = &a.prefetch_from {
        for p in opened_by(root, &a.image, cmd)? {
            if !prefetch.contains(&p) {
                prefetch.push(p);
            }
        }
    }
    let store = open_store(root)?;
    let lock = store.write()?;
    let img = store.resolve(&a.image)?;
    let converted = crate::image::store::undo_on_error(&lock, to_estargz(&lock, &img, &prefetch))?;
    let mut index = store.index()?;
    crate::image::store::set_name(&mut index, &target, &converted.descriptor);
    lock.save_index(&index)?;
    let new = store.resolve(&a.target)?;
    println!("{}", new.id());
    Ok(ExitCode::SUCCESS)
}

/// The image's files that `cmd` opens in a container (no network), in the order it opens them:
/// the mount records them (`STRATA_RECORD_OPENS`).
fn opened_by(root: &Path, image: &str, cmd: &str) -> anyhow::Result<Vec<String>> {
    let log = tempfile::NamedTempFile::new()?;
    let status = std::process::Command::new(std::env::current_exe()?)
        .arg("--root")
        .arg(root)
        .args(["run", "--rm", "--network", "none", image])
        .args(cmd.split_whitespace())
        .env("STRATA_RECORD_OPENS", log.path())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .status()?;
    if !status.success() {
        anyhow::bail!("--prefetch-from {cmd:?}: the command failed ({status})");
    }
    let mut out: Vec<String> = Vec::new();
    for line in std::fs::read_to_string(log.path())?.lines() {
        let p = line.trim_start_matches('/').to_string();
        if !p.is_empty() && !out.contains(&p) {
            out.push(p);
        }
    }
    Ok(out)
}
