//! The registry the benchmark starts: Debian's `docker-registry` (distribution 2.8) serving plain
//! HTTP on a loopback port with its blobs in a directory, stopped when dropped. (The private
//! `dockerd` is `benches/common/dockerd.rs`.)

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

/// A running registry.
pub struct Registry {
    child: Child,
    port: u16,
    /// Its config, log and storage.
    pub dir: PathBuf,
}

impl Registry {
    /// Starts an empty registry storing under `dir` (made afresh) and waits until it answers.
    pub fn start(dir: &Path) -> Result<Registry> {
        super::reset_dir(dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let config = dir.join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    \
                 rootdirectory: {}\n  delete:\n    enabled: true\n  cache:\n    blobdescriptor: inmemory\nhttp:\n  \
                 addr: 127.0.0.1:{port}\n",
                dir.join("data").display()
            ),
        )?;
        let log = File::create(dir.join("registry.log"))?;
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("starting docker-registry")?;
        let mut reg = Registry { child, port, dir: dir.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(20);
        while !api_answers(port) {
            if Instant::now() > deadline || reg.child.try_wait()?.is_some() {
                let log = fs::read_to_string(dir.join("registry.log")).unwrap_or_default();
                bail!("docker-registry on port {port} did not start: {}", log.trim());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(reg)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The benchmark image's name in this registry.
    pub fn image(&self) -> String {
        format!("{}/bench/img:{}", self.host(), super::image::REF)
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /v2/` answers 200 on `port`.
fn api_answers(port: u16) -> bool {
    let ask = || -> std::io::Result<bool> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(2)))?;
        s.write_all(format!("GET /v2/ HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n").as_bytes())?;
        let mut head = [0u8; 12];
        s.read_exact(&mut head)?;
        Ok(head.ends_with(b" 200"))
    };
    ask().unwrap_or(false)
}
