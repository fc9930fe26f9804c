//! `strata mount`: mount a union of layers, in the background once it is ready.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use fuser::Session;

use crate::fs::fuse::StrataFuse;
use crate::fs::options::{MountSpec, split_layers, split_options};
use crate::fs::session::prepare;
use crate::sys::daemon::{self, Forked};

/// Arguments of `strata mount`.
#[derive(clap::Args, Debug)]
pub struct MountArgs {
    /// Lower dirs, top first, separated by ':' ('\:' escapes a colon).
    #[arg(long, value_name = "DIR[:DIR...]")]
    lower: Option<String>,
    /// The writable upper dir (none: a read-only mount).
    #[arg(long, value_name = "DIR")]
    upper: Option<PathBuf>,
    /// The work dir: on the same filesystem as the upper dir, not inside it.
    #[arg(long, value_name = "DIR")]
    work: Option<PathBuf>,
    /// Mount options, comma-separated: lowerdir=,upperdir=,workdir=,userxattr,volatile,ro,suid,dev,timeout=,...
    #[arg(short = 'o', value_name = "OPTS", action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Stay in the foreground and log to stderr.
    #[arg(short = 'f', long)]
    foreground: bool,
    /// Debug logging (implies -f; also `-o debug`).
    #[arg(short = 'd', long)]
    debug: bool,
    /// Serve with one thread (as fuse-overlayfs' `-s`).
    #[arg(short = 's')]
    single_thread: bool,
    /// Print one line per copy-up, whiteout and opaque directory as they happen (implies -f).
    #[arg(long)]
    trace: bool,
    /// Worker threads serving the mount.
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Where to mount.
    mountpoint: PathBuf,
}

impl MountArgs {
    fn spec(&self) -> anyhow::Result<MountSpec> {
        let mut spec = MountSpec::default();
        for o in &self.options {
            for opt in split_options(o) {
                spec.apply(&opt)?;
            }
        }
        if let Some(l) = &self.lower {
            spec.stack.lowers = split_layers(l);
        }
        if let Some(u) = &self.upper {
            spec.stack.upper = Some(u.clone());
        }
        if let Some(w) = &self.work {
            spec.stack.work = Some(w.clone());
        }
        if let Some(t) = self.threads {
            spec.threads = Some(t.max(1));
        }
        if self.single_thread {
            spec.threads = Some(1);
        }
        spec.debug |= self.debug;
        if spec.read_only {
            spec.stack.upper = None;
            spec.stack.work = None;
        }
        Ok(spec)
    }
}

/// Mounts; returns once the mount is ready (or, in the foreground, once it is unmounted).
pub fn run(a: MountArgs) -> anyhow::Result<ExitCode> {
    let spec = a.spec()?;
    let mode = if a.foreground || spec.debug || a.trace {
        RunMode::Foreground { debug: spec.debug, trace: a.trace }
    } else {
        RunMode::Background
    };
    mount_spec(&spec, &a.mountpoint, mode)
}

/// How a mount process runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunMode {
    /// Fork; the command returns once the mount is ready, the daemon serves it.
    Background,
    /// Serve in this process, logging to stderr, until unmounted.
    Foreground {
        /// Debug logging.
        debug: bool,
        /// One line per copy-up, whiteout and opaque directory.
        trace: bool,
    },
}

/// Mounts `spec` on `mnt` (used by `strata mount` and by the image tool's `mount IMAGE`).
pub fn mount_spec(spec: &MountSpec, mnt: &Path, mode: RunMode) -> anyhow::Result<ExitCode> {
    match mode {
        RunMode::Foreground { debug, trace } => {
            super::init_logging(if debug { log::LevelFilter::Debug } else { log::LevelFilter::Info });
            let signals = catch_signals()?;
            let session = prepare(spec, mnt, trace)?;
            log::info!("mounted {}", mnt.display());
            log::info!("transport: {}", session.transport());
            serve(session, signals)?;
            Ok(ExitCode::SUCCESS)
        }
        RunMode::Background => {
            super::init_logging(log::LevelFilter::Warn);
            match daemon::fork_with_report().context("forking the mount daemon")? {
                Forked::Parent(report) => match daemon::wait_report(report) {
                    Ok(()) => Ok(ExitCode::SUCCESS),
                    Err(msg) => Err(anyhow::anyhow!(msg)),
                },
                Forked::Child(ready) => match catch_signals().and_then(|sig| Ok((sig, prepare(spec, mnt, false)?))) {
                    Ok((signals, session)) => {
                        ready.ok();
                        let _ = serve(session, signals);
                        std::process::exit(0);
                    }
                    Err(e) => {
                        ready.fail(&super::one_line(&e));
                        std::process::exit(1);
                    }
                },
            }
        }
    }
}

/// Serves requests until the mount goes (umount, or SIGTERM/SIGINT/SIGHUP, which unmount).
/// Catches SIGTERM, SIGINT and SIGHUP; taken before mounting, so that no signal can end the
/// daemon between the mount appearing and the handler being in place.
fn catch_signals() -> anyhow::Result<signal_hook::iterator::Signals> {
    signal_hook::iterator::Signals::new([libc::SIGTERM, libc::SIGINT, libc::SIGHUP])
        .context("installing signal handlers")
}

fn serve(mut session: Session<StrataFuse>, mut signals: signal_hook::iterator::Signals) -> anyhow::Result<()> {
    let mut unmounter = session.unmount_callable();
    std::thread::Builder::new()
        .name("strata-signals".into())
        .spawn(move || {
            if signals.forever().next().is_some()
                && let Err(e) = unmounter.unmount()
            {
                log::warn!("unmounting on signal: {e}");
            }
        })
        .context("starting the signal thread")?;
    session.run().context("serving the mount")
}
