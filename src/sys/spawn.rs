//! Starting a helper program that lives exactly as long as the process that starts it: the
//! child gets `SIGKILL` when its parent dies (`PR_SET_PDEATHSIG`, set between fork and exec,
//! with the race against a parent that died meanwhile closed), and the descriptors it is given
//! become its 3, 4, … (the numbers a helper is told on its command line, e.g.
//! `--netns /proc/self/fd/3`).
//!
//! The death signal follows the *thread* that forked: start helpers from a thread that lives as
//! long as the process (the main thread).

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};

/// Where the passed descriptors are parked before they are put in place (above any the child
/// may already hold at 3, 4, …).
const PARK: i32 = 512;

/// Spawns `cmd` tied to the caller's life, with `fds` as descriptors 3, 4, ….
pub fn spawn_tied(cmd: &mut Command, fds: &[BorrowedFd<'_>]) -> io::Result<Child> {
    let parent = std::process::id() as libc::pid_t;
    let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid, fcntl, dup2, close); it allocates nothing (`raw` is read only).
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) == -1 {
                return Err(io::Error::last_os_error());
            }
            // The parent may have died before the signal was asked for.
            if libc::getppid() != parent {
                return Err(io::Error::from_raw_os_error(libc::ESRCH));
            }
            // Park every descriptor out of the way first, so that putting one at 3 cannot close
            // another that happens to be there.
            for (i, fd) in raw.iter().enumerate() {
                let parked = PARK + i as i32;
                if libc::dup2(*fd, parked) == -1 {
                    return Err(io::Error::last_os_error());
                }
            }
            for i in 0..raw.len() {
                let parked = PARK + i as i32;
                // dup2 clears close-on-exec on the new descriptor.
                if libc::dup2(parked, 3 + i as i32) == -1 {
                    return Err(io::Error::last_os_error());
                }
                libc::close(parked);
            }
            Ok(())
        });
    }
    cmd.spawn()
}
