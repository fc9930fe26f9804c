//! `strata tree`: the merged tree, each entry annotated by the layer it is shown from (a merged
//! directory by all its layers, top first). With `--all`, what is not seen is listed too, after
//! the name it belongs to: whiteouts, shadowed versions, and whole hidden directories.

use std::ffi::OsStr;

use super::{Style, name_suffix};
use crate::explain::merge::{Entry, Gone, Hidden};
use crate::explain::stack::{LayerId, Stack};

/// One line of the tree before it is padded and painted.
struct Line {
    label: String,
    /// The layer whose colour the line takes (None: hidden lines).
    layer: Option<LayerId>,
    branch: String,
    name: String,
    note: String,
    kind: LineKind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum LineKind {
    Shown,
    Old,
    Whiteout,
}

/// An item of a directory listing.
enum Item<'v, 'a> {
    Shown(&'v OsStr, &'v Entry<'a>),
    Old(&'v OsStr, &'v Entry<'a>, String),
    Whiteout(&'v OsStr, &'v Gone<'a>),
}

/// Draws the tree.
pub struct TreeWriter<'a> {
    /// The layers.
    pub stack: &'a Stack,
    /// Colours.
    pub style: Style,
    /// Also list what is not seen.
    pub all: bool,
    lines: Vec<Line>,
}

impl<'a> TreeWriter<'a> {
    /// A writer for `stack`.
    pub fn new(stack: &'a Stack, style: Style, all: bool) -> Self {
        TreeWriter { stack, style, all, lines: Vec::new() }
    }

    /// The tree below `top` (shown as `title`), one entry per line: `LAYERS  TREE NAME [NOTE]`.
    pub fn render(mut self, top: &Entry<'a>, title: &str) -> String {
        let label = self.labels(top);
        let note = self.shown_note(top);
        let name = title.to_string();
        self.lines.push(Line {
            label,
            layer: Some(top.shown().layer),
            branch: String::new(),
            name,
            note,
            kind: LineKind::Shown,
        });
        if top.is_dir() {
            self.dir(top, "");
        }
        if self.all {
            let mut items = Vec::new();
            self.history_items(OsStr::new(title), top, top.history(), &mut items);
            self.list(items, None);
        }
        self.finish()
    }

    fn labels(&self, e: &Entry<'a>) -> String {
        let ls: Vec<&str> = e.versions.iter().map(|v| self.stack.layer(v.layer).info.label.as_str()).collect();
        ls.join(",")
    }

    fn label(&self, id: LayerId) -> String {
        self.stack.layer(id).info.label.clone()
    }

    /// "layer 3", or "the upper layer" of a container.
    fn layer_ref(&self, id: LayerId) -> String {
        let info = &self.stack.layer(id).info;
        if info.is_upper() { "the upper layer".into() } else { format!("layer {}", info.label) }
    }

    /// The items of a shown directory, by name; with `--all` each name's hidden history follows it.
    fn items<'s>(&self, dir: &'s Entry<'a>) -> Vec<Item<'s, 'a>> {
        let mut names: Vec<&'s OsStr> = dir.children.keys().map(|n| n.as_os_str()).collect();
        if self.all {
            names.extend(dir.gone.keys().map(|n| n.as_os_str()));
            names.sort();
        }
        let mut out = Vec::new();
        for name in names {
            if let Some(c) = dir.children.get(name) {
                out.push(Item::Shown(name, c));
                if self.all {
                    self.history_items(name, c, c.history(), &mut out);
                }
            } else if let Some(g) = dir.gone.get(name) {
                out.push(Item::Whiteout(name, g));
                if let Some(hid) = &g.hid {
                    let note = format!("deleted by the whiteout of {}", self.layer_ref(g.whiteout.layer));
                    out.push(Item::Old(name, hid, note));
                    self.history_items(name, hid, hid.history(), &mut out);
                }
            }
        }
        out
    }

    /// Items for an entry's history; each says what hides it (the item above it).
    fn history_items<'s>(
        &self,
        name: &'s OsStr,
        top: &'s Entry<'a>,
        hist: Vec<Hidden<'s, 'a>>,
        out: &mut Vec<Item<'s, 'a>>,
    ) {
        let mut above = Hidden::Entry(top);
        for h in hist {
            match h {
                Hidden::Whiteout(g) => out.push(Item::Whiteout(name, g)),
                Hidden::Entry(e) => out.push(Item::Old(name, e, self.note_under(&above, e))),
            }
            above = h;
        }
    }

    /// Why `old` is not seen, given what lies right above it.
    fn note_under(&self, above: &Hidden<'_, 'a>, old: &Entry<'a>) -> String {
        match above {
            Hidden::Whiteout(g) => format!("deleted by the whiteout of {}", self.layer_ref(g.whiteout.layer)),
            Hidden::Entry(a) => {
                let lowest = a.versions.last().unwrap_or(a.shown());
                if old.is_dir() && lowest.node.dir().is_some_and(|d| d.opaque) {
                    format!("hidden: opaque in {}", self.layer_ref(lowest.layer))
                } else {
                    format!("shadowed by {}", self.layer_ref(lowest.layer))
                }
            }
        }
    }

