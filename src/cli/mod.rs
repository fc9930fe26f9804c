//! The `strata` command line: one file per verb; clap structs' doc comments are the help text.

pub mod mount;
pub mod options;
mod umount;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strata: a union filesystem in userspace, with kernel-overlayfs semantics.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a union of lower dirs and an upper dir (fuse-overlayfs compatible options).
    Mount(mount::MountArgs),
    /// Unmount a Strata mount.
    #[command(alias = "unmount")]
    Umount(umount::UmountArgs),
}

/// Runs the command line of this process.
pub fn run() -> anyhow::Result<ExitCode> {
    let args = normalize_args(std::env::args_os().collect());
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => umount::run(a),
    }
}

/// Accepts the other ways Strata is started:
/// - as `mount.fuse.strata SOURCE MNT -o OPTS` (by `mount -t fuse.strata`);
/// - as a fuse-overlayfs stand-in, `strata -o lowerdir=... MNT` (podman's `mount_program`).
fn normalize_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let argv0 = args.first().cloned().unwrap_or_default();
    let base = std::path::Path::new(&argv0).file_name().unwrap_or_default().to_string_lossy().into_owned();
    if base.starts_with("mount.fuse") || base.starts_with("mount.strata") {
        // mount(8) passes: SOURCE MOUNTPOINT [-o OPTS] [-n] [-s] [-f] [-v]
        let mut out = vec![OsString::from("strata"), OsString::from("mount")];
        let mut positional = Vec::new();
        let mut it = args.into_iter().skip(1);
        while let Some(a) = it.next() {
            match a.to_str() {
                Some("-o") => {
                    out.push(a);
                    out.extend(it.next());
                }
                Some("-n") | Some("-s") | Some("-v") | Some("-f") => {}
                _ => positional.push(a),
            }
        }
        // The source ("none", or the layers' name) is not needed: the layers come in -o.
        out.extend(positional.into_iter().skip(1));
        return out;
    }
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    if first.starts_with("-o") || (first.starts_with('-') && !first.starts_with("--") && first != "-h" && first != "-V")
    {
        args.insert(1, OsString::from("mount"));
    }
    args
}

/// An error chain as one line: "context: cause: cause".
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for cause in e.chain() {
        let s = cause.to_string();
        if !parts.iter().any(|p| p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ")
}

/// A minimal logger to stderr for foreground mounts.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::max_level()
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) && (r.target().starts_with("strata") || r.level() <= log::Level::Warn) {
            eprintln!("strata[{}]: {}", r.level().as_str().to_lowercase(), r.args());
        }
    }
    fn flush(&self) {}
}

/// Sends log records at `level` and above to stderr.
pub fn init_logging(level: log::LevelFilter) {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn fuse_overlayfs_form_becomes_mount() {
        assert_eq!(
            normalize_args(v(&["strata", "-o", "lowerdir=a", "m"])),
            v(&["strata", "mount", "-o", "lowerdir=a", "m"])
        );
        assert_eq!(normalize_args(v(&["strata", "mount", "m"])), v(&["strata", "mount", "m"]));
    }

    #[test]
    fn mount_helper_form_becomes_mount() {
        assert_eq!(
            normalize_args(v(&["/sbin/mount.fuse.strata", "none", "/mnt", "-o", "rw,lowerdir=a"])),
            v(&["strata", "mount", "-o", "rw,lowerdir=a", "/mnt"])
        );
    }
}
