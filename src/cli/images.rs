//! `strata images`: list the images of the store, as `docker images` does (a build's unnamed
//! step images only with `-a`).

use std::path::Path;
use std::process::ExitCode;

use super::store_root::{human_age, human_size, open_store, print_table};
use crate::image::reference::Name;

/// Arguments of `strata images`.
#[derive(clap::Args, Debug)]
pub struct ImagesArgs {
    /// Only the image ids.
    #[arg(short = 'q', long)]
    quiet: bool,
    /// Full image ids.
    #[arg(long)]
    no_trunc: bool,
    /// Also the unnamed images a build made for its steps (kept for its cache).
    #[arg(short = 'a', long)]
    all: bool,
}

/// Prints REPOSITORY TAG IMAGE ID CREATED SIZE, newest first.
pub fn run(a: ImagesArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let _lock = store.read()?;
    let mut images = store.images()?;
    images.sort_by(|x, y| y.config.created.cmp(&x.config.created));
    if !a.all {
        let steps = crate::build::cache::Cache::new(root).manifests();
        images.retain(|i| !i.names.is_empty() || !steps.contains(&i.descriptor.digest));
    }
    let mut rows = Vec::new();
    for img in &images {
        let id = if a.no_trunc { img.id().to_string() } else { img.id().short().to_string() };
        if a.quiet {
            if !rows.iter().any(|r: &Vec<String>| r[0] == id) {
                rows.push(vec![id]);
            }
            continue;
        }
        let created = human_age(img.config.created.as_deref());
        let size = human_size(store.image_size(img));
        let mut names: Vec<(String, String)> = img
            .names
            .iter()
            .filter_map(|n| Name::parse(n).ok())
            .map(|n| (n.repository().to_string(), n.tag().to_string()))
            .collect();
        if names.is_empty() {
            names.push(("<none>".into(), "<none>".into()));
        }
        for (repo, tag) in names {
            rows.push(vec![repo, tag, id.clone(), created.clone(), size.clone()]);
        }
    }
    if a.quiet {
        rows.iter().for_each(|r| println!("{}", r[0]));
    } else {
        print_table(&["REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"], &rows);
    }
    Ok(ExitCode::SUCCESS)
}