    fn dir(&mut self, dir: &Entry<'a>, prefix: &str) {
        let items = self.items(dir);
        self.list(items, Some(prefix));
    }

    /// Lines for the items of one directory below `prefix` (None: top-level lines, no branches).
    fn list(&mut self, items: Vec<Item<'_, 'a>>, prefix: Option<&str>) {
        let n = items.len();
        for (i, item) in items.into_iter().enumerate() {
            let last = i + 1 == n;
            let (branch, next) = match prefix {
                None => (String::new(), String::new()),
                Some(p) => (
                    format!("{p}{}", if last { "└── " } else { "├── " }),
                    format!("{p}{}", if last { "    " } else { "│   " }),
                ),
            };
            match item {
                Item::Shown(name, e) => {
                    self.entry_line(e, name, branch, self.shown_note(e), LineKind::Shown);
                    if e.is_dir() {
                        self.dir(e, &next);
                    }
                }
                Item::Old(name, e, note) => {
                    self.entry_line(e, name, branch, note, LineKind::Old);
                    self.hidden_dir(e, &next);
                }
                Item::Whiteout(name, g) => {
                    let layer = g.whiteout.layer;
                    self.lines.push(Line {
                        label: self.label(layer),
                        layer: Some(layer),
                        branch,
                        name: name.to_string_lossy().into_owned(),
                        note: "whiteout".into(),
                        kind: LineKind::Whiteout,
                    });
                }
            }
        }
    }

    /// Everything under a hidden directory.
    fn hidden_dir(&mut self, dir: &Entry<'a>, prefix: &str) {
        let n = dir.children.len();
        for (i, (name, e)) in dir.children.iter().enumerate() {
            let last = i + 1 == n;
            let branch = format!("{prefix}{}", if last { "└── " } else { "├── " });
            self.entry_line(e, name, branch, "hidden".into(), LineKind::Old);
            self.hidden_dir(e, &format!("{prefix}{}", if last { "    " } else { "│   " }));
        }
    }

    fn shown_note(&self, e: &Entry<'a>) -> String {
        match e.shown().node.dir() {
            Some(d) if d.redirect.is_some() => "renamed (overlay.redirect)".into(),
            Some(d) if d.opaque => "opaque".into(),
            _ => String::new(),
        }
    }

    fn entry_line(&mut self, e: &Entry<'a>, name: &OsStr, branch: String, note: String, kind: LineKind) {
        let v = e.shown();
        self.lines.push(Line {
            label: self.labels(e),
            layer: Some(v.layer),
            branch,
            name: format!("{}{}", name.to_string_lossy(), name_suffix(v.node)),
            note,
            kind,
        });
    }

    /// Pads the label column and paints the lines.
    fn finish(self) -> String {
        let width = self.lines.iter().map(|l| l.label.chars().count()).max().unwrap_or(0).max(5);
        let mut out = format!("{:<width$}  PATH\n", "LAYER");
        for l in &self.lines {
            let label = format!("{:<width$}", l.label);
            let (label, name) = match (l.kind, l.layer) {
                (LineKind::Shown, Some(id)) => {
                    (self.style.layer(self.stack, id, &label), self.style.layer(self.stack, id, &l.name))
                }
                (LineKind::Whiteout, _) => (label, self.style.whiteout(&l.name)),
                _ => (label, self.style.hidden(&l.name)),
            };
            let note = if l.note.is_empty() { String::new() } else { format!("  ({})", l.note) };
            out.push_str(&format!("{label}  {}{name}{note}\n", l.branch));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::explain::merge::View;
    use crate::explain::merge::tests::three;

    #[test]
    fn lists_what_is_not_seen_with_all() {
        let t = tempfile::tempdir().unwrap();
        let stack = three(t.path());
        let view = View::of(&stack);
        let plain = TreeWriter::new(&stack, Style::default(), false).render(&view.root, "/");
        assert!(plain.lines().any(|l| l == "2      ├── a"), "{plain}");
        assert!(!plain.contains("whiteout"), "{plain}");
        let all = TreeWriter::new(&stack, Style::default(), true).render(&view.root, "/");
        for line in [
            "1      ├── a  (shadowed by layer 2)",
            "2      ├── gone  (whiteout)",
            "1      ├── gone  (deleted by the whiteout of layer 2)",
            "1      │       └── x  (hidden)",
            "1      └── opq/  (hidden: opaque in layer 2)",
            "1          └── old/  (hidden)",
        ] {
            assert!(all.lines().any(|l| l == line), "{line:?} missing:\n{all}");
        }
    }
}
