//! A store in a temp dir, driven through the `strata` binary (image, explain and commit tests).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A fresh store (`ROOT/store`) and scratch space for one test.
pub struct Store {
    /// The temp dir holding the store and anything else the test makes.
    pub dir: tempfile::TempDir,
    /// The unprivileged user `strata` runs as (through `setpriv`), and its copy of the binary.
    user: Option<(u32, PathBuf)>,
}

impl Store {
    /// An empty store.
    pub fn new() -> Store {
        Store { dir: tempfile::tempdir().unwrap(), user: None }
    }

    /// An empty store that `strata` uses as the unprivileged user `uid` (group `uid` too): the
    /// temp dir is theirs, with a copy of the binary (the build dir may be out of their reach).
    /// Needs root (for `setpriv`).
    pub fn as_user(uid: u32) -> Store {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(uid)).unwrap();
        let bin = dir.path().join("strata");
        std::fs::copy(super::strata(), &bin).unwrap();
        Store { dir, user: Some((uid, bin)) }
    }

    /// Copies `src` (a file or a tree) into the scratch space as `name`, owned by the store's user.
    pub fn copy_in(&self, src: &Path, name: &str) -> PathBuf {
        let dest = self.path(name);
        let st = Command::new("cp").arg("-a").arg(src).arg(&dest).status().unwrap();
        assert!(st.success(), "cp -a {}", src.display());
        if let Some((uid, _)) = &self.user {
            let st = Command::new("chown").arg("-R").arg(format!("{uid}:{uid}")).arg(&dest).status().unwrap();
            assert!(st.success());
        }
        dest
    }

    /// The store's root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// A path in the scratch space.
    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// `strata --root ROOT ARGS` (no colour, no input).
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = match &self.user {
            Some((uid, bin)) => {
                let mut c = Command::new("setpriv");
                let (u, home) = (uid.to_string(), format!("HOME={}", self.dir.path().display()));
                c.args(["--reuid", &u, "--regid", &u, "--clear-groups", "env", &home]).arg(bin);
                c
            }
            None => Command::new(super::strata()),
        };
        c.arg("--root").arg(self.root()).args(args).env_remove("STRATA_ROOT").env("NO_COLOR", "1");
        // Registry credentials are the test's own: its home, no one else's config files.
        let home = self.dir.path();
        c.env("HOME", home).env("XDG_RUNTIME_DIR", home.join("run")).env("XDG_CONFIG_HOME", home.join("config"));
        c.env_remove("DOCKER_CONFIG").env_remove("REGISTRY_AUTH_FILE");
        c.stdin(Stdio::null());
        c
    }

    /// Runs `strata ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().unwrap()
    }

    /// Runs `strata ARGS`, which must succeed; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "strata {args:?} failed:\n{stderr}\n{stdout}");
        stdout.into_owned()
    }

    /// Runs `strata ARGS`, which must fail with one line on stderr; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!out.status.success(), "strata {args:?} should fail");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.starts_with("strata[warn]")).collect();
        assert_eq!(lines.len(), 1, "one error line expected, got:\n{stderr}");
        assert!(lines[0].starts_with("strata: "), "{stderr}");
        lines[0].to_string()
    }

    /// Runs `strata ARGS` on a terminal (through `script`); returns what the terminal showed.
    pub fn on_tty(&self, args: &[&str]) -> String {
        let c = self.cmd(args);
        let mut line = vec![c.get_program().to_string_lossy().into_owned()];
        line.extend(c.get_args().map(|a| format!("'{}'", a.to_string_lossy())));
        let out = Command::new("script")
            .args(["-qefc", &line.join(" "), "/dev/null"])
            .env_remove("STRATA_ROOT")
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let shown = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(out.status.success(), "strata {args:?} on a terminal failed:\n{shown}");
        shown
    }

    /// Loads a fixture image (`fixtures/images/NAME`) quietly.
    pub fn load_fixture(&self, name: &str) {
        let src = match self.user {
            Some(_) => self.copy_in(&fixtures().join(name), name),
            None => fixtures().join(name),
        };
        self.ok(&["load", "-q", "-i", src.to_str().unwrap()]);
    }
}

/// The fixture images.
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/images")
}

/// Whether the tests run in CI (where nothing may be skipped).
pub fn in_ci() -> bool {
    std::env::var("CI").as_deref() == Ok("true")
}

/// Whether a tool is installed; under `CI=true` a missing tool is a failure.
pub fn require_tool(tool: &str) -> bool {
    let found = Command::new(tool).arg("--version").output().map(|o| o.status.success()).unwrap_or(false);
    assert!(found || !in_ci(), "{tool} is not installed (apt-get install -y {tool}), and CI=true");
    if !found {
        eprintln!("skipped: {tool} is not installed");
    }
    found
}
