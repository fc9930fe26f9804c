//! Turning the analysis into words and pictures.
//!
//! - [`text`]: `strata explain`: one path, in plain words.
//! - [`layers`]: `strata layers`: one row per layer, the efficiency line, a layer's changes.
//! - [`tree`]: `strata tree`: the merged tree annotated by layer.
//! - [`svg`]: the stack drawn as bands (SVG, or HTML around it).
//!
//! Colour is used only on a terminal and never when `NO_COLOR` is set.

pub mod layers;
pub mod svg;
pub mod text;
pub mod tree;

use super::stack::{Kind, LayerId, Node, Stack};

/// How text is styled.
#[derive(Clone, Copy, Debug, Default)]
pub struct Style {
    /// Emit ANSI colours.
    pub color: bool,
}

/// Colours of layers on a terminal (ANSI), bottom layer first, repeating.
const ANSI: [&str; 6] = ["34", "32", "33", "35", "36", "94"];

impl Style {
    /// Colour when standard output is a terminal and `NO_COLOR` is unset or empty.
    pub fn for_stdout() -> Style {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Style { color: !no_color && rustix::termios::isatty(rustix::stdio::stdout()) }
    }

    fn paint(&self, code: &str, s: &str) -> String {
        if self.color { format!("\x1b[{code}m{s}\x1b[0m") } else { s.to_string() }
    }

    /// `s` in the colour of layer `id` (the upper layer is bold red).
    pub fn layer(&self, stack: &Stack, id: LayerId, s: &str) -> String {
        if stack.layer(id).info.is_upper() {
            return self.paint("1;31", s);
        }
        self.paint(ANSI[id % ANSI.len()], s)
    }

    /// Something that is not seen: dim and struck through.
    pub fn hidden(&self, s: &str) -> String {
        self.paint("2;9", s)
    }

    /// A whiteout.
    pub fn whiteout(&self, s: &str) -> String {
        self.paint("31", s)
    }

    /// Emphasis.
    pub fn bold(&self, s: &str) -> String {
        self.paint("1", s)
    }
}

/// A node in a few words: "a file of 7 bytes, mode 0644", "a symlink to keep.txt", ...
pub fn node_words(node: &Node) -> String {
    match &node.kind {
        Kind::Dir(d) if d.opaque => format!("an opaque directory, mode {:04o}", node.mode),
        Kind::Dir(_) => format!("a directory, mode {:04o}", node.mode),
        Kind::File => format!("a file of {} bytes, mode {:04o}", node.size, node.mode),
        Kind::Symlink(t) => format!("a symlink to {}", t.to_string_lossy()),
        Kind::Fifo => format!("a FIFO, mode {:04o}", node.mode),
        Kind::Socket => "a socket".into(),
        Kind::CharDev(r) | Kind::BlockDev(r) => {
            let major = rustix::fs::major(*r);
            format!("{} {major}:{}", node.type_word(), rustix::fs::minor(*r))
        }
        Kind::Whiteout(form) => format!("a whiteout ({})", form.describe()),
    }
}

/// What `ls -F` appends to a name: `/` for a directory, ` -> target` for a symlink, `|` for a FIFO.
pub fn name_suffix(node: &Node) -> String {
    match &node.kind {
        Kind::Dir(_) => "/".into(),
        Kind::Symlink(t) => format!(" -> {}", t.to_string_lossy()),
        Kind::Fifo => "|".into(),
        Kind::Socket => "=".into(),
        _ => String::new(),
    }
}

/// A layer in a few words: "layer 5 (04fec36bdd4a)" or "the container's upper layer".
pub fn layer_words(stack: &Stack, id: LayerId) -> String {
    let info = &stack.layer(id).info;
    match &info.diff_id {
        Some(d) => format!("layer {} ({})", info.label, d.short()),
        None => info.name(),
    }
}

/// A history line cut to `max` characters.
pub fn shorten(s: &str, max: usize) -> String {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    if s.chars().count() <= max {
        return s;
    }
    s.chars().take(max.saturating_sub(1)).collect::<String>() + "…"
}
