//! The `strata` command line: one file per verb; clap structs' doc comments are the help text.

mod bench;
mod build;
mod check;
mod commit;
mod container_ref;
mod container_verbs;
mod convert;
mod diff;
mod exec;
mod explain;
mod history;
mod image_mount;
mod images;
mod import;
mod inspect;
mod layers;
mod load;
mod login;
pub mod mount;
mod prune;
mod ps;
mod pull;
mod push;
mod registry_args;
mod rmi;
mod run;
mod save;
mod store_root;
mod tag;
mod template;
mod tree;
mod umount;
mod volume;

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Strata: a union filesystem in userspace, with kernel-overlayfs semantics.
#[derive(Parser, Debug)]
#[command(name = "strata", version, about, long_about = None)]
struct Cli {
    /// The image store [default: /var/lib/strata as root, else $XDG_DATA_HOME/strata or ~/.local/share/strata]
    #[arg(long, global = true, env = "STRATA_ROOT", value_name = "DIR")]
    root: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Mount a union of lower dirs and an upper dir (fuse-overlayfs compatible options);
    /// `strata mount IMAGE MNT [-w]` mounts an image (as `strata image mount`).
    Mount(mount::MountArgs),
    /// Unmount a Strata mount.
    #[command(alias = "unmount")]
    Umount(umount::UmountArgs),
    /// Load images from a docker save / oci-archive tar or an OCI layout dir.
    Load(load::LoadArgs),
    /// Download an image from a registry.
    Pull(pull::PullArgs),
    /// Upload an image to a registry.
    Push(push::PushArgs),
    /// Log in to a registry (the credentials are checked, then saved).
    Login(login::LoginArgs),
    /// Log out from a registry.
    Logout(login::LogoutArgs),
    /// Make a one-layer image from a rootfs tarball.
    Import(import::ImportArgs),
    /// List images.
    Images(images::ImagesArgs),
    /// Show containers (state, config, mounts) or images (config, layers) as JSON.
    Inspect(inspect::InspectArgs),
    /// Show an image's build steps.
    History(history::HistoryArgs),
    /// Give an image another name.
    Tag(tag::TagArgs),
    /// Write an image's layers again as eStargz (lazily pullable, still plain gzip to others).
    Convert(convert::ConvertArgs),
    /// Remove images.
    Rmi(rmi::RmiArgs),
    /// Remove untagged images and everything no image uses.
    Prune(prune::PruneArgs),
    /// Mount and unmount images.
    #[command(subcommand)]
    Image(image_mount::ImageCommand),
    /// Say where a path of an image or container comes from, and what hides it if it is gone.
    Explain(explain::ExplainArgs),
    /// Show what each layer of an image or container changes, and how much it wastes.
    Layers(layers::LayersArgs),
    /// Show the merged tree of an image or container, each entry with its layer.
    Tree(tree::TreeArgs),
    /// Run a command in a new container.
    Run(run::RunArgs),
    /// List containers.
    Ps(ps::PsArgs),
    /// Run a command in a running container.
    Exec(exec::ExecArgs),
    /// Start stopped containers (in the background).
    Start(container_verbs::StartArgs),
    /// Stop running containers (SIGTERM, then SIGKILL).
    Stop(container_verbs::StopArgs),
    /// Remove containers.
    Rm(container_verbs::RmArgs),
    /// Show the output of a detached container.
    Logs(container_verbs::LogsArgs),
    /// List a running container's published ports.
    Port(container_verbs::PortArgs),
    /// Manage volumes: create, ls, inspect, rm, prune.
    #[command(subcommand)]
    Volume(volume::VolumeCommand),
    /// Build an image from a Dockerfile.
    Build(build::BuildArgs),
    /// Show what a container changed relative to its image (A, C, D per path).
    Diff(diff::DiffArgs),
    /// Check that the store is whole: blobs, images, unpacked layers (`--repair` removes what is broken).
    Check(check::CheckArgs),
    /// Make a new image from a container's changes.
    Commit(commit::CommitArgs),
    /// Write images to an archive or OCI layout (docker-archive, oci-archive, oci-dir).
    Save(save::SaveArgs),
    /// Measure: copy-up latency per file size and strategy on a filesystem.
    #[command(subcommand)]
    Bench(bench::BenchCommand),
}

