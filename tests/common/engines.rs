//! Other container engines driven by the interop tests: podman and a private docker daemon,
//! each with its own store in a temp dir.

use std::fs;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// podman as root with a private store and configuration (runc; limits this machine allows).
pub struct Podman {
    dir: tempfile::TempDir,
}

impl Podman {
    /// A podman with its own store and configuration in a temp dir.
    pub fn new() -> Podman {
        let dir = tempfile::tempdir().unwrap();
        let conf = "[containers]\ndefault_ulimits = [\"nofile=1024:1024\", \"nproc=4096:4096\"]\n\
                    [engine]\nruntime = \"runc\"\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n";
        fs::write(dir.path().join("containers.conf"), conf).unwrap();
        Podman { dir }
    }

    /// Runs `podman ARGS`.
    pub fn run(&self, args: &[&str]) -> Output {
        let d = self.dir.path();
        Command::new("podman")
            .env("CONTAINERS_CONF", d.join("containers.conf"))
            .arg("--root")
            .arg(d.join("root"))
            .arg("--runroot")
            .arg(d.join("runroot"))
            .args(["--storage-driver", "vfs"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = self.run(&["rm", "-a", "-f"]);
        let _ = self.run(&["rmi", "-a", "-f"]);
        // vfs layers may hold read-only dirs: podman removes them best.
    }
}

/// A private docker daemon (docker.io's dockerd) in a temp dir; stopped when dropped.
pub struct Dockerd {
    dir: tempfile::TempDir,
    daemon: std::process::Child,
}

impl Dockerd {
    /// Starts one, if dockerd is installed (it is not required: podman, skopeo and umoci are
    /// the interop checks CI must run).
    pub fn start() -> Option<Dockerd> {
        Dockerd::start_with(&[])
    }

    /// [`Dockerd::start`] with more daemon flags (`--insecure-registry HOST`).
    pub fn start_with(extra: &[&str]) -> Option<Dockerd> {
        if Command::new("dockerd").arg("--version").output().is_err() {
            assert!(std::env::var("CI").as_deref() != Ok("true"), "dockerd is missing and CI=true forbids skipping");
            eprintln!("skipped: dockerd is not installed (apt-get install docker.io)");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let daemon = Command::new("dockerd")
            .arg("--data-root")
            .arg(d.join("data"))
            .arg("--exec-root")
            .arg(d.join("exec"))
            .arg("--pidfile")
            .arg(d.join("pid"))
            .arg("--host")
            .arg(format!("unix://{}", d.join("docker.sock").display()))
            .args(["--iptables=false", "--bridge=none", "--storage-driver", "vfs"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(fs::File::create(d.join("log")).unwrap())
            .spawn()
            .unwrap();
        let docker = Dockerd { dir, daemon };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !docker.run(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "dockerd did not start: {:?}",
                fs::read_to_string(docker.dir.path().join("log"))
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        Some(docker)
    }

    /// Runs `docker ARGS` against this daemon.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_with(&[], args)
    }

    /// Runs `docker ARGS` against this daemon with more environment (`DOCKER_BUILDKIT=0`).
    pub fn run_with(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        let host = format!("unix://{}", self.dir.path().join("docker.sock").display());
        let mut c = Command::new("docker");
        c.env("DOCKER_HOST", host).envs(env.iter().copied());
        c.args(args).stdin(Stdio::null()).output().unwrap()
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = self.run(&["system", "prune", "-a", "-f"]);
        let _ = Command::new("kill").arg(self.daemon.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && matches!(self.daemon.try_wait(), Ok(None)) {
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.daemon.kill();
        let _ = self.daemon.wait();
    }
}
