//! Jobs run on a few threads at once (layers downloaded or uploaded in parallel): the first
//! error wins, and jobs not yet started then are not started.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

/// Runs `work` on each job with up to `threads` threads; returns the first error.
pub fn each<T: Send, E: Send>(jobs: Vec<T>, threads: usize, work: impl Fn(T) -> Result<(), E> + Sync) -> Result<(), E> {
    let threads = threads.max(1).min(jobs.len());
    let queue = Mutex::new(VecDeque::from(jobs));
    let failed = AtomicBool::new(false);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(job) = queue.lock().pop_front() else { break };
                    if let Err(e) = work(job) {
                        failed.store(true, Ordering::Relaxed);
                        first_error.lock().get_or_insert(e);
                    }
                }
            });
        }
    });
    match first_error.into_inner() {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    #[test]
    fn runs_every_job_and_stops_at_the_first_error() {
        let count = AtomicUsize::new(0);
        let r: Result<(), ()> = each((0..10).collect(), 3, |_| {
            count.fetch_add(1, Ordering::Relaxed);
            Ok(())
        });
        assert!(r.is_ok());
        assert_eq!(count.load(Ordering::Relaxed), 10);
        let count = AtomicUsize::new(0);
        let r = each((0..100).collect(), 1, |i: i32| {
            count.fetch_add(1, Ordering::Relaxed);
            if i == 2 { Err(i) } else { Ok(()) }
        });
        assert_eq!(r, Err(2));
        assert_eq!(count.load(Ordering::Relaxed), 3);
    }
}
