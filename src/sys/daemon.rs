//! Going to the background once a mount is ready: fork, a pipe to report readiness, setsid.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};

/// Which side of the fork we are on.
pub enum Forked {
    /// The parent: read the child's report from here.
    Parent(File),
    /// The child: report readiness (or an error) through this.
    Child(Ready),
}

/// The child's end of the readiness pipe.
pub struct Ready(File);

impl Ready {
    /// Tells the parent the mount is ready; the child then detaches its stdio.
    pub fn ok(mut self) {
        let _ = self.0.write_all(b"ok\n");
        detach_stdio();
    }

    /// Tells the parent why the mount failed.
    pub fn fail(mut self, msg: &str) {
        let _ = self.0.write_all(format!("error: {msg}\n").as_bytes());
    }
}

/// Forks. Must be called before any thread is started.
pub fn fork_with_report() -> std::io::Result<Forked> {
    let (r, w) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)?;
    // SAFETY: the process is single-threaded here (called before any thread exists), so the
    // child may run arbitrary code after fork.
    let pid = unsafe { libc::fork() };
    match pid {
        -1 => Err(std::io::Error::last_os_error()),
        0 => {
            drop(r);
            let _ = rustix::process::setsid();
            Ok(Forked::Child(Ready(File::from(w))))
        }
        _ => {
            drop(w);
            Ok(Forked::Parent(File::from(r)))
        }
    }
}

/// Waits for the child's report: `Ok(())` when the mount is ready, else the child's message.
pub fn wait_report(mut r: File) -> Result<(), String> {
    let mut s = String::new();
    let _ = r.read_to_string(&mut s);
    match s.lines().next() {
        Some("ok") => Ok(()),
        Some(line) => Err(line.strip_prefix("error: ").unwrap_or(line).to_string()),
        None => Err("the mount process exited without mounting".into()),
    }
}

/// Points stdin, stdout and stderr at /dev/null.
fn detach_stdio() {
    let Ok(null) = std::fs::OpenOptions::new().read(true).write(true).open("/dev/null") else {
        return;
    };
    let null: OwnedFd = null.into();
    for fd in 0..3 {
        // SAFETY: dup2 onto the standard descriptors, which this process owns.
        unsafe { libc::dup2(null.as_raw_fd(), fd) };
    }
}
