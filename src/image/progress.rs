//! Per-layer progress lines, the way `docker pull` shows them (`a3ed95caeb02: Pull complete`).
//!
//! On a terminal each layer gets a live line with the bytes read; with `--progress plain` only
//! the final line of each layer is printed; when stdout is not a terminal nothing is (by
//! default). No thread is started: the line is redrawn as bytes arrive.

use std::io::{self, IsTerminal, Read};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

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
}

impl Progress {
    /// Resolves `mode` against whether stdout is a terminal.
    pub fn new(mode: ProgressMode) -> Progress {
        let tty = io::stdout().is_terminal();
        match mode {
            ProgressMode::Auto => Progress { tty, plain: false },
            ProgressMode::Plain => Progress { tty: false, plain: true },
            ProgressMode::Quiet => Progress { tty: false, plain: false },
        }
    }

    /// Starts the line of one layer (`id`: its short digest), `total` bytes expected (0: unknown).
    pub fn layer(&self, id: &str, total: u64) -> LayerProgress {
        let bar = self.tty.then(|| {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stdout());
            let template =
                if total > 0 { "{prefix}: {msg} [{bar:30}] {bytes}/{total_bytes}" } else { "{prefix}: {msg} {bytes}" };
            if let Ok(style) = ProgressStyle::with_template(template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_prefix(id.to_string());
            bar.set_message("Extracting");
            bar
        });
        LayerProgress { bar, plain: self.plain, id: id.to_string() }
    }
}

/// The progress line of one layer.
pub struct LayerProgress {
    bar: Option<ProgressBar>,
    plain: bool,
    id: String,
}

impl LayerProgress {
    /// Counts bytes read.
    pub fn inc(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    /// Ends the line with a status (`Pull complete`, `Already exists`).
    pub fn done(&self, status: &str) {
        if let Some(bar) = &self.bar {
            if let Ok(style) = ProgressStyle::with_template("{prefix}: {msg}") {
                bar.set_style(style);
            }
            bar.finish_with_message(status.to_string());
        } else if self.plain {
            println!("{}: {status}", self.id);
        }
    }

    /// Ends the line after a failure (the error itself is printed once, by the caller).
    pub fn failed(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon_with_message("Failed");
        }
    }
}

/// A reader that reports the bytes read through it to a layer's progress line.
pub struct ProgressReader<'p, R> {
    inner: R,
    progress: &'p LayerProgress,
}

impl<'p, R: Read> ProgressReader<'p, R> {
    /// Wraps `inner`.
    pub fn new(inner: R, progress: &'p LayerProgress) -> Self {
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
