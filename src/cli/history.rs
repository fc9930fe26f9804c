//! `strata history IMAGE`: the build steps of an image, newest first, empty layers included
//! (docker history's columns, and AUTHOR when a step names one, as `strata commit -a` does).

use std::path::Path;
use std::process::ExitCode;

use super::store_root::{human_age, human_size, open_store, print_table};
use crate::image::spec::History;
use crate::image::store::{Image, Store};

/// Arguments of `strata history`.
#[derive(clap::Args, Debug)]
pub struct HistoryArgs {
    /// The image: a name or an id.
    #[arg(value_name = "IMAGE")]
    image: String,
    /// Do not shorten the CREATED BY column.
    #[arg(long)]
    no_trunc: bool,
}

/// Prints IMAGE CREATED CREATED BY SIZE COMMENT.
pub fn run(a: HistoryArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let store = open_store(root)?;
    let _lock = store.read()?;
    let img = store.resolve(&a.image)?;
    let steps = steps(&store, &img);
    // Committed images name their author: then the table has an AUTHOR column.
    let authors = steps.iter().any(|(h, _)| h.author.is_some());
    let mut rows: Vec<Vec<String>> = steps
        .into_iter()
        .map(|(h, size)| {
            let mut by = h.created_by.clone().unwrap_or_default();
            if !a.no_trunc && by.chars().count() > 45 {
                by = by.chars().take(44).collect::<String>() + "…";
            }
            let comment = h.comment.clone().unwrap_or_default();
            let mut row = vec!["<missing>".into(), human_age(h.created.as_deref()), by, human_size(size), comment];
            if authors {
                row.push(h.author.clone().unwrap_or_default());
            }
            row
        })
        .collect();
    rows.reverse();
    if let Some(top) = rows.first_mut() {
        top[0] = if a.no_trunc { img.id().to_string() } else { img.id().short().to_string() };
    }
    let mut headers = vec!["IMAGE", "CREATED", "CREATED BY", "SIZE", "COMMENT"];
    if authors {
        headers.push("AUTHOR");
    }
    print_table(&headers, &rows);
    Ok(ExitCode::SUCCESS)
}

/// Each history entry with the unpacked size of the layer it made (0 for empty layers), oldest
/// first. An image without history gets one anonymous step per layer.
fn steps(store: &Store, img: &Image) -> Vec<(History, u64)> {
    let mut layers = img.config.rootfs.diff_ids.iter().map(|d| store.layer_meta(d).size);
    if img.config.history.is_empty() {
        return layers.map(|s| (History::default(), s)).collect();
    }
    img.config
        .history
        .iter()
        .map(|h| {
            let size = if h.empty_layer { 0 } else { layers.next().unwrap_or(0) };
            (h.clone(), size)
        })
        .collect()
}
