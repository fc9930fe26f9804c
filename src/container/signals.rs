//! Signals aimed at a container: the `strata run`/`exec` client and the monitor pass on what
//! they receive (Ctrl-C, SIGTERM, ...) to the container's process; a window-size change is
//! passed to the pty instead. Zombies are reaped by the monitor, which waits for PID 1.
//!
//! The signals are blocked ([`hold`]) before the client forks, so one that comes before the
//! container's pid is known waits, pending, and is passed on once a [`Forwarder`] runs.

use std::io;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering};

use signal_hook::consts::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::{Handle, Signals};

use crate::sys::{creds, ns};

/// The signals passed on to the container.
pub const FORWARDED: [i32; 6] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2];

/// Holds the [`FORWARDED`] signals back (blocked, pending) in the calling thread until a
/// [`Forwarder`] starts; call it before forking and before starting threads.
pub fn hold() {
    creds::block_signals(&FORWARDED, true);
}

/// Passes signals on until dropped.
pub struct Forwarder {
    handle: Handle,
    thread: Option<std::thread::JoinHandle<()>>,
    target: Arc<AtomicI32>,
}

impl Forwarder {
    /// Starts passing [`FORWARDED`] signals to `pid` (0: held until [`Forwarder::set_target`]),
    /// and SIGWINCH to the pty `master` as a new size, if given.
    pub fn start(pid: i32, master: Option<OwnedFd>) -> io::Result<Forwarder> {
        let mut sigs: Vec<i32> = FORWARDED.to_vec();
        if master.is_some() {
            sigs.push(SIGWINCH);
        }
        let mut signals = Signals::new(&sigs)?;
        let handle = signals.handle();
        let target = Arc::new(AtomicI32::new(pid));
        let t = target.clone();
        let thread = std::thread::Builder::new().name("signals".into()).spawn(move || {
            for sig in signals.forever() {
                match (&master, sig) {
                    (Some(m), SIGWINCH) => super::tty::copy_size(m),
                    _ => {
                        let pid = t.load(Ordering::SeqCst);
                        if pid > 0 {
                            let _ = ns::kill(pid, sig);
                        }
                    }
                }
            }
        })?;
        // Handlers are in place: what came while held is delivered now.
        creds::block_signals(&FORWARDED, false);
        Ok(Forwarder { handle, thread: Some(thread), target })
    }

    /// Sends signals to `pid` from now on.
    pub fn set_target(&self, pid: i32) {
        self.target.store(pid, Ordering::SeqCst);
    }
}

impl Drop for Forwarder {
    fn drop(&mut self) {
        self.handle.close();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
