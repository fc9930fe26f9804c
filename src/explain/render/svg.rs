//! The stack as a picture: the merged view on top, then each layer (top first) as a band with
//! its files. A path keeps its column in every band, so what a layer hides sits right under what
//! hides it: hidden and overwritten versions are struck through, whiteouts are dark, opaque
//! directories dashed. The file is self-contained (no script, no external font or image).
//!
//! Columns are the paths that tell the stack's story first (paths in several layers, paths not
//! seen, paths of layers above the bottom one), then other paths up to `max_columns`; each band
//! says how many of its entries the picture leaves out.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

use super::layers::{HEADERS, rows, summary};
use super::shorten;
use crate::explain::merge::View;
use crate::explain::stack::{Dir, Kind, LayerId, Node, Stack};
use crate::explain::stats::Stats;

const LABEL_W: usize = 260;
const COL_W: usize = 132;
const GAP: usize = 6;
const BAND_H: usize = 44;
const CELL_H: usize = 28;
const TOP: usize = 84;
/// Paths per panel: a long stack of paths is drawn as several panels, one under the other.
const PER_PANEL: usize = 7;
const PALETTE: [&str; 8] = ["#4e79a7", "#59a14f", "#e3b505", "#b07aa1", "#76b7b2", "#f28e2b", "#9c755f", "#ff9da7"];
const UPPER: &str = "#e15759";

/// What a picture shows.
pub struct Picture<'s, 'a> {
    /// The layers.
    pub stack: &'a Stack,
    /// Their merged view.
    pub view: &'s View<'a>,
    /// Their measures.
    pub stats: &'s Stats,
    /// The heading ("image NAME", "container NAME (image X)").
    pub title: String,
    /// At most this many paths are drawn.
    pub max_columns: usize,
}

