//! Stopping a container: SIGTERM to its PID 1, SIGKILL if it has not ended after the grace
//! period, then waiting for the monitor to record the end and unmount the rootfs.

use std::path::Path;
use std::time::Duration;

use super::record::{Container, RecordError, Status};
use super::state;
use crate::sys::ns;

/// What went wrong stopping a container.
#[derive(Debug, thiserror::Error)]
pub enum StopError {
    /// The record could not be read or written.
    #[error(transparent)]
    Record(#[from] RecordError),
    /// The process did not end even after SIGKILL.
    #[error("container {0} did not stop")]
    Stuck(String),
}

/// How long the monitor gets to unmount and record the end after PID 1 is gone.
const CLEANUP: Duration = Duration::from_secs(10);

/// Stops `c` (nothing to do if it is not running); returns its record afterwards.
pub fn stop(root: &Path, c: &Container, grace: Duration) -> Result<Container, StopError> {
    let c = state::refresh(root, c)?;
    if c.state.status != Status::Running {
        return Ok(c);
    }
    signal(&c, libc::SIGTERM);
    let (c, done) = state::wait_stopped(root, &c, grace)?;
    if done {
        return Ok(c);
    }
    kill(root, &c)
}

/// Kills `c` with SIGKILL and waits for its monitor to record the end.
pub fn kill(root: &Path, c: &Container) -> Result<Container, StopError> {
    signal(c, libc::SIGKILL);
    match state::wait_stopped(root, c, CLEANUP)? {
        (c, true) => Ok(c),
        (c, false) => Err(StopError::Stuck(c.name)),
    }
}

fn signal(c: &Container, sig: i32) {
    if let Some(pid) = c.state.pid.filter(|_| state::is_alive(c)) {
        let _ = ns::kill(pid, sig);
    }
}
