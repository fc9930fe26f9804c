//! The container's root filesystem: inside its new mount namespace, the Strata mount of the
//! image layers + upper dir gets `/proc`, a minimal `/dev` (null, zero, full, random, urandom,
//! tty, pts, shm), a read-only `/sys`, the `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`
//! of the container (bind mounts of files kept beside the record), and its mounts (host paths
//! and volumes bound, tmpfs instances); then `pivot_root` makes it `/` and drops every host
//! mount.
//!
//! Every target is resolved inside the rootfs by fd ([`crate::sys::mountfd::open_target`]):
//! a symlink in the image cannot send a mount onto the host.

use std::io;
use std::path::{Path, PathBuf};

use super::config::RunConfig;
use super::mounts::{Mount, Source};
use super::syscall::Syscall;
use super::volumes;
use crate::sys::mountfd::{Attrs, TargetKind};

/// What went wrong setting the rootfs up; each names the mount at fault.
#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    /// A mount failed.
    #[error("mounting {what}: {source}")]
    Mount {
        /// Which mount (`proc on /proc`, `volume /srv on /data`, ...).
        what: String,
        /// The cause.
        source: io::Error,
    },
    /// The rootfs could not be opened or become the root.
    #[error("entering the rootfs {path}: {source}")]
    Root {
        /// The rootfs mount point.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// The host devices bound into `/dev`.
pub const DEVICES: [&str; 6] = ["null", "zero", "full", "random", "urandom", "tty"];

/// Kernel interfaces a container must not change (Docker's list): bound read-only.
pub const READONLY_PATHS: [&str; 5] = ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"];

/// Kernel interfaces a container must not see (Docker's list): covered.
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// The files of `/etc` the container gets from beside its record: (file name there, target).
pub const ETC_FILES: [(&str, &str); 3] =
    [("hosts", "/etc/hosts"), ("resolv.conf", "/etc/resolv.conf"), ("hostname", "/etc/hostname")];

/// Everything [`setup`] mounts.
#[derive(Clone, Debug)]
pub struct Plan {
    /// The Strata mount of the container (a host path).
    pub rootfs: PathBuf,
    /// The container's directory (where the `/etc` files are).
    pub dir: PathBuf,
    /// The store root (where the volumes are).
    pub root: PathBuf,
    /// Binds, volumes and tmpfs, parents before what is mounted inside them.
    pub mounts: Vec<Mount>,
    /// In a user namespace (no fixed tty group for devpts).
    pub rootless: bool,
}

impl Plan {
    /// The plan for a container of the store `root` in `dir` with `cfg`.
    pub fn new(root: &Path, dir: &Path, cfg: &RunConfig) -> Plan {
        let mut mounts = cfg.mounts.clone();
        mounts.sort_by_key(|m| Path::new(&m.target).components().count());
        Plan {
            rootfs: dir.join("merged"),
            dir: dir.to_path_buf(),
            root: root.to_path_buf(),
            mounts,
            rootless: cfg.rootless,
        }
    }
}

const NOSUID_NODEV_NOEXEC: Attrs = Attrs { rdonly: false, nosuid: true, nodev: true, noexec: true };

fn mount_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> RootfsError {
    let what = what.into();
    move |source| RootfsError::Mount { what, source }
}

/// Builds the rootfs and pivots into it. The caller is in its own mount namespace.
pub fn setup(sys: &dyn Syscall, plan: &Plan) -> Result<(), RootfsError> {
    let root_err = |source| RootfsError::Root { path: plan.rootfs.clone(), source };
    sys.make_private().map_err(root_err)?;
    sys.open_rootfs(&plan.rootfs).map_err(root_err)?;
    sys.mount_fs("proc", &[], NOSUID_NODEV_NOEXEC, Path::new("/proc")).map_err(mount_err("proc on /proc"))?;
    dev(sys, plan.rootless)?;
    sys_ro(sys)?;
    protect_kernel(sys)?;
    for (file, target) in ETC_FILES {
        let src = plan.dir.join(file);
        sys.bind(&src, Path::new(target), TargetKind::File, Attrs::default())
            .map_err(mount_err(format!("{} on {target}", src.display())))?;
    }
    for m in &plan.mounts {
        mount(sys, &plan.root, m)?;
    }
    sys.pivot_root().map_err(root_err)
}

/// One mount of the container: a host path or a volume's `_data` bound, or a new tmpfs
/// (`nosuid,nodev`, and `noexec` unless asked otherwise, as docker mounts it); a volume with
/// driver options mounts what they say.
fn mount(sys: &dyn Syscall, root: &Path, m: &Mount) -> Result<(), RootfsError> {
    let target = Path::new(&m.target);
    match &m.source {
        Source::Tmpfs { options, exec } => {
            let options: Vec<(&str, &str)> = options.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            let attrs = Attrs { rdonly: m.readonly, nosuid: true, nodev: true, noexec: !exec };
            sys.mount_fs("tmpfs", &options, attrs, target).map_err(mount_err(format!("tmpfs on {}", m.target)))
        }
        Source::Bind { host } => bind(sys, host, m, format!("volume {} on {}", host.display(), m.target)),
        Source::Volume { name, .. } => {
            let what = format!("volume {name} on {}", m.target);
            let v = volumes::load(root, name).map_err(|e| mount_err(&what)(io::Error::other(e)))?;
            let (source, readonly) = v.source(root);
            let m = Mount { source, readonly: m.readonly || readonly, ..m.clone() };
            match &m.source {
                Source::Bind { host } => bind(sys, host, &m, what),
                _ => mount(sys, root, &m),
            }
        }
    }
}

/// Binds the host path `host` on `m`'s target (what is mounted is named `what` in errors).
fn bind(sys: &dyn Syscall, host: &Path, m: &Mount, what: String) -> Result<(), RootfsError> {
    let kind = if host.is_dir() { TargetKind::Dir } else { TargetKind::File };
    let attrs = Attrs { rdonly: m.readonly, nodev: true, ..Default::default() };
    sys.bind(host, Path::new(&m.target), kind, attrs).map_err(mount_err(what))
}

/// `/dev`: a tmpfs with the host's harmless devices bound in, a private devpts, shm, links.
fn dev(sys: &dyn Syscall, rootless: bool) -> Result<(), RootfsError> {
    // nodev: only the devices bound in below (mounts of their own) and devpts work.
    let devfs = Attrs { nosuid: true, nodev: true, ..Default::default() };
    sys.mount_fs("tmpfs", &[("mode", "755"), ("size", "65536k")], devfs, Path::new("/dev"))
        .map_err(mount_err("tmpfs on /dev"))?;
    for d in DEVICES {
        let host = Path::new("/dev").join(d);
        sys.bind(&host, &host, TargetKind::File, Attrs::default()).map_err(mount_err(format!("/dev/{d}")))?;
    }
    let mut pts = vec![("newinstance", ""), ("ptmxmode", "0666"), ("mode", "0620")];
    if !rootless {
        pts.push(("gid", "5"));
    }
    let ptsattrs = Attrs { nosuid: true, noexec: true, ..Default::default() };
    sys.mount_fs("devpts", &pts, ptsattrs, Path::new("/dev/pts")).map_err(mount_err("devpts on /dev/pts"))?;
    sys.mount_fs("tmpfs", &[("mode", "1777"), ("size", "65536k")], NOSUID_NODEV_NOEXEC, Path::new("/dev/shm"))
        .map_err(mount_err("tmpfs on /dev/shm"))?;
    let links =
        [("ptmx", "pts/ptmx"), ("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"), ("stdout", "/proc/self/fd/1")];
    for (name, link) in links.into_iter().chain([("stderr", "/proc/self/fd/2")]) {
        sys.symlink(Path::new("/dev"), name, link).map_err(mount_err(format!("/dev/{name}")))?;
    }
    Ok(())
}

/// Read-only and masked kernel paths; those this kernel does not have are skipped.
fn protect_kernel(sys: &dyn Syscall) -> Result<(), RootfsError> {
    let skip_missing = |r: io::Result<()>, what: &str| match r {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other.map_err(mount_err(what)),
    };
    for p in READONLY_PATHS {
        skip_missing(sys.bind_readonly(Path::new(p)), &format!("{p} (read-only)"))?;
    }
    for p in MASKED_PATHS {
        skip_missing(sys.mask(Path::new(p)), &format!("{p} (masked)"))?;
    }
    Ok(())
}

/// `/sys` read-only: a new sysfs where the network namespace allows it, else the host's bound.
fn sys_ro(sys: &dyn Syscall) -> Result<(), RootfsError> {
    let ro = Attrs { rdonly: true, ..NOSUID_NODEV_NOEXEC };
    let target = Path::new("/sys");
    match sys.mount_fs("sysfs", &[], ro, target) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
            sys.bind(target, target, TargetKind::Dir, ro).map_err(mount_err("/sys (bound read-only)"))
        }
        Err(e) => Err(mount_err("sysfs on /sys")(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::syscall::{Call, RecordingSyscall};

    fn plan(mounts: Vec<Mount>) -> Plan {
        Plan { rootfs: "/c/merged".into(), dir: "/c".into(), root: "/r".into(), mounts, rootless: false }
    }

    fn bind(host: &str, target: &str, readonly: bool) -> Mount {
        Mount { source: Source::Bind { host: host.into() }, target: target.into(), readonly, mode: String::new() }
    }

    fn targets(sys: &RecordingSyscall) -> Vec<String> {
        sys.calls
            .borrow()
            .iter()
            .filter_map(|c| match c {
                Call::Mount(_, _, _, t) | Call::Bind(_, t, _, _) => Some(t.display().to_string()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn mounts_come_in_order_and_pivot_is_last() {
        let sys = RecordingSyscall::default();
        let v = |t: &str| bind("/tmp", t, t == "/a");
        let cfg = RunConfig { mounts: vec![v("/a/b"), v("/a")], ..Default::default() };
        setup(&sys, &Plan::new(Path::new("/r"), Path::new("/c"), &cfg)).unwrap();
        let calls = sys.calls.borrow();
        assert_eq!(calls[0], Call::MakePrivate);
        assert_eq!(calls[1], Call::OpenRootfs("/c/merged".into()));
        assert_eq!(*calls.last().unwrap(), Call::PivotRoot);
        drop(calls);
        let t = targets(&sys);
        assert_eq!(&t[..3], ["/proc", "/dev", "/dev/null"]);
        let at = |p: &str| t.iter().position(|x| x == p).unwrap();
        assert!(at("/dev/pts") < at("/sys") && at("/sys") < at("/etc/hosts"));
        let calls = sys.calls.borrow();
        let ro = calls.iter().position(|c| *c == Call::ReadOnly("/proc/sys".into())).unwrap();
        let masked = calls.iter().position(|c| *c == Call::Mask("/proc/kcore".into())).unwrap();
        let sysfs = calls.iter().position(|c| matches!(c, Call::Mount(t, ..) if t == "sysfs")).unwrap();
        assert!(sysfs < ro && ro < masked, "kernel paths are protected once /proc and /sys are there");
        drop(calls);
        assert!(at("/a") < at("/a/b"), "parent volumes first: {t:?}");
        assert!(
            sys.calls.borrow().iter().any(|c| matches!(c, Call::Bind(_, t, _, a) if t == Path::new("/a") && a.rdonly))
        );
    }

    #[test]
    fn sys_is_read_only_and_falls_back_to_a_bind() {
        let sys =
            RecordingSyscall { fail: Some(|c| matches!(c, Call::Mount(t, ..) if t == "sysfs")), ..Default::default() };
        setup(&sys, &plan(vec![])).unwrap();
        let calls = sys.calls.borrow();
        let bind = calls.iter().find(|c| matches!(c, Call::Bind(s, ..) if s == Path::new("/sys"))).unwrap();
        assert!(matches!(bind, Call::Bind(_, _, TargetKind::Dir, a) if a.rdonly));
    }

    #[test]
    fn rootless_devpts_has_no_fixed_group_and_errors_name_the_mount() {
        let sys = RecordingSyscall::default();
        setup(&sys, &Plan { rootless: true, ..plan(vec![]) }).unwrap();
        let calls = sys.calls.borrow();
        let pts = calls.iter().find(|c| matches!(c, Call::Mount(t, ..) if t == "devpts")).unwrap();
        assert!(matches!(pts, Call::Mount(_, o, ..) if !o.iter().any(|x| x.starts_with("gid="))));
        drop(calls);
        let fail = RecordingSyscall {
            fail: Some(|c| matches!(c, Call::Bind(_, t, ..) if t == Path::new("/v"))),
            ..Default::default()
        };
        let e = setup(&fail, &plan(vec![bind("/srv", "/v", false)])).unwrap_err().to_string();
        assert!(e.starts_with("mounting volume /srv on /v:"), "{e}");
        assert!(!fail.calls.borrow().contains(&Call::PivotRoot));
    }
}

#[cfg(test)]
mod mount_tests {
    use super::*;
    use crate::container::mounts::{parse_tmpfs, parse_volume};
    use crate::container::syscall::{Call, RecordingSyscall};

    #[test]
    fn volumes_bind_their_data_and_tmpfs_is_a_new_instance() {
        let sys = RecordingSyscall::default();
        let dir = tempfile::tempdir().unwrap();
        let mut mounts = vec![parse_volume("vol:/v:ro").unwrap(), parse_tmpfs("/t:size=1m,exec").unwrap()];
        let lock = volumes::lock(dir.path(), crate::sys::lock::LockKind::Shared).unwrap();
        volumes::provide(dir.path(), &mut mounts).unwrap();
        drop(lock);
        let cfg = RunConfig { mounts, ..Default::default() };
        setup(&sys, &Plan::new(dir.path(), Path::new("/c"), &cfg)).unwrap();
        let calls = sys.calls.borrow();
        let data = volumes::data_dir(dir.path(), "vol");
        let ro = Attrs { rdonly: true, nodev: true, ..Default::default() };
        assert!(calls.contains(&Call::Bind(data, "/v".into(), TargetKind::Dir, ro)), "{calls:?}");
        let t = Attrs { nosuid: true, nodev: true, ..Default::default() };
        assert!(calls.contains(&Call::Mount("tmpfs".into(), vec!["size=1m".into()], t, "/t".into())), "{calls:?}");
    }
}
