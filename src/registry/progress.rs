//! Progress of a pull or push as docker prints it: one line per layer, redrawn in place on a
//! terminal while several layers move at once (`a3ed95caeb02: Downloading [==>   ] 1.2MB/4.5MB`),
//! then their final states (`Pull complete`, `Already exists`, `Pushed`, `Mounted from x/y`).
//!
//! With `--progress plain` only each layer's final line is printed; when the output is not a
//! terminal nothing is (by default), so stdout holds only the result a script wants.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::image::progress::{ProgressMode, Ticker, human_size};

/// Width of the bar between the brackets, as docker draws it.
const BAR: usize = 50;
/// Redraw a moving line at most this often.
const REDRAW_PAUSE: Duration = Duration::from_millis(100);

/// The lines of one pull or push, shared by the threads moving layers.
pub struct Board {
    tty: bool,
    plain: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// (id, text) of each line on screen, top first.
    lines: Vec<(String, String)>,
}

impl Board {
    /// A board for `mode` on stdout.
    pub fn new(mode: ProgressMode) -> Board {
        let tty = io::stdout().is_terminal();
        Board {
            tty: tty && mode == ProgressMode::Auto,
            plain: mode == ProgressMode::Plain,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether anything is shown.
    pub fn shown(&self) -> bool {
        self.tty || self.plain
    }

    /// A line that is not a layer's (`latest: Pulling from library/busybox`, `Digest: …`): on a
    /// terminal and with `--progress plain`.
    pub fn say(&self, text: &str) {
        if !self.shown() {
            return;
        }
        let _state = self.state.lock();
        let mut out = io::stdout().lock();
        let _ = writeln!(out, "{text}");
        let _ = out.flush();
    }

    /// Sets the state of the line `id` (a new line at the bottom if it has none yet).
    pub fn set(&self, id: &str, text: &str) {
        if self.tty {
            self.draw(id, text);
        }
    }

    /// The final state of the line `id`: printed in plain mode too.
    pub fn done(&self, id: &str, text: &str) {
        if self.tty {
            self.draw(id, text);
        } else if self.plain {
            let _state = self.state.lock();
            let mut out = io::stdout().lock();
            let _ = writeln!(out, "{id}: {text}");
            let _ = out.flush();
        }
    }

    fn draw(&self, id: &str, text: &str) {
        let mut state = self.state.lock();
        let mut out = io::stdout().lock();
        let line = format!("{id}: {text}");
        match state.lines.iter().position(|(i, _)| i == id) {
            Some(pos) => {
                let up = state.lines.len() - pos;
                let _ = write!(out, "\x1b[{up}A\r\x1b[2K{line}\r\x1b[{up}B");
                state.lines[pos].1 = text.to_string();
            }
            None => {
                let _ = writeln!(out, "{line}");
                state.lines.push((id.to_string(), text.to_string()));
            }
        }
        let _ = out.flush();
    }

    /// A byte counter for the line `id` that redraws it as `verb [===>   ] done/total`.
    pub fn bytes<'b>(&'b self, id: &str, verb: &'static str, total: u64) -> Bytes<'b> {
        Bytes {
            board: self,
            id: id.to_string(),
            verb,
            total,
            done: AtomicU64::new(0),
            drawn: Mutex::new(Instant::now() - REDRAW_PAUSE),
        }
    }
}

/// Bytes moved for one line of a [`Board`].
pub struct Bytes<'b> {
    board: &'b Board,
    id: String,
    verb: &'static str,
    total: u64,
    done: AtomicU64,
    drawn: Mutex<Instant>,
}

impl Bytes<'_> {
    /// Starts counting from `n` (a resumed download).
    pub fn start_at(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
        self.redraw(true);
    }

    fn redraw(&self, force: bool) {
        if !self.board.tty {
            return;
        }
        let mut drawn = self.drawn.lock();
        if !force && drawn.elapsed() < REDRAW_PAUSE {
            return;
        }
        *drawn = Instant::now();
        let done = self.done.load(Ordering::Relaxed);
        self.board.set(&self.id, &format!("{} {}", self.verb, bar(done, self.total)));
    }
}

impl Ticker for Bytes<'_> {
    fn inc(&self, n: u64) {
        let before = self.done.fetch_add(n, Ordering::Relaxed);
        if self.total > 0 && before < self.total && before + n >= self.total && self.verb == "Downloading" {
            // The last byte is in: the digest and size are checked next.
            self.board.set(&self.id, "Verifying Checksum");
        } else {
            self.redraw(false);
        }
    }

    fn finishing(&self) {
        // Decompressed and unpacked as it came: what is left is syncing it and putting it in place.
        if self.verb == "Downloading" {
            self.board.set(&self.id, "Download complete");
            self.board.set(&self.id, "Extracting");
        }
    }
}

/// `[=====>      ]  1.2MB/4.5MB` (no bar when the total is unknown).
pub fn bar(done: u64, total: u64) -> String {
    if total == 0 {
        return human_size(done);
    }
    let filled = ((done.min(total) as u128 * BAR as u128) / total as u128) as usize;
    let mut s = String::with_capacity(BAR + 24);
    s.push('[');
    s.extend(std::iter::repeat_n('=', filled.saturating_sub(1)));
    if filled > 0 {
        s.push(if filled == BAR { '=' } else { '>' });
    }
    s.extend(std::iter::repeat_n(' ', BAR - filled));
    s.push_str("] ");
    s.push_str(&format!("{:>8}/{}", human_size(done), human_size(total)));
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bars_look_like_dockers() {
        // docker: "[" bar "] " then the done size right-aligned in 8 columns.
        assert_eq!(bar(0, 100), format!("[{}]       0B/100B", " ".repeat(50)));
        assert_eq!(bar(50, 100), format!("[{}>{}]      50B/100B", "=".repeat(24), " ".repeat(25)));
        assert_eq!(bar(100, 100), format!("[{}]     100B/100B", "=".repeat(50)));
        assert_eq!(bar(1_500_000, 0), "1.5MB");
    }
}
