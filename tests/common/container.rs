//! Helpers of the container tests (`run.rs`, `volumes.rs`): a store of its own with the busybox
//! fixture image loaded ([`Env`]), run as root or as an unprivileged user, and waiting for
//! commands and container states with a time limit.

use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// The busybox fixture image (an OCI layout).
pub fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images/oci-multi")
}

/// Its name once loaded.
pub const IMAGE: &str = "oci-multi";
/// How long a command or a wait may take.
pub const LIMIT: Duration = Duration::from_secs(60);

/// Reads `from` to its end in a thread; the result comes through the returned channel.
pub fn drain(from: Option<impl Read + Send + 'static>) -> std::sync::mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut f) = from {
            let _ = f.read_to_end(&mut buf);
        }
        let _ = tx.send(buf);
    });
    rx
}

/// Waits for `child` at most `limit` (then kills it), collecting its output. A process it
/// left behind holding its stdout/stderr does not make the test hang: the pipes get a few
/// seconds after it ended.
pub fn finish(mut child: Child, limit: Duration) -> Output {
    let (out, err) = (drain(child.stdout.take()), drain(child.stderr.take()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("command still running after {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let pipe = |rx: std::sync::mpsc::Receiver<Vec<u8>>| {
        rx.recv_timeout(Duration::from_secs(10)).expect("a process left behind still holds the output")
    };
    Output { status, stdout: pipe(out), stderr: pipe(err) }
}

/// A store with the fixture image loaded, in a temp dir of its own; containers left by a
/// failing test are removed when it is dropped.
pub struct Env {
    /// The temp dir the store (`root/`) and the test's own files are in.
    pub dir: tempfile::TempDir,
    /// The strata binary run.
    pub bin: PathBuf,
    /// Run `strata` as this user (setpriv) instead of root.
    pub as_user: Option<u32>,
}

impl Env {
    /// A store used as root.
    pub fn new() -> Env {
        Env::with_user(None)
    }

    /// A store used as root, or by the user `as_user` (rootless).
    pub fn with_user(as_user: Option<u32>) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mut env = Env { bin: PathBuf::from(env!("CARGO_BIN_EXE_strata")), dir, as_user };
        if let Some(uid) = as_user {
            std::fs::set_permissions(env.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
            let root = env.root();
            std::fs::create_dir(&root).unwrap();
            std::os::unix::fs::chown(&root, Some(uid), Some(uid)).unwrap();
            // The build dir may not be reachable by that user: give it a copy of the binary.
            let bin = env.dir.path().join("strata");
            std::fs::copy(&env.bin, &bin).unwrap();
            std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
            env.bin = bin;
        }
        env.ok(&["load", "-i", fixture().to_str().unwrap()]);
        env
    }

    /// The store root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// `strata --root ROOT ARGS`, as the store's user.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match self.as_user {
            Some(uid) => {
                let mut c = Command::new("setpriv");
                let (u, h) = (uid.to_string(), format!("HOME={}", self.dir.path().display()));
                c.args(["--reuid", &u, "--regid", &u, "--clear-groups", "env", &h]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        c.arg("--root").arg(self.root()).args(args);
        c
    }

    /// Starts `strata ARGS` with stdin empty and the output piped.
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap()
    }

    /// Runs `strata ARGS` to its end (within [`LIMIT`]).
    pub fn run(&self, args: &[&str]) -> Output {
        finish(self.spawn(args), LIMIT)
    }

    /// Runs `strata ARGS`, which must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "strata {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs `strata ARGS`, which must fail with `code` and one line on stderr; returns that line.
    pub fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(out.status.code(), Some(code), "strata {args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "one line expected: {err:?}");
        err
    }

    /// `run --rm IMAGE sh -c SCRIPT` with extra flags before the image; returns stdout.
    pub fn sh(&self, flags: &[&str], script: &str) -> String {
        let mut args = vec!["run", "--rm"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&[IMAGE, "sh", "-c", script]);
        self.ok(&args)
    }

    /// The record of the container called `name`, if there is one.
    pub fn find(&self, name: &str) -> Option<serde_json::Value> {
        let entries = std::fs::read_dir(self.root().join("containers")).ok()?;
        entries.flatten().find_map(|entry| {
            let bytes = std::fs::read(entry.path().join("container.json")).ok()?;
            let v: serde_json::Value = serde_json::from_slice(&bytes).unwrap();
            (v["name"] == name).then_some(v)
        })
    }

    /// The record of the container called `name`.
    pub fn record(&self, name: &str) -> serde_json::Value {
        self.find(name).unwrap_or_else(|| panic!("no container {name}"))
    }

    /// The directory of the container called `name`.
    pub fn dir_of(&self, name: &str) -> PathBuf {
        self.root().join("containers").join(self.record(name)["id"].as_str().unwrap())
    }

    /// Waits until the container `name` is in `status`.
    pub fn wait_status(&self, name: &str, status: &str) -> serde_json::Value {
        wait_until(&format!("{name} never became {status}"), || {
            self.find(name).is_some_and(|r| r["state"]["status"] == status)
        });
        self.record(name)
    }

    /// Runs the shell `script` as the store's user, in a mount namespace of its own where
    /// `/etc/subuid` and `/etc/subgid` give that user the range 300000-365535 (newuidmap reads
    /// them there; the host's files stay as they are). `$S` is the strata command line, quoted:
    /// `eval "$S run ..."`.
    pub fn with_subordinate_ids(&self, script: &str) -> Output {
        let (subuid, subgid) = (self.dir.path().join("subuid"), self.dir.path().join("subgid"));
        for f in [&subuid, &subgid] {
            std::fs::write(f, "nobody:300000:65536\n").unwrap();
            std::fs::set_permissions(f, std::fs::Permissions::from_mode(0o644)).unwrap();
        }
        let strata = self.cmd(&[]);
        let mut line: Vec<String> = vec![strata.get_program().to_string_lossy().into()];
        line.extend(strata.get_args().map(|a| a.to_string_lossy().into_owned()));
        let quoted = line.iter().map(|a| format!("'{a}'")).collect::<Vec<_>>().join(" ");
        let script = format!(
            "mount --bind {} /etc/subuid && mount --bind {} /etc/subgid && S=\"{quoted}\" && {script}",
            subuid.display(),
            subgid.display()
        );
        let child = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        finish(child, LIMIT)
    }

    /// Whether anything of this store is mounted (in the host's mount table).
    pub fn mounted(&self) -> bool {
        let mounts = std::fs::read_to_string("/proc/mounts").unwrap();
        mounts.contains(self.dir.path().to_str().unwrap())
            || self.container_ids().iter().any(|id| mounts.contains(id.as_str()))
    }

    /// The ids of the store's containers.
    pub fn container_ids(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(self.root().join("containers")) else { return Vec::new() };
        entries.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.len() == 64).collect()
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        for id in self.container_ids() {
            let _ = self.cmd(&["rm", "-f", &id]).output();
        }
    }
}

/// Polls `done` until it holds; fails the test with `what` after [`LIMIT`].
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The lines of `s`.
pub fn lines(s: &str) -> Vec<&str> {
    s.lines().collect()
}
