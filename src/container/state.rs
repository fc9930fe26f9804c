//! Whether a container's process still runs, and making the record agree when it does not
//! (its monitor was killed, the machine restarted): a record that says running for a process
//! that is gone becomes exited, and its rootfs mount, if still there, is taken down.

use std::path::Path;
use std::time::{Duration, Instant};

use super::record::{self, Container, RecordError, Result, Status};
use crate::sys::{mount, ns};

/// Whether `pid` runs and is the process that started at `start` (when known).
fn same_process(pid: Option<i32>, start: Option<u64>) -> bool {
    let Some(pid) = pid else { return false };
    ns::is_running(pid) && start.is_none_or(|t| ns::start_time(pid) == Some(t))
}

/// Whether the process recorded for `c` is alive (the same process: its start time matches).
pub fn is_alive(c: &Container) -> bool {
    same_process(c.state.pid, c.state.pid_start)
}

/// Whether the monitor recorded for `c` is alive.
pub fn monitor_alive(c: &Container) -> bool {
    same_process(c.state.monitor_pid, c.state.monitor_start)
}

/// The record of `c`, corrected if it says running for a process and monitor that are gone.
pub fn refresh(root: &Path, c: &Container) -> Result<Container> {
    if c.state.status != Status::Running || is_alive(c) || monitor_alive(c) {
        return Ok(c.clone());
    }
    let merged = c.dir(root).join("merged");
    if mount::is_mount_point(&merged) {
        let _ = mount::unmount(&merged, true);
    }
    record::update(root, &c.id, |c| {
        if c.state.status == Status::Running && !is_alive(c) && !monitor_alive(c) {
            c.state.status = Status::Exited;
            c.state.pid = None;
            c.state.pid_start = None;
            c.state.monitor_pid = None;
            c.state.monitor_start = None;
            c.state.finished = Some(record::now());
            c.state.error = Some("the container's monitor ended before it".into());
        }
    })
}

/// Waits until `c`'s monitor has recorded the end (or both it and the process are gone), up
/// to `timeout`; returns the record, and whether it is no longer running.
pub fn wait_stopped(root: &Path, c: &Container, timeout: Duration) -> Result<(Container, bool)> {
    let deadline = Instant::now() + timeout;
    loop {
        let now = match record::load(&c.dir(root)) {
            Ok(now) => refresh(root, &now)?,
            // Removed by its monitor (`--rm`): it has stopped for good.
            Err(RecordError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                return Ok((c.clone(), true));
            }
            Err(e) => return Err(e),
        };
        if now.state.status != Status::Running {
            return Ok((now, true));
        }
        if Instant::now() >= deadline {
            return Ok((now, false));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::record::State;

    #[test]
    fn a_dead_pid_is_not_alive() {
        let mut c: Container = serde_json::from_value(serde_json::json!({
            "id": "a".repeat(64), "name": "n", "image": "i", "image_id": "sha256:x", "created": record::now(),
            "command": ["sh"], "state": State::default()
        }))
        .unwrap();
        assert!(!is_alive(&c));
        c.state.pid = Some(std::process::id() as i32);
        assert!(is_alive(&c));
        c.state.pid_start = Some(1);
        assert!(!is_alive(&c), "a reused pid is not our process");
        c.state.pid = Some(i32::MAX);
        assert!(!is_alive(&c));
    }
}
