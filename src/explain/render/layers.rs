//! `strata layers`: one row per layer, top first (the container's upper layer above the image),
//! the image's efficiency, and the list of one layer's changes.

use std::fmt::Write;

use super::shorten;
use crate::explain::stack::{LayerId, Stack};
use crate::explain::stats::{Change, Stats};
use crate::image::progress::human_size;

/// Column headers of the layers table (CREATED BY last: it holds spaces).
pub const HEADERS: [&str; 9] =
    ["LAYER", "ID", "SIZE", "ADDED", "MODIFIED", "DELETED", "OPAQUE", "WASTED", "CREATED BY"];

/// The table's rows, top layer first; CREATED BY is cut to `width` characters (0: not cut).
pub fn rows(stack: &Stack, stats: &Stats, width: usize) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = (0..stack.layers.len()).map(|id| row(stack, stats, id, width)).collect();
    rows.reverse();
    rows
}

fn row(stack: &Stack, stats: &Stats, id: LayerId, width: usize) -> Vec<String> {
    let info = &stack.layer(id).info;
    let s = &stats.layers[id];
    let id_col = info.diff_id.as_ref().map(|d| d.short().to_string()).unwrap_or_else(|| "-".into());
    let by = info.created_by.clone().unwrap_or_default();
    let by = if width == 0 { by } else { shorten(&by, width) };
    let counts = [Change::Added, Change::Modified, Change::Deleted, Change::Opaque].map(|c| s.count(c).to_string());
    let mut row = vec![info.label.clone(), id_col, human_size(s.size)];
    row.extend(counts);
    row.push(human_size(s.wasted));
    row.push(by);
    row
}

/// The summary under the table: efficiency and wasted bytes.
pub fn summary(stats: &Stats) -> String {
    format!(
        "Efficiency: {:.2} % ({} wasted of {} stored: data that a higher layer overwrote or deleted)",
        (stats.efficiency() * 10_000.0).floor() / 100.0,
        human_size(stats.wasted()),
        human_size(stats.total())
    )
}

/// The changes of layer `id`, one per line: a letter (A added, C modified, D deleted, O made
/// opaque) and the path.
pub fn changes(stack: &Stack, stats: &Stats, id: LayerId) -> String {
    let info = &stack.layer(id).info;
    let s = &stats.layers[id];
    let mut out = format!("Changes of {} ({} entries):\n", info.name(), s.changes.len());
    for (c, path) in &s.changes {
        let _ = writeln!(out, "{}  /{}", c.letter(), path.display());
    }
    out
}
