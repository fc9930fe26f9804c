//! The last steps of a container process, inside its rootfs: the user and groups from the
//! image's `/etc/passwd` and `/etc/group`, `HOME`, the working directory, the program found on
//! the container's `PATH`, bounded capabilities, `no_new_privs`, default signals, `execve`.
//! Shared by PID 1 and by `exec`.

use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::sys::creds;

/// The capabilities a container keeps (Docker's default set), as `1 << CAP_X` bits.
pub const DEFAULT_CAPS: u64 = {
    use rustix::thread::CapabilitySet as C;
    C::CHOWN
        .union(C::DAC_OVERRIDE)
        .union(C::FOWNER)
        .union(C::FSETID)
        .union(C::KILL)
        .union(C::SETGID)
        .union(C::SETUID)
        .union(C::SETPCAP)
        .union(C::NET_BIND_SERVICE)
        .union(C::NET_RAW)
        .union(C::SYS_CHROOT)
        .union(C::MKNOD)
        .union(C::AUDIT_WRITE)
        .union(C::SETFCAP)
        .bits()
};

/// Why a container process could not start; [`ProcessError::code`] is the exit status `run` gives.
#[derive(Debug, thiserror::Error)]
pub enum ProcessError {
    /// The program is not on PATH (or the path does not exist).
    #[error("exec {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// The program exists but cannot be run.
    #[error("exec {path}: {source}")]
    CannotRun {
        /// The program.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// `-u`/`User` names no known user or group.
    #[error("unable to find user {spec}: {reason}")]
    User {
        /// The user spec.
        spec: String,
        /// What is missing.
        reason: String,
    },
    /// The user's ids have no mapping in the container's user namespace.
    #[error(
        "user {0}: its ids are not mapped in the user namespace (rootless: give the caller ranges in /etc/subuid and /etc/subgid)"
    )]
    Unmapped(String),
    /// A step before exec failed.
    #[error("{what}: {source}")]
    Setup {
        /// Which step.
        what: String,
        /// The cause.
        source: io::Error,
    },
}

impl ProcessError {
    /// 127 for a missing program, 126 when it cannot be run, 125 otherwise.
    pub fn code(&self) -> i32 {
        match self {
            ProcessError::NotFound(_) => 127,
            ProcessError::CannotRun { .. } => 126,
            _ => 125,
        }
    }
}

/// A resolved user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ids {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (the primary one included).
    pub groups: Vec<u32>,
    /// Home directory from passwd, if the user is there.
    pub home: Option<String>,
}

fn field(line: &str, i: usize) -> Option<&str> {
    line.split(':').nth(i)
}

/// Resolves `USER[:GROUP]` (names or numbers; empty is root) against passwd and group contents.
pub fn resolve_user(spec: &str, passwd: &str, group: &str) -> Result<Ids, ProcessError> {
    let err = |reason: &str| ProcessError::User { spec: spec.to_string(), reason: reason.to_string() };
    let (user, grp) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let by_name = passwd.lines().find(|l| field(l, 0) == Some(user));
    let entry = by_name.or_else(|| {
        let uid: u32 = user.parse().ok()?;
        passwd.lines().find(|l| field(l, 2).and_then(|u| u.parse().ok()) == Some(uid))
    });
    let uid = match (entry.and_then(|l| field(l, 2)?.parse().ok()), user.parse::<u32>()) {
        (Some(u), _) | (None, Ok(u)) => u,
        (None, Err(_)) => return Err(err("no matching entries in passwd file")),
    };
    let name = entry.and_then(|l| field(l, 0)).unwrap_or_default();
    let mut gid = entry.and_then(|l| field(l, 3)?.parse().ok()).unwrap_or(0);
    let mut groups: Vec<u32> = group
        .lines()
        .filter(|l| !name.is_empty() && field(l, 3).is_some_and(|m| m.split(',').any(|x| x == name)))
        .filter_map(|l| field(l, 2)?.parse().ok())
        .collect();
    if let Some(g) = grp {
        let found = group.lines().find(|l| field(l, 0) == Some(g)).and_then(|l| field(l, 2)?.parse().ok());
        gid = match (found, g.parse::<u32>()) {
            (Some(x), _) | (None, Ok(x)) => x,
            (None, Err(_)) => return Err(err("no matching entries in group file")),
        };
        groups.clear();
    }
    if !groups.contains(&gid) {
        groups.insert(0, gid);
    }
    let home = entry.and_then(|l| field(l, 5)).filter(|h| !h.is_empty()).map(str::to_string);
    Ok(Ids { uid, gid, groups, home })
}

