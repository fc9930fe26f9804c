//! `strata explain`: one path of an image or container in plain words, on one screen: the layer
//! it is shown from (label, diff_id, the history line that made it), every lower version it
//! shadows, the whiteout or opaque directory that hides it if it is gone, and for a container
//! whether it was copied up and why.

use std::fmt::Write;
use std::path::Path;

use super::{Style, layer_words, node_words, shorten};
use crate::explain::Result;
use crate::explain::copyup::{self, Origin};
use crate::explain::find::{Cover, Finding};
use crate::explain::merge::{Entry, Gone, Hidden, Version, View};
use crate::explain::stack::{Kind, LayerId, Stack};

/// What `explain` needs: the stack, its view, and for a container the view of its image.
pub struct Explainer<'s, 'a> {
    /// The layers.
    pub stack: &'a Stack,
    /// The merged view of all layers.
    pub view: &'s View<'a>,
    /// The view without the container's upper layer (containers only).
    pub image: Option<&'s View<'a>>,
    /// Colours.
    pub style: Style,
}

impl<'a> Explainer<'_, 'a> {
    /// Explains `asked` (resolved first: `..`, and symlinked directories followed as a process
    /// inside would); None when no layer has it.
    pub fn explain(&self, asked: &Path, heading: &str) -> Result<Option<String>> {
        let resolved = self.view.resolve(asked);
        let path = resolved.path.as_path();
        let shown = Path::new("/").join(path).to_string_lossy().into_owned();
        let mut out = String::new();
        if resolved.links.is_empty() {
            let _ = writeln!(out, "{} in {heading}", self.style.bold(&shown));
        } else {
            let asked = Path::new("/").join(asked);
            let _ = writeln!(out, "{} in {heading}", self.style.bold(&asked.to_string_lossy()));
            let via: Vec<String> = resolved
                .links
                .iter()
                .map(|(at, target)| format!("{} is a symlink to {}", at.display(), target.to_string_lossy()))
                .collect();
            let _ = writeln!(out, "It is {}: {}.", self.style.bold(&shown), via.join(", then "));
        }
        match self.view.find(path) {
            Finding::Shown(e) => self.shown(&mut out, path, e)?,
            Finding::Deleted(g) => self.deleted(&mut out, g),
            Finding::Hidden { at, cover, inner } => {
                out.push_str("Not seen: ");
                self.hidden(&mut out, &at, cover, &inner);
            }
            Finding::Absent => return Ok(None),
        }
        Ok(Some(out))
    }

    fn layer(&self, id: LayerId) -> String {
        self.style.layer(self.stack, id, &layer_words(self.stack, id))
    }

    /// The diff_id and history lines of a layer.
    fn layer_details(&self, out: &mut String, id: LayerId) {
        let info = &self.stack.layer(id).info;
        if let Some(d) = &info.diff_id {
            let _ = writeln!(out, "  diff_id  {d}");
        }
        if let Some(by) = &info.created_by {
            let _ = writeln!(out, "  made by  {}", shorten(by, 100));
        }
    }

    fn shown(&self, out: &mut String, path: &Path, e: &Entry<'a>) -> Result<()> {
        let v = e.shown();
        let info = &self.stack.layer(v.layer).info;
        let of = self.stack.layers.iter().filter(|l| !l.info.is_upper()).count();
        let place = match &info.diff_id {
            Some(d) => format!("layer {} of {of} ({})", info.label, d.short()),
            None => info.name(),
        };
        let _ = writeln!(out, "Shown from {}: {}.", self.style.layer(self.stack, v.layer, &place), node_words(v.node));
        self.layer_details(out, v.layer);
        if e.versions.len() > 1 {
            let labels: Vec<String> = e.versions.iter().map(|v| self.label(v.layer)).collect();
            let _ = writeln!(
                out,
                "A merged directory: its entries come from layers {} (top first); on the same name the higher layer wins.",
                labels.join(", ")
            );
        }
        let history = e.history();
        if !history.is_empty() {
            out.push_str("It shadows, top down:\n");
            for h in &history {
                let (id, words) = match h {
                    Hidden::Entry(old) => (old.shown().layer, node_words(old.shown().node)),
                    Hidden::Whiteout(g) => (g.whiteout.layer, node_words(g.whiteout.node)),
                };
                let _ = writeln!(out, "  {}: {words}", self.layer(id));
            }
        }
        if let Some(why) = self.why_shown(e, history.first()) {
            let _ = writeln!(out, "Why: {why}");
        }
        self.container_words(out, path, v)
    }

    fn label(&self, id: LayerId) -> String {
        self.stack.layer(id).info.label.clone()
    }

    /// Why the entry is what is seen, from what it replaced.
    fn why_shown(&self, e: &Entry<'a>, first: Option<&Hidden<'_, 'a>>) -> Option<String> {
        let top = self.label(e.shown().layer);
        let lowest = e.versions.last().unwrap_or(e.shown());
        let old = match first? {
            Hidden::Whiteout(g) => {
                let wl = self.label(g.whiteout.layer);
                return Some(format!(
                    "layer {wl} deleted the name with a whiteout and layer {top} created it again; \
                     a whiteout hides only what lies below it."
                ));
            }
            Hidden::Entry(old) => old.shown(),
        };
        let (ol, oword) = (self.label(old.layer), old.node.type_word());
        Some(match (e.is_dir(), old.node.dir().is_some()) {
            (false, false) => format!(
                "the top-most layer that has the name decides: {} over layer {ol}.",
                self.stack.layer(e.shown().layer).info.name()
            ),
            (false, true) => format!(
                "layer {top} put a {} where layer {ol} had a directory; a non-directory ends the merge, \
                 so nothing of that directory is seen.",
                e.shown().node.type_word()
            ),
            (true, false) => format!(
                "layer {} made a directory where layer {ol} had a {oword}; nothing of layer {ol} is merged into it.",
                self.label(lowest.layer)
            ),
            (true, true) => format!(
                "the directory is opaque in layer {}: nothing of the layers below it is merged in.",
                self.label(lowest.layer)
            ),
        })
    }

    /// For a container: whether the entry was copied up, and why.
    fn container_words(&self, out: &mut String, path: &Path, v: &Version<'a>) -> Result<()> {
        let (Some(image), Some(upper)) = (self.image, self.stack.upper()) else { return Ok(()) };
        if v.layer != upper {
            let _ = writeln!(
                out,
                "Container: not changed; it is read from layer {}. The first write to it will copy it up \
                 into the container's upper layer.",
                self.label(v.layer)
            );
            return Ok(());
        }
        let words = match copyup::origin(self.stack, image, path, v)? {
            Origin::New => "new: the container created it; the image has nothing at this path.".to_string(),
            Origin::Renamed { from } => format!(
                "renamed from /{} in the container: its overlay.redirect sends the layers below to the old path.",
                from.display()
            ),
            Origin::Replaced { from } => format!(
                "the container replaced the {} of layer {} with a {}.",
                from.node.type_word(),
                self.label(from.layer),
                v.node.type_word()
            ),
            Origin::CopiedUp { from, data_changed, meta } => {
                copied_up_words(&self.label(from.layer), data_changed, &meta, v)
            }
        };
        let _ = writeln!(out, "Container: {words}");
        Ok(())
    }

    fn deleted(&self, out: &mut String, g: &Gone<'a>) {
        let w = &g.whiteout;
        let who = if self.stack.layer(w.layer).info.is_upper() { "in the container, " } else { "" };
        let form = match &w.node.kind {
            Kind::Whiteout(f) => f.describe(),
            _ => "a whiteout",
        };
        let _ = writeln!(out, "Not seen: deleted {who}by a whiteout in {}, written as {form}.", self.layer(w.layer));
        self.layer_details(out, w.layer);
        match &g.hid {
            Some(e) => {
                out.push_str("It hides, top down:\n");
                let mut items = vec![Hidden::Entry(e)];
                items.extend(e.history());
                for h in items {
                    if let Hidden::Entry(old) = h {
                        let v = old.shown();
                        let _ = writeln!(out, "  {}: {}", self.layer(v.layer), node_words(v.node));
                    }
                }
            }
            None => out.push_str("Nothing below it has the name.\n"),
        }
    }

    /// "X was deleted by ... / is a file in layer N ...", then what lies below.
    fn hidden(&self, out: &mut String, at: &Path, cover: Cover<'_, 'a>, inner: &Finding<'_, 'a>) {
        let at = Path::new("/").join(at);
        let at = at.display();
        match cover {
            Cover::Deleted(g) => {
                let _ = writeln!(
                    out,
                    "{at} was deleted by a whiteout in {}, which hides everything under it.",
                    self.layer(g.whiteout.layer)
                );
            }
            Cover::Replaced(e) if !e.is_dir() => {
                let v = e.shown();
                let _ = writeln!(
                    out,
                    "{at} is {} in {}; a non-directory ends the directory below it, so nothing inside is seen.",
                    node_words(v.node),
                    self.layer(v.layer)
                );
            }
            Cover::Replaced(e) => {
                let lowest = e.versions.last().unwrap_or(e.shown());
                let why = if lowest.node.dir().is_some_and(|d| d.opaque) { "is opaque" } else { "starts anew" };
                let _ = writeln!(
                    out,
                    "{at} {why} in {}: entries of the layers below it are hidden.",
                    self.layer(lowest.layer)
                );
            }
        }
        match inner {
            Finding::Shown(e) => {
                let v = e.shown();
                let _ = writeln!(out, "Below that, {} has it: {}.", self.layer(v.layer), node_words(v.node));
            }
            Finding::Deleted(g) => {
                let _ = writeln!(out, "Below that, it was deleted by a whiteout in {}.", self.layer(g.whiteout.layer));
            }
            Finding::Hidden { at, cover, inner } => {
                out.push_str("Below that, ");
                self.hidden(out, at, *cover, inner);
            }
            Finding::Absent => {}
        }
    }
}

/// "copied up from layer N ..." in words.
fn copied_up_words(from: &str, data_changed: bool, meta: &[String], v: &Version<'_>) -> String {
    let first = format!("copied up from layer {from} on its first change");
    if data_changed {
        return format!("{first}; its data differs from layer {from}'s (written in the container).");
    }
    let meta: Vec<&String> = meta.iter().filter(|m| !m.starts_with("modification")).collect();
    if !meta.is_empty() {
        let list: Vec<&str> = meta.iter().map(|s| s.as_str()).collect();
        return format!("{first}: a metadata change only ({}); the data is the same.", list.join(", "));
    }
    if v.node.dir().is_some() {
        return format!("{first}: a directory is copied up when something inside it changes.");
    }
    format!("{first}, with the same data and metadata (opened for writing, or its times changed).")
}