/// Runs the command line of this process.
pub fn run() -> anyhow::Result<ExitCode> {
    let args = normalize_args(std::env::args_os().collect());
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => return Ok(usage_error(&e)),
    };
    let root = cli.root.unwrap_or_else(store_root::default_root);
    // Lazy layers fetch from registries; the filesystem asks through this.
    crate::fs::lazy::install(Box::new(crate::registry::lazy::factory));
    if !matches!(cli.command, Command::Mount(_) | Command::Umount(_) | Command::Image(_)) {
        init_logging(log::LevelFilter::Warn);
    }
    match cli.command {
        Command::Mount(a) => mount::run(a),
        Command::Umount(a) => umount::run(a),
        Command::Load(a) => load::run(a, &root),
        Command::Import(a) => import::run(a, &root),
        Command::Pull(a) => pull::run(a, &root),
        Command::Push(a) => push::run(a, &root),
        Command::Login(a) => login::login(a),
        Command::Logout(a) => login::logout(a),
        Command::Images(a) => images::run(a, &root),
        Command::Inspect(a) => inspect::run(a, &root),
        Command::History(a) => history::run(a, &root),
        Command::Tag(a) => tag::run(a, &root),
        Command::Convert(a) => convert::run(a, &root),
        Command::Rmi(a) => rmi::run(a, &root),
        Command::Prune(a) => prune::run(a, &root),
        Command::Image(c) => image_mount::run(c, &root),
        Command::Explain(a) => explain::run(a, &root),
        Command::Layers(a) => layers::run(a, &root),
        Command::Tree(a) => tree::run(a, &root),
        Command::Run(a) => run::run(a, &root),
        Command::Ps(a) => ps::run(a, &root),
        Command::Exec(a) => exec::run(a, &root),
        Command::Start(a) => container_verbs::start(a, &root),
        Command::Stop(a) => container_verbs::stop(a, &root),
        Command::Rm(a) => container_verbs::rm(a, &root),
        Command::Logs(a) => container_verbs::logs(a, &root),
        Command::Port(a) => container_verbs::port(a, &root),
        Command::Volume(c) => volume::run(c, &root),
        Command::Build(a) => build::run(a, &root),
        Command::Diff(a) => diff::run(a, &root),
        Command::Check(a) => check::run(a, &root),
        Command::Commit(a) => commit::run(a, &root),
        Command::Save(a) => save::run(a, &root),
        Command::Bench(c) => bench::run(c),
    }
}

/// Help and version go to stdout as clap writes them; a usage error is one line on stderr
/// (clap's message, its possible values and tips, without the usage block), exit status 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        e.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
    ) {
        let _ = e.print();
        return ExitCode::from(e.exit_code() as u8);
    }
    eprintln!("strata: {}", usage_line(&e.render().to_string()));
    ExitCode::from(2)
}

/// clap's rendered error as one line: the message and its details, no usage block.
fn usage_line(rendered: &str) -> String {
    let mut parts = Vec::new();
    let mut usage = false;
    for line in rendered.lines().map(str::trim) {
        if line.starts_with("Usage:") {
            usage = true;
        } else if line.is_empty() {
            usage = false;
        } else if !usage && !line.starts_with("For more information") {
            parts.push(line.strip_prefix("error: ").unwrap_or(line));
        }
    }
    parts.join(" ")
}

/// Accepts the other ways Strata is started:
/// - as `mount.fuse.strata SOURCE MNT -o OPTS` (by `mount -t fuse.strata`);
/// - as `strata SOURCE MNT -o OPTS` (by `mount -t fuse.strata` through fuse3's `mount.fuse`,
///   when no `mount.fuse.strata` exists and `strata` is on the PATH);
/// - as a fuse-overlayfs stand-in, `strata -o lowerdir=... MNT` (podman's `mount_program`).
fn normalize_args(mut args: Vec<OsString>) -> Vec<OsString> {
    let argv0 = args.first().cloned().unwrap_or_default();
    let base = std::path::Path::new(&argv0).file_name().unwrap_or_default().to_string_lossy().into_owned();
    if base.starts_with("mount.fuse") || base.starts_with("mount.strata") || is_mount_fuse_form(&args) {
        return helper_form(args);
    }
    let first = args.get(1).and_then(|a| a.to_str()).unwrap_or("");
    if first.starts_with("-o") || (first.starts_with('-') && !first.starts_with("--") && first != "-h" && first != "-V")
    {
        args.insert(1, OsString::from("mount"));
    }
    image_mount_form(args)
}

