//! The io_uring pass: `scripts/test` runs the union suite and `tests/uring.rs` a second time with
//! `enable_uring` on and `STRATA_TEST_TRANSPORT=io_uring`. In that pass every Strata mount asks
//! for `-o io_uring=on`, which fails unless the kernel really serves it through io_uring. Also: a
//! Strata daemon in the foreground, for tests that watch it end.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use super::strata;

pub use strata::sys::mount::{FUSE_URING_PARAM as ENABLE_URING, fuse_uring_enabled as uring_enabled};

/// Whether this is the io_uring pass of `scripts/test`.
pub fn io_uring_pass() -> bool {
    std::env::var("STRATA_TEST_TRANSPORT").as_deref() == Ok("io_uring")
}

/// The `-o` option every Strata mount of the tests gets: `,io_uring=on` in the io_uring pass,
/// nothing otherwise.
pub fn transport_option() -> &'static str {
    if io_uring_pass() { ",io_uring=on" } else { "" }
}

/// Whether a test of the io_uring transport may run: in the io_uring pass (which must have
/// `enable_uring` on), as root. Elsewhere it is skipped: `scripts_test_runs_the_io_uring_pass`
/// makes sure CI has that pass.
pub fn require_io_uring(test: &str) -> bool {
    if !io_uring_pass() {
        eprintln!("{test}: skipped (runs in the io_uring pass of scripts/test)");
        return false;
    }
    if !super::require_root(test) {
        return false;
    }
    assert!(uring_enabled(), "{test}: STRATA_TEST_TRANSPORT=io_uring but {ENABLE_URING} is not Y");
    true
}

/// A `strata mount -f` serving a mount from a child of the test; its stderr is kept.
pub struct Daemon {
    child: Child,
    /// Mount point.
    pub mnt: PathBuf,
    log: PathBuf,
}

impl Daemon {
    /// Starts `strata mount -f -o OPTS MNT` and waits (10 s at most) until the mount is there.
    pub fn start(opts: &str, mnt: &Path, log: &Path) -> Daemon {
        std::fs::create_dir_all(mnt).unwrap();
        let child = Command::new(strata())
            .args(["mount", "-f", "-o", opts])
            .arg(mnt)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap();
        let d = Daemon { child, mnt: mnt.to_path_buf(), log: log.to_path_buf() };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !mounted(mnt) {
            assert!(Instant::now() < deadline, "the mount did not appear; log:\n{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// What the daemon printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The daemon's pid.
    pub fn pid(&self) -> rustix::process::Pid {
        rustix::process::Pid::from_raw(self.child.id() as i32).unwrap()
    }

    /// Waits for the daemon to end; `None` after `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // umount(2) with MNT_DETACH: never blocks on a daemon that stopped answering.
        if mounted(&self.mnt) {
            let _ = rustix::mount::unmount(&self.mnt, rustix::mount::UnmountFlags::DETACH);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `p` is a mount point now.
/// (`p` as mountinfo spells it: absolute, no symlinks; never stat'ed, so a dead mount cannot
/// block it.)
pub fn mounted(p: &Path) -> bool {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.split(' ').nth(4) == p.to_str())
}
