//! Where the scheduler puts a caller woken by a ring reply.
//!
//! A FUSE-over-io_uring request is served by the ring thread pinned to the CPU that made it, so
//! the caller blocks and its own CPU runs the thread. The reply wakes the caller while that
//! thread still runs: the CPU is busy, and when another CPU is idle the scheduler wakes the
//! caller there instead (`select_idle_sibling`). The caller's next request then lands on that
//! other CPU's queue, whose thread is asleep on a CPU that was idle: every request of a single
//! caller pays a cross-CPU wake-up, which on a virtual machine costs more than the request (on
//! the 2-CPU test VM: 25–36 µs per request instead of 12 µs with both on one CPU).
//!
//! The scheduler counts a CPU that runs only `SCHED_IDLE` tasks as idle when it places a wakee.
//! So while the machine is otherwise idle, the ring threads run as `SCHED_IDLE`: the woken caller
//! stays on its CPU (and preempts the ring thread at once), its next request stays on that CPU's
//! queue, and the whole exchange stays on one CPU. While other tasks want the CPUs, a
//! `SCHED_IDLE` thread would yield to them with a request in hand (and no CPU is idle anyway, so
//! callers are woken where they were): the threads go back to `SCHED_OTHER`. The test is the
//! kernel's count of runnable tasks (`/proc/loadavg`, fourth field), taken at most every
//! [`PERIOD_NS`] by whichever thread finds the sample stale; each thread then switches its own
//! policy when it differs.
//!
//! Leaving `SCHED_IDLE` needs `CAP_SYS_NICE` (or an `RLIMIT_NICE` that allows nice 0): a daemon
//! without it never enters `SCHED_IDLE` ([`Placement::new`] tries both ways on a scratch thread).

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::AtomicU64;
use std::sync::atomic::Ordering;

use log::debug;

/// How long a sample of the runnable count is trusted.
const PERIOD_NS: u64 = 10_000_000;

/// Shared by a session's ring threads.
#[derive(Debug)]
pub(crate) struct Placement {
    /// `/proc/loadavg`, kept open (None: the trick is off).
    loadavg: Option<File>,
    /// When the sample below was taken (CLOCK_MONOTONIC ns); 0: never.
    sampled: AtomicU64,
    /// Whether the machine was otherwise idle at the last sample.
    quiet: AtomicBool,
}

impl Placement {
    /// On when this process may leave `SCHED_IDLE` again and `/proc/loadavg` can be read.
    pub(crate) fn new() -> Placement {
        let loadavg = match (can_leave_idle(), File::open("/proc/loadavg")) {
            (true, Ok(f)) => Some(f),
            (false, _) => {
                debug!("io_uring threads stay SCHED_OTHER: SCHED_IDLE could not be left again");
                None
            }
            (_, Err(e)) => {
                debug!("io_uring threads stay SCHED_OTHER: /proc/loadavg: {e}");
                None
            }
        };
        Placement {
            loadavg,
            sampled: AtomicU64::new(0),
            quiet: AtomicBool::new(false),
        }
    }

    /// Whether a ring thread should run as `SCHED_IDLE` now (called before each wait).
    pub(crate) fn idle_wanted(&self) -> bool {
        let Some(loadavg) = &self.loadavg else {
            return false;
        };
        let now = monotonic_ns();
        let last = self.sampled.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= PERIOD_NS
            && self
                .sampled
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            // The sampling thread itself is running: "quiet" is nothing else runnable.
            let quiet = runnable(loadavg).is_some_and(|n| n <= 1);
            self.quiet.store(quiet, Ordering::Relaxed);
        }
        self.quiet.load(Ordering::Relaxed)
    }
}

/// The calling thread's scheduling policy: `SCHED_IDLE` if `idle`, else `SCHED_OTHER`.
pub(crate) fn set_idle(idle: bool) -> io::Result<()> {
    let policy = if idle {
        libc::SCHED_IDLE
    } else {
        libc::SCHED_OTHER
    };
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param for the call's duration; pid 0 is this thread.
    if unsafe { libc::sched_setscheduler(0, policy, &param) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Tries `SCHED_IDLE` and back on a scratch thread (a thread's policy is its own).
fn can_leave_idle() -> bool {
    std::thread::spawn(|| set_idle(true).is_ok() && set_idle(false).is_ok())
        .join()
        .unwrap_or(false)
}

/// The runnable-task count of `/proc/loadavg` ("0.52 0.58 0.59 1/312 12345").
fn runnable(loadavg: &File) -> Option<u64> {
    let mut buf = [0u8; 128];
    let n = loadavg.read_at(&mut buf, 0).ok()?;
    let text = std::str::from_utf8(&buf[..n]).ok()?;
    let field = text.split_ascii_whitespace().nth(3)?;
    field.split('/').next()?.parse().ok()
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}