/// `strata mount IMAGE MNT [-w|--writable]` — exactly two operands, no layer options — is
/// `strata image mount IMAGE MNT` (as `podman mount` takes a container or image); a union mount
/// always names its layers (`--lower`, `-o`) and has one operand.
fn image_mount_form(mut args: Vec<OsString>) -> Vec<OsString> {
    let s: Vec<&str> = args.iter().map(|a| a.to_str().unwrap_or("-")).collect();
    let mut i = 1;
    while i < s.len() && (s[i] == "--root" || s[i].starts_with("--root=")) {
        i += if s[i] == "--root" { 2 } else { 1 };
    }
    if s.get(i) != Some(&"mount") {
        return args;
    }
    let (mut operands, mut j) = (0, i + 1);
    while j < s.len() {
        match s[j] {
            "--root" => j += 1,
            a if a.starts_with("--root=") || a == "-w" || a == "--writable" || a == "--lazy" || a == "--lazy=only" => {}
            a if !a.starts_with('-') => operands += 1,
            _ => return args,
        }
        j += 1;
    }
    if operands == 2 {
        args.insert(i, OsString::from("image"));
    }
    args
}

/// Whether `args` are `SOURCE MNT -o OPTS` (what fuse3's `mount.fuse` passes): the first is no
/// option and no verb, and an `-o` follows.
fn is_mount_fuse_form(args: &[OsString]) -> bool {
    use clap::CommandFactory;
    let Some(first) = args.get(1).and_then(|a| a.to_str()) else { return false };
    let verb =
        Cli::command().get_subcommands().any(|c| c.get_name() == first || c.get_all_aliases().any(|a| a == first));
    !first.starts_with('-') && !verb && args.iter().skip(2).any(|a| a == "-o")
}

/// The mount helper's arguments, `SOURCE MOUNTPOINT [-o OPTS] [-n] [-s] [-f] [-v]`, as `strata mount`'s.
fn helper_form(args: Vec<OsString>) -> Vec<OsString> {
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
    out
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
        // fuser's own lines (every request at debug level, as `fuse-overlayfs -d` prints them;
        // a warning when the kernel side is already unmounted at exit) only with `-d`.
        let ours = r.target().starts_with("strata");
        if self.enabled(r.metadata()) && (ours || log::max_level() >= log::LevelFilter::Debug) {
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
    fn usage_errors_are_one_line() {
        let e = Cli::try_parse_from(["strata", "push", "--compression", "lz4", "img"]).unwrap_err();
        let line = usage_line(&e.render().to_string());
        assert!(!line.contains('\n'));
        assert!(line.starts_with("invalid value 'lz4' for '--compression"), "{line}");
        assert!(line.contains("possible values: gzip"), "{line}");
        let e = Cli::try_parse_from(["strata", "images", "--bogus"]).unwrap_err();
        assert_eq!(usage_line(&e.render().to_string()), "unexpected argument '--bogus' found");
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
    fn two_operands_mount_an_image() {
        let image = |a: &[&str]| normalize_args(v(a));
        assert_eq!(image(&["strata", "mount", "busybox", "/mnt"]), v(&["strata", "image", "mount", "busybox", "/mnt"]));
        assert_eq!(
            image(&["strata", "--root", "/s", "mount", "-w", "busybox", "/mnt"]),
            v(&["strata", "--root", "/s", "image", "mount", "-w", "busybox", "/mnt"])
        );
        for union in [
            &["strata", "mount", "/mnt"][..],
            &["strata", "mount", "--lower", "a", "/mnt"],
            &["strata", "mount", "-o", "lowerdir=a", "x", "/mnt"],
            &["strata", "mount", "-f", "a", "/mnt"],
        ] {
            assert_eq!(image(union), v(union), "{union:?}");
        }
    }

    #[test]
    fn mount_helper_form_becomes_mount() {
        assert_eq!(
            normalize_args(v(&["/sbin/mount.fuse.strata", "none", "/mnt", "-o", "rw,lowerdir=a"])),
            v(&["strata", "mount", "-o", "rw,lowerdir=a", "/mnt"])
        );
        assert_eq!(
            normalize_args(v(&["/usr/local/bin/strata", "none", "/mnt", "-o", "rw,lowerdir=a,dev,suid"])),
            v(&["strata", "mount", "-o", "rw,lowerdir=a,dev,suid", "/mnt"])
        );
        let verb = v(&["strata", "run", "img", "sh", "-o", "x"]);
        assert_eq!(normalize_args(verb.clone()), verb);
    }
}