/// How a layer's version of a path is drawn.
enum Cell<'a> {
    Shown(&'a Node),
    Hidden(&'a Node),
    Whiteout,
}

impl<'a> Picture<'_, 'a> {
    /// The picture as an SVG document.
    pub fn svg(&self) -> String {
        let paths = self.paths();
        let (columns, drawable) = self.columns(&paths);
        let n = self.stack.layers.len();
        let width = (LABEL_W + columns.len().min(PER_PANEL) * (COL_W + GAP) + 20).max(900);
        let panel_h = 24 + (n + 1) * BAND_H + 16 + 24;
        let panels = columns.len().div_ceil(PER_PANEL).max(1);
        let height = TOP + panels * panel_h + 40;
        let mut s = format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" \
             viewBox=\"0 0 {width} {height}\" font-family=\"DejaVu Sans, Liberation Sans, Arial, sans-serif\">\n\
             <rect width=\"100%\" height=\"100%\" fill=\"#ffffff\"/>\n"
        );
        self.heading(&mut s, columns.len(), drawable);
        legend(&mut s, 58);
        let chunks: Vec<&[PathBuf]> = if columns.is_empty() { vec![&[]] } else { columns.chunks(PER_PANEL).collect() };
        for (k, chunk) in chunks.into_iter().enumerate() {
            let top = TOP + k * panel_h;
            self.group_headers(&mut s, chunk, top + 18);
            self.merged_band(&mut s, chunk, width, top + 24);
            for (row, id) in (0..n).rev().enumerate() {
                let y = top + 24 + BAND_H + 16 + row * BAND_H;
                self.layer_band(&mut s, chunk, &paths, (id, width), y);
            }
        }
        s.push_str("</svg>\n");
        s
    }

    /// The picture in an HTML page, with the layers table under it.
    pub fn html(&self) -> String {
        let mut h = format!(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{}</title>\n<style>\
             body{{font-family:DejaVu Sans,Liberation Sans,Arial,sans-serif;margin:16px}}\
             table{{border-collapse:collapse;font-size:13px}}td,th{{padding:3px 8px;border-bottom:1px solid #ddd;text-align:left}}\
             </style></head><body>\n",
            esc(&self.title)
        );
        h.push_str(&self.svg());
        h.push_str("<table>\n<tr>");
        for head in HEADERS {
            let _ = write!(h, "<th>{}</th>", esc(head));
        }
        h.push_str("</tr>\n");
        for row in rows(self.stack, self.stats, 0) {
            h.push_str("<tr>");
            for cell in row {
                let _ = write!(h, "<td>{}</td>", esc(&cell));
            }
            h.push_str("</tr>\n");
        }
        let _ = write!(h, "</table>\n<p>{}</p>\n</body></html>\n", esc(&summary(self.stats)));
        h
    }

    /// Every path of every layer, with the layers that have it (bottom first).
    fn paths(&self) -> BTreeMap<PathBuf, Vec<LayerId>> {
        let mut out: BTreeMap<PathBuf, Vec<LayerId>> = BTreeMap::new();
        for (id, layer) in self.stack.layers.iter().enumerate() {
            walk(layer.root_dir(), Path::new(""), &mut |p, _| out.entry(p.to_path_buf()).or_default().push(id));
        }
        out
    }

    /// The paths drawn: those that tell the stack's story, then others, each group in path order.
    /// Also returns how many paths could be drawn.
    fn columns(&self, paths: &BTreeMap<PathBuf, Vec<LayerId>>) -> (Vec<PathBuf>, usize) {
        let (mut story, mut rest): (Vec<&PathBuf>, Vec<&PathBuf>) = (Vec::new(), Vec::new());
        for (p, ids) in paths {
            if !self.drawable(p, ids) {
                continue;
            }
            let tells = ids.len() > 1 || ids.iter().any(|&i| i > 0) || self.view.get(p).is_none();
            if tells { story.push(p) } else { rest.push(p) }
        }
        let drawable = story.len() + rest.len();
        story.truncate(self.max_columns);
        let room = self.max_columns - story.len();
        story.extend(rest.into_iter().take(room));
        (story.into_iter().cloned().collect(), drawable)
    }

    /// Non-directories and whiteouts always; directories only when opaque or when another
    /// layer has a non-directory at the same path.
    fn drawable(&self, p: &Path, ids: &[LayerId]) -> bool {
        let nodes: Vec<&Node> = ids.iter().filter_map(|&i| self.stack.layer(i).node(p)).collect();
        nodes.iter().any(|n| n.dir().is_none()) || nodes.iter().any(|n| n.dir().is_some_and(|d| d.opaque))
    }

    fn color(&self, id: LayerId) -> &'static str {
        if self.stack.layer(id).info.is_upper() { UPPER } else { PALETTE[id % PALETTE.len()] }
    }

    fn heading(&self, s: &mut String, drawn: usize, drawable: usize) {
        let left = drawable - drawn;
        let more = if left > 0 { format!("; {left} more paths not drawn") } else { String::new() };
        let _ = write!(
            s,
            "<text x=\"16\" y=\"26\" font-size=\"18\" font-weight=\"bold\">{}</text>\n\
             <text x=\"16\" y=\"46\" font-size=\"12\" fill=\"#444\">{} layers, {} paths drawn{more}. {}</text>\n",
            esc(&self.title),
            self.stack.layers.len(),
            drawn,
            esc(&summary(self.stats))
        );
    }

    /// The parent directory above each run of columns that share it.
    fn group_headers(&self, s: &mut String, columns: &[PathBuf], y: usize) {
        let mut i = 0;
        while i < columns.len() {
            let parent = columns[i].parent().unwrap_or(Path::new(""));
            let run = columns[i..].iter().take_while(|c| c.parent().unwrap_or(Path::new("")) == parent).count();
            let x = col_x(i);
            let chars = (run * (COL_W + GAP)) / 7;
            let label = shorten(&format!("/{}", parent.display()), chars.max(4));
            let _ = writeln!(
                s,
                "<line x1=\"{x}\" y1=\"{y}\" x2=\"{}\" y2=\"{y}\" stroke=\"#999\"/>\
                 <text x=\"{x}\" y=\"{}\" font-size=\"11\" fill=\"#333\">{}</text>",
                x + run * (COL_W + GAP) - GAP,
                y - 4,
                esc(&label)
            );
            i += run;
        }
    }

    fn band(&self, s: &mut String, y: usize, width: usize, fill: &str, title: &str, sub: &str) {
        let _ = write!(
            s,
            "<rect x=\"8\" y=\"{y}\" width=\"{}\" height=\"{}\" rx=\"6\" fill=\"{fill}\" fill-opacity=\"0.13\" \
             stroke=\"{fill}\" stroke-opacity=\"0.5\"/>\n\
             <text x=\"16\" y=\"{}\" font-size=\"13\" font-weight=\"bold\">{}</text>\
             <text x=\"16\" y=\"{}\" font-size=\"10\" fill=\"#555\">{}</text>\n",
            width - 16,
            BAND_H - 6,
            y + 17,
            esc(title),
            y + 32,
            esc(sub)
        );
    }

    fn merged_band(&self, s: &mut String, columns: &[PathBuf], width: usize, y: usize) {
        self.band(s, y, width, "#444444", "merged view", "what a mount of the stack shows");
        for (i, p) in columns.iter().enumerate() {
            let Some(e) = self.view.get(p) else { continue };
            let v = e.shown();
            let label = self.stack.layer(v.layer).info.label.clone();
            let tip = format!("/{} is shown from layer {label}", p.display());
            let look = Look { color: self.color(v.layer), opacity: 0.55, style: Style::Solid };
            cell(s, (i, y), look, &name_of(p, v.node), &tip);
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" font-size=\"9\" text-anchor=\"end\" fill=\"#222\">{}</text>",
                col_x(i) + COL_W - 4,
                y + 12,
                esc(&label)
            );
        }
    }

    fn layer_band(
        &self,
        s: &mut String,
        columns: &[PathBuf],
        paths: &BTreeMap<PathBuf, Vec<LayerId>>,
        (id, width): (LayerId, usize),
        y: usize,
    ) {
        let info = &self.stack.layer(id).info;
        let title = match &info.diff_id {
            Some(d) => format!("layer {} · {}", info.label, d.short()),
            None => "upper (container)".to_string(),
        };
        let total = paths.values().filter(|ids| ids.contains(&id)).count();
        let sub = shorten(&format!("{total} entries · {}", info.created_by.as_deref().unwrap_or("")), 40);
        self.band(s, y, width, self.color(id), &title, &sub);
        for (i, p) in columns.iter().enumerate() {
            let Some(c) = self.cell_of(id, p) else { continue };
            let color = self.color(id);
            match c {
                Cell::Shown(n) => {
                    let look = Look { color, opacity: 0.35, style: Style::Solid };
                    cell(s, (i, y), look, &name_of(p, n), &format!("/{}: seen", p.display()))
                }
                Cell::Hidden(n) => {
                    let tip = format!("/{}: hidden by a higher layer", p.display());
                    cell(s, (i, y), Look::HIDDEN, &name_of(p, n), &tip)
                }
                Cell::Whiteout => {
                    let name = format!("✗ {}", p.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
                    cell(s, (i, y), Look::WHITEOUT, &name, &format!("/{}: whiteout", p.display()))
                }
            }
        }
    }

    fn cell_of(&self, id: LayerId, p: &Path) -> Option<Cell<'a>> {
        let node = self.stack.layer(id).node(p)?;
        if node.is_whiteout() {
            return Some(Cell::Whiteout);
        }
        let seen = self.view.get(p).is_some_and(|e| e.versions.iter().any(|v| v.layer == id && v.path == p));
        Some(if seen { Cell::Shown(node) } else { Cell::Hidden(node) })
    }
}

