//! Per-layer progress lines, the way `docker pull` shows them (`a3ed95caeb02: Pull complete`).
//!
//! On a terminal each layer gets a live line (`\r`-redrawn) with the bytes read; with
//! `--progress plain` only the final line of each layer is printed; when stdout is not a
//! terminal nothing is (by default). No thread is started: the line is redrawn as bytes arrive.

use std::cell::Cell;
use std::io::{self, IsTerminal, Read, Write};
use std::time::{Duration, Instant};

/// How progress is shown, as asked on the command line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// Live lines on a terminal, nothing otherwise.
    #[default]
    Auto,
    /// One final line per layer, terminal or not.
    Plain,
    /// Nothing.
    Quiet,
}

/// Progress reporting for one command.
#[derive(Clone, Copy, Debug)]
pub struct Progress {
    tty: bool,
    plain: bool,
    stderr: bool,
}

/// Redraw a live line at most once per this many bytes, and per this long.
const REDRAW_EVERY: u64 = 256 << 10;
const REDRAW_PAUSE: Duration = Duration::from_millis(100);

impl Progress {
    /// Resolves `mode` against whether stdout is a terminal.
    pub fn new(mode: ProgressMode) -> Progress {
        Progress::resolve(mode, io::stdout().is_terminal(), false)
    }

    /// Like [`Progress::new`], on standard error (for commands whose output is a result, such
    /// as the image id `commit` prints).
    pub fn on_stderr(mode: ProgressMode) -> Progress {
        Progress::resolve(mode, io::stderr().is_terminal(), true)
    }

    fn resolve(mode: ProgressMode, tty: bool, stderr: bool) -> Progress {
        match mode {
            ProgressMode::Auto => Progress { tty, plain: false, stderr },
            ProgressMode::Plain => Progress { tty: false, plain: true, stderr },
            ProgressMode::Quiet => Progress { tty: false, plain: false, stderr },
        }
    }

    /// Starts the line of one layer (`id`: its short digest), `total` bytes expected (0: unknown).
    pub fn layer(&self, id: &str, total: u64) -> LayerProgress {
        self.task(id, total, "Extracting")
    }

    /// Starts a progress line for `id` doing `verb` (`Committing`, `Copying`) over `total` bytes.
    pub fn task(&self, id: &str, total: u64, verb: &'static str) -> LayerProgress {
        let p = LayerProgress {
            tty: self.tty,
            plain: self.plain,
            stderr: self.stderr,
            verb,
            id: id.to_string(),
            total,
            read: Cell::new(0),
            drawn: Cell::new(Instant::now()),
        };
        p.draw(verb);
        p
    }
}

/// The progress line of one layer.
pub struct LayerProgress {
    tty: bool,
    plain: bool,
    stderr: bool,
    verb: &'static str,
    id: String,
    total: u64,
    read: Cell<u64>,
    /// When the live line was last drawn.
    drawn: Cell<Instant>,
}

/// Something that counts the bytes of a layer as they pass.
pub trait Ticker {
    /// `n` more bytes passed.
    fn inc(&self, n: u64);

    /// The layer's bytes have all passed and it is being finished (synced and put in place).
    fn finishing(&self) {}
}

impl Ticker for LayerProgress {
    fn inc(&self, n: u64) {
        LayerProgress::inc(self, n);
    }
}

impl LayerProgress {
    /// Counts bytes read.
    pub fn inc(&self, n: u64) {
        let before = self.read.get();
        self.read.set(before + n);
        if self.tty
            && before / REDRAW_EVERY != (before + n) / REDRAW_EVERY
            && self.drawn.get().elapsed() >= REDRAW_PAUSE
        {
            self.draw(self.verb);
            self.drawn.set(Instant::now());
        }
    }

    fn draw(&self, status: &str) {
        if !self.tty {
            return;
        }
        let read = human_size(self.read.get());
        let of = if self.total > 0 { format!("/{}", human_size(self.total)) } else { String::new() };
        self.write(&format!("\r\x1b[2K{}: {status} {read}{of}", self.id));
    }

    fn write(&self, text: &str) {
        if self.stderr {
            let mut out = io::stderr().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        } else {
            let mut out = io::stdout().lock();
            let _ = out.write_all(text.as_bytes());
            let _ = out.flush();
        }
    }

    /// Ends the line with a status (`Pull complete`, `Already exists`).
    pub fn done(&self, status: &str) {
        if self.tty {
            self.write("\r\x1b[2K");
        }
        if self.tty || self.plain {
            self.write(&format!("{}: {status}\n", self.id));
        }
    }

    /// Ends the line after a failure (the error itself is printed once, by the caller).
    pub fn failed(&self) {
        if self.tty {
            self.write(&format!("\r\x1b[2K{}: Failed\n", self.id));
        }
    }
}

/// A size in decimal units with up to four significant digits, as docker prints it (`1.982MB`).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "kB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1000.0 && unit < UNITS.len() - 1 {
        v /= 1000.0;
        unit += 1;
    }
    let int_digits = if v < 1.0 { 1 } else { (v.log10().floor() as usize) + 1 };
    let s = format!("{:.*}", 4usize.saturating_sub(int_digits), v);
    let s = if s.contains('.') { s.trim_end_matches('0').trim_end_matches('.').to_string() } else { s };
    format!("{s}{}", UNITS[unit])
}

/// A reader that reports the bytes read through it to a layer's progress line.
pub struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p dyn Ticker,
}

impl<'p, R: Read> ProgressReader<'p, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: &'p dyn Ticker) -> Self {
        ProgressReader { inner, progress }
    }
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.progress.inc(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_docker() {
        assert_eq!(human_size(0), "0B");
        assert_eq!(human_size(999), "999B");
        assert_eq!(human_size(1_982_256), "1.982MB");
        assert_eq!(human_size(4_260_000), "4.26MB");
        assert_eq!(human_size(1_000_000_000), "1GB");
    }
}