/// Finds `cmd` as `execvp` would, on the container's `PATH`; absolute and relative paths
/// with a slash are taken as they are.
pub fn find_program(cmd: &str, env: &[String]) -> Result<PathBuf, ProcessError> {
    if cmd.is_empty() {
        return Err(ProcessError::NotFound(cmd.into()));
    }
    if cmd.contains('/') {
        return if Path::new(cmd).exists() { Ok(cmd.into()) } else { Err(ProcessError::NotFound(cmd.into())) };
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or(super::config::DEFAULT_PATH);
    path.split(':')
        .map(|d| Path::new(if d.is_empty() { "." } else { d }).join(cmd))
        .find(|p| p.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
        .ok_or_else(|| ProcessError::NotFound(cmd.into()))
}

/// What to run and as whom.
pub struct Spec<'a> {
    /// Program and arguments.
    pub args: &'a [String],
    /// Environment (`HOME` is added from passwd when missing).
    pub env: &'a [String],
    /// Working directory (made if missing).
    pub cwd: &'a str,
    /// `USER[:GROUP]`.
    pub user: &'a str,
    /// Set `no_new_privs`.
    pub no_new_privs: bool,
}

fn setup_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> ProcessError {
    let what = what.into();
    move |source| ProcessError::Setup { what, source }
}

fn cstrings<'a>(items: impl Iterator<Item = &'a [u8]>) -> Result<Vec<CString>, ProcessError> {
    items.map(|s| CString::new(s).map_err(|e| setup_err("arguments")(io::Error::other(e)))).collect()
}

/// Becomes the container process described by `spec` and executes it. Returns only on failure.
/// Runs inside the rootfs (after `pivot_root` or `setns`), single-threaded.
pub fn exec(spec: &Spec<'_>) -> ProcessError {
    match prepare_and_exec(spec) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

/// Makes the working directory if missing and changes to it.
fn enter_workdir(cwd: &str) -> Result<(), ProcessError> {
    let what = |verb: &str| format!("{verb} the working directory {cwd}");
    if std::fs::metadata(cwd).is_ok_and(|m| !m.is_dir()) {
        return Err(setup_err(what("changing to"))(io::Error::from_raw_os_error(libc::ENOTDIR)));
    }
    std::fs::create_dir_all(cwd).map_err(setup_err(what("creating")))?;
    std::env::set_current_dir(cwd).map_err(setup_err(what("changing to")))
}

fn prepare_and_exec(spec: &Spec<'_>) -> Result<std::convert::Infallible, ProcessError> {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let ids = resolve_user(spec.user, &read("/etc/passwd"), &read("/etc/group"))?;
    let mut env = spec.env.to_vec();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!("HOME={}", ids.home.as_deref().unwrap_or(if ids.uid == 0 { "/root" } else { "/" })));
    }
    enter_workdir(spec.cwd)?;
    let program = find_program(spec.args.first().map(String::as_str).unwrap_or_default(), &env)?;
    creds::bound_capabilities(DEFAULT_CAPS).map_err(setup_err("bounding capabilities"))?;
    creds::set_ids(ids.uid, ids.gid, &ids.groups).map_err(|e| match e.raw_os_error() {
        Some(libc::EINVAL) => ProcessError::Unmapped(spec.user.to_string()),
        _ => setup_err("setting the user")(e),
    })?;
    if spec.no_new_privs {
        creds::set_no_new_privs().map_err(setup_err("setting no_new_privs"))?;
    }
    let path =
        CString::new(program.as_os_str().as_bytes()).map_err(|e| setup_err("program path")(io::Error::other(e)))?;
    let args = cstrings(spec.args.iter().map(|s| s.as_bytes()))?;
    let envs = cstrings(env.iter().map(|s| s.as_bytes()))?;
    creds::reset_signals();
    creds::cloexec_from_3().map_err(setup_err("closing descriptors"))?;
    let e = creds::exec(&path, &args, &envs);
    Err(match e.raw_os_error() {
        Some(libc::ENOENT) => ProcessError::NotFound(spec.args[0].clone()),
        _ => ProcessError::CannotRun { path: program, source: e },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n";
    const GROUP: &str = "root:x:0:\nwheel:x:10:user\nuser:x:1000:\n";

    #[test]
    fn users_resolve_by_name_number_and_group() {
        let root = resolve_user("", PASSWD, GROUP).unwrap();
        assert_eq!((root.uid, root.gid, root.home.as_deref()), (0, 0, Some("/root")));
        let u = resolve_user("user", PASSWD, GROUP).unwrap();
        assert_eq!((u.uid, u.gid), (1000, 1000));
        assert_eq!(u.groups, vec![1000, 10]);
        let n = resolve_user("4242:10", PASSWD, GROUP).unwrap();
        assert_eq!((n.uid, n.gid, n.groups.clone(), n.home), (4242, 10, vec![10], None));
        let g = resolve_user("user:wheel", PASSWD, GROUP).unwrap();
        assert_eq!((g.gid, g.groups.clone()), (10, vec![10]));
        assert!(matches!(resolve_user("nobody", PASSWD, GROUP), Err(ProcessError::User { .. })));
        assert!(matches!(resolve_user("0:nogroup", PASSWD, GROUP), Err(ProcessError::User { .. })));
    }

    #[test]
    fn programs_are_looked_up_on_path() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        assert!(find_program("sh", &env).is_ok());
        let e = find_program("no-such-program-here", &env).unwrap_err();
        assert_eq!(e.code(), 127);
        assert!(e.to_string().contains("executable file not found"), "{e}");
        assert!(matches!(find_program("/no/such", &env), Err(ProcessError::NotFound(_))));
    }

    #[test]
    fn default_caps_are_docker_s() {
        assert_eq!(DEFAULT_CAPS.count_ones(), 14);
        assert_eq!(DEFAULT_CAPS & rustix::thread::CapabilitySet::SYS_ADMIN.bits(), 0);
    }
}