/// How a file box is drawn.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Style {
    Solid,
    Struck,
    Whiteout,
}

/// A box's colours and style.
#[derive(Clone, Copy)]
struct Look<'c> {
    color: &'c str,
    opacity: f32,
    style: Style,
}

impl Look<'_> {
    /// A version hidden by a higher layer: grey, dashed, struck through.
    const HIDDEN: Look<'static> = Look { color: "#9a9a9a", opacity: 0.12, style: Style::Struck };
    /// A whiteout: dark.
    const WHITEOUT: Look<'static> = Look { color: "#222222", opacity: 0.9, style: Style::Whiteout };

    fn dash(&self) -> &'static str {
        if self.style == Style::Struck { " stroke-dasharray=\"3 2\"" } else { "" }
    }
}

fn col_x(i: usize) -> usize {
    LABEL_W + i * (COL_W + GAP)
}

/// One file box, in column `i` of the band at `band_y`.
fn cell(s: &mut String, (i, band_y): (usize, usize), look: Look<'_>, name: &str, tip: &str) {
    let (x, y) = (col_x(i), band_y + (BAND_H - 6 - CELL_H) / 2);
    let Look { color, opacity, style } = look;
    let text_fill = match style {
        Style::Solid => "#111",
        Style::Struck => "#777",
        Style::Whiteout => "#fff",
    };
    let label = shorten(name, 19);
    let _ = write!(
        s,
        "<g><title>{}</title><rect x=\"{x}\" y=\"{y}\" width=\"{COL_W}\" height=\"{CELL_H}\" rx=\"4\" fill=\"{color}\" \
         fill-opacity=\"{opacity}\" stroke=\"{color}\"{}/>\
         <text x=\"{}\" y=\"{}\" font-size=\"11\" fill=\"{text_fill}\">{}</text>",
        esc(tip),
        look.dash(),
        x + 6,
        y + 18,
        esc(&label)
    );
    if style == Style::Struck {
        let w = (label.chars().count() * 13 / 2).min(COL_W - 12);
        let _ = write!(
            s,
            "<line x1=\"{}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#c00\" stroke-width=\"1.3\"/>",
            x + 5,
            y + 14,
            x + 7 + w,
            y + 14
        );
    }
    s.push_str("</g>\n");
}

