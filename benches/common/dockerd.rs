//! A private `dockerd` for the benchmarks: its own data root, exec root and socket under one
//! directory, overlay2, no iptables or bridge; stopped (TERM, then KILL after 30 s) when dropped.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process};

/// The client packaged with dockerd (`docker.io`): another docker CLI may be first in `PATH`.
pub const DOCKER: &str = "/usr/bin/docker";

/// A running private dockerd.
pub struct Dockerd {
    child: Child,
    /// `unix://…` for `docker -H` or `DOCKER_HOST`.
    pub host: String,
}

impl Dockerd {
    /// Starts dockerd with everything under `dir` (made if missing; the caller empties it),
    /// trusting `insecure_registry` over plain HTTP if given, and waits until it answers.
    pub fn start(dir: &Path, insecure_registry: Option<&str>) -> Result<Dockerd> {
        fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        let sock = dir.join("docker.sock");
        let log_path: PathBuf = dir.join("dockerd.log");
        let log = File::create(&log_path)?;
        let mut cmd = Command::new("dockerd");
        cmd.arg("--data-root").arg(dir.join("data"));
        cmd.arg("--exec-root").arg(dir.join("exec"));
        cmd.arg("--pidfile").arg(dir.join("dockerd.pid"));
        cmd.arg("--host").arg(format!("unix://{}", sock.display()));
        if let Some(r) = insecure_registry {
            cmd.args(["--insecure-registry", r]);
        }
        cmd.args(["--iptables=false", "--ip-masq=false", "--bridge=none"]);
        cmd.args(["--storage-driver", "overlay2", "--log-level", "warn"]);
        let child =
            cmd.stdin(Stdio::null()).stdout(log.try_clone()?).stderr(log).spawn().context("starting dockerd")?;
        let mut d = Dockerd { child, host: format!("unix://{}", sock.display()) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ok = Command::new(DOCKER).args(["-H", &d.host, "version"]).output().is_ok_and(|o| o.status.success());
            if ok {
                return Ok(d);
            }
            if Instant::now() > deadline || d.child.try_wait()?.is_some() {
                let log = fs::read_to_string(&log_path).unwrap_or_default();
                bail!("dockerd did not start: {}", log.trim());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// `docker -H SOCK ARGS…`.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec![DOCKER.into(), "-H".into(), self.host.clone()];
        v.extend(args.iter().map(|a| a.to_string()));
        v
    }
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let pid = Pid::from_child(&self.child);
        let _ = kill_process(pid, Signal::TERM);
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