fn legend(s: &mut String, y: usize) {
    let seen = Look { color: PALETTE[1], opacity: 0.35, style: Style::Solid };
    let items = [
        (seen, "seen in the merged view"),
        (Look::HIDDEN, "hidden: overwritten or deleted above"),
        (Look::WHITEOUT, "whiteout (deletes the name below)"),
    ];
    for (i, (look, text)) in items.into_iter().enumerate() {
        let x = 16 + i * 300;
        let _ = writeln!(
            s,
            "<rect x=\"{x}\" y=\"{y}\" width=\"22\" height=\"14\" rx=\"3\" fill=\"{}\" fill-opacity=\"{}\" stroke=\"{}\"{}/>\
             <text x=\"{}\" y=\"{}\" font-size=\"11\">{}</text>",
            look.color,
            look.opacity,
            look.color,
            look.dash(),
            x + 28,
            y + 11,
            esc(text)
        );
    }
}

/// A path's name in a box: `name/` for a directory (with `opaque`), `name -> target` for a link.
fn name_of(p: &Path, node: &Node) -> String {
    let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    match &node.kind {
        Kind::Dir(d) if d.opaque => format!("{name}/ (opaque)"),
        Kind::Dir(_) => format!("{name}/"),
        Kind::Symlink(t) => format!("{name} → {}", t.to_string_lossy()),
        _ => name,
    }
}

/// Calls `f` on every node below `dir` (merged-path order), with its path.
fn walk(dir: &Dir, at: &Path, f: &mut impl FnMut(&Path, &Node)) {
    for (name, node) in &dir.children {
        let p = at.join(name);
        f(&p, node);
        if let Some(d) = node.dir() {
            walk(d, &p, f);
        }
    }
}

/// Escapes text for XML.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::merge::tests::three;

    #[test]
    fn draws_every_layer_with_struck_and_whiteout_cells() {
        let t = tempfile::tempdir().unwrap();
        let stack = three(t.path());
        let (stats, view) = Stats::of(&stack);
        let pic = Picture { stack: &stack, view: &view, stats: &stats, title: "a <test>".into(), max_columns: 40 };
        let svg = pic.svg();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc.descendants().filter(|n| n.has_tag_name("text")).filter_map(|n| n.text()).collect();
        for want in ["a <test>", "merged view", "✗ gone", "gone", "new", "opq/ (opaque)", "d2f"] {
            assert!(texts.contains(&want), "{want:?} not in {texts:?}");
        }
        let struck = doc.descendants().filter(|n| n.has_tag_name("line") && n.attribute("stroke") == Some("#c00"));
        assert!(struck.count() >= 3, "l1's a, gone and f2d/ are hidden");
        assert_eq!(esc("<&\"'>"), "&lt;&amp;&quot;&#39;&gt;");
    }
}
