//! The io_uring transport at its edges: unmounted under load, its daemon killed under load, and
//! more CPUs (queues) than requests in flight. Each is bounded by a timeout: a hang or a lost
//! reply fails the test instead of blocking it. They run in the io_uring pass of `scripts/test`
//! (see `common::uring`); the union suite runs there too, on io_uring.

mod common;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::uring::{Daemon, mounted, require_io_uring};

/// How long a worker may take to come back once the mount goes, and a daemon to end.
const TEARDOWN: Duration = Duration::from_secs(15);
/// Files in the lower layer, each holding its own name.
const FILES: usize = 40;

/// Held by the tests that load the machine and by the one whose count depends on an unloaded
/// machine (the tests of one binary run in parallel).
static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn heavy() -> std::sync::MutexGuard<'static, ()> {
    HEAVY.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn tmp() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("strata-uring-").tempdir_in("/tmp").unwrap()
}

/// A lower layer (`f0`..: files holding their names, `d/` with a few entries), an upper and a
/// work dir; returns the `-o` options of a mount on io_uring.
fn setup(t: &Path) -> String {
    let l = t.join("l");
    std::fs::create_dir_all(l.join("d")).unwrap();
    for i in 0..FILES {
        std::fs::write(l.join(format!("f{i}")), format!("f{i}")).unwrap();
    }
    for i in 0..5 {
        std::fs::write(l.join(format!("d/e{i}")), "").unwrap();
    }
    for d in ["u", "w"] {
        std::fs::create_dir_all(t.join(d)).unwrap();
    }
    let p = |d: &str| t.join(d).display().to_string();
    format!("lowerdir={},upperdir={},workdir={},io_uring=on", p("l"), p("u"), p("w"))
}

/// Starts the daemon and checks it serves through io_uring.
fn start(t: &Path) -> Daemon {
    let opts = setup(t);
    let d = Daemon::start(&opts, &t.join("m"), &t.join("log"));
    // The line comes once the session is made, just after the mount appears.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !d.log().contains("transport: ") && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = d.log();
    assert!(log.contains("transport: io_uring ("), "not on io_uring:\n{log}");
    d
}

/// One round of a worker on `mnt`: lookups, reads (checked), a listing, a file made, written,
/// read back and removed. `Err` names what failed or read wrong.
fn round(mnt: &Path, worker: usize, n: u64) -> Result<(), String> {
    let i = (n as usize + worker) % FILES;
    let f = mnt.join(format!("f{i}"));
    std::fs::metadata(&f).map_err(|e| format!("stat f{i}: {e}"))?;
    let got = std::fs::read(&f).map_err(|e| format!("read f{i}: {e}"))?;
    if got != format!("f{i}").as_bytes() {
        return Err(format!("f{i} reads {:?}", String::from_utf8_lossy(&got)));
    }
    let listed = std::fs::read_dir(mnt.join("d")).map_err(|e| format!("readdir: {e}"))?.count();
    if listed != 5 {
        return Err(format!("d lists {listed} entries"));
    }
    let w = mnt.join(format!("w{worker}"));
    let data = format!("{worker}:{n}");
    std::fs::write(&w, &data).map_err(|e| format!("write w{worker}: {e}"))?;
    let back = std::fs::read(&w).map_err(|e| format!("read w{worker}: {e}"))?;
    if back != data.as_bytes() {
        return Err(format!("w{worker} reads {:?}, wrote {data:?}", String::from_utf8_lossy(&back)));
    }
    std::fs::remove_file(&w).map_err(|e| format!("unlink w{worker}: {e}"))
}

/// Workers running rounds on a mount until it goes.
struct Load {
    /// Set before the mount is taken away: errors from then on are expected.
    going: Arc<AtomicBool>,
    rounds: Vec<Arc<AtomicU64>>,
    done: mpsc::Receiver<(usize, Result<(), String>)>,
}

impl Load {
    fn start(mnt: &Path, workers: usize) -> Load {
        let going = Arc::new(AtomicBool::new(false));
        let (tx, done) = mpsc::channel();
        let rounds: Vec<Arc<AtomicU64>> = (0..workers).map(|_| Arc::new(AtomicU64::new(0))).collect();
        for (w, count) in rounds.iter().enumerate() {
            let (mnt, going, count, tx) = (mnt.to_path_buf(), going.clone(), count.clone(), tx.clone());
            std::thread::spawn(move || {
                let res = loop {
                    match round(&mnt, w, count.load(Ordering::Relaxed)) {
                        Ok(()) => count.fetch_add(1, Ordering::Relaxed),
                        Err(_) if going.load(Ordering::Relaxed) => break Ok(()),
                        Err(e) => break Err(e),
                    };
                };
                let _ = tx.send((w, res));
            });
        }
        Load { going, rounds, done }
    }

    /// Every worker completes rounds within `window`, without error: no reply is lost.
    fn assert_progress(&self, window: Duration) {
        let before: Vec<u64> = self.rounds.iter().map(|c| c.load(Ordering::Relaxed)).collect();
        std::thread::sleep(window);
        if let Ok((w, res)) = self.done.try_recv() {
            panic!("worker {w} stopped while the mount was up: {res:?}");
        }
        for (w, c) in self.rounds.iter().enumerate() {
            let now = c.load(Ordering::Relaxed);
            assert!(
                now > before[w],
                "worker {w} made no progress in {window:?} (a reply lost?): {now} rounds; waiting in FUSE:\n{}",
                fuse_waits()
            );
        }
    }

    /// Every worker comes back within `TEARDOWN` of the mount going.
    fn assert_all_return(self) {
        let deadline = Instant::now() + TEARDOWN;
        for _ in 0..self.rounds.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.done.recv_timeout(left) {
                Ok((_, Ok(()))) => {}
                Ok((w, Err(e))) => panic!("worker {w}: {e}"),
                Err(_) => panic!("a worker is still blocked {TEARDOWN:?} after the mount went"),
            }
        }
    }
}

/// A daemon on io_uring with 8 workers that all made progress, about to lose its mount.
fn under_load() -> (tempfile::TempDir, Daemon, Load) {
    let t = tmp();
    let d = start(t.path());
    let load = Load::start(&d.mnt, 8);
    load.assert_progress(Duration::from_millis(1500));
    load.going.store(true, Ordering::Relaxed);
    (t, d, load)
}

#[test]
fn root_uring_lazy_unmount_under_load_ends_every_request_and_the_daemon() {
    let _alone = heavy();
    let test = "root_uring_lazy_unmount_under_load_ends_every_request_and_the_daemon";
    if !require_io_uring(test) {
        return;
    }
    let (_t, mut d, load) = under_load();
    // A plain umount(2) stays EBUSY while requests hold the mount: detach it (`strata umount
    // --lazy`); the connection ends once the last request and open file let go of it.
    rustix::mount::unmount(&d.mnt, rustix::mount::UnmountFlags::DETACH).unwrap();
    load.assert_all_return();
    let status = d.wait(TEARDOWN).unwrap_or_else(|| panic!("daemon still running; log:\n{}", d.log()));
    assert!(status.success(), "{status:?}; log:\n{}", d.log());
    assert!(!mounted(&d.mnt));
}

#[test]
fn root_uring_sigkill_under_load_fails_requests_instead_of_hanging() {
    let _alone = heavy();
    let test = "root_uring_sigkill_under_load_fails_requests_instead_of_hanging";
    if !require_io_uring(test) {
        return;
    }
    let (_t, mut d, load) = under_load();
    rustix::process::kill_process(d.pid(), rustix::process::Signal::KILL).unwrap();
    d.wait(TEARDOWN).expect("the killed daemon did not end");
    load.assert_all_return();
    // The connection is gone: the mount answers at once (ENOTCONN) until it is detached.
    let err = std::fs::metadata(d.mnt.join("f0")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTCONN), "{err}");
    rustix::mount::unmount(&d.mnt, rustix::mount::UnmountFlags::DETACH).unwrap();
}

/// Kernel stacks of this process's threads waiting in FUSE.
fn fuse_waits() -> String {
    let mut out = String::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let stack = std::fs::read_to_string(task.path().join("stack")).unwrap_or_default();
        if stack.contains("fuse") {
            out.push_str(&format!("thread {}:\n{stack}\n", task.file_name().to_string_lossy()));
        }
    }
    out
}

/// CPUs the test may run on.
fn cpus() -> Vec<usize> {
    let set = rustix::thread::sched_getaffinity(None).unwrap();
    (0..rustix::thread::CpuSet::MAX_CPU).filter(|&c| set.is_set(c)).collect()
}

/// One thread calling `step(cpu, n)` `times` times from each CPU in turn (pinned: one request
/// in flight, from that CPU's queue); its result arrives on the channel.
fn on_each_cpu(
    times: u64,
    step: impl Fn(usize, u64) -> Result<(), String> + Send + 'static,
) -> mpsc::Receiver<Result<(), String>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let res = (|| {
            for cpu in cpus() {
                let mut one = rustix::thread::CpuSet::new();
                one.set(cpu);
                rustix::thread::sched_setaffinity(None, &one).map_err(|e| format!("pin to {cpu}: {e}"))?;
                for n in 0..times {
                    step(cpu, n).map_err(|e| format!("cpu {cpu}, step {n}: {e}"))?;
                }
            }
            Ok::<(), String>(())
        })();
        let _ = tx.send(res);
    });
    rx
}

/// [`on_each_cpu`] making rounds on `mnt`.
fn rounds_on_each_cpu(mnt: &Path, rounds: u64) -> mpsc::Receiver<Result<(), String>> {
    let mnt: PathBuf = mnt.to_path_buf();
    on_each_cpu(rounds, move |cpu, n| round(&mnt, cpu, n))
}

#[test]
fn root_uring_one_request_at_a_time_from_each_cpu_with_idle_queues() {
    let test = "root_uring_one_request_at_a_time_from_each_cpu_with_idle_queues";
    if !require_io_uring(test) {
        return;
    }
    let t = tmp();
    let d = start(t.path());
    // One thread, one request in flight, on each CPU in turn: every other queue is idle, and
    // each queue serves requests with the others never used.
    match rounds_on_each_cpu(&d.mnt, 200).recv_timeout(Duration::from_secs(60)) {
        Ok(res) => res.unwrap(),
        Err(_) => panic!("sequential requests did not finish in 60 s (a reply lost?)"),
    }
    drop(d);
}

/// The io_uring pass exists: `scripts/test` (what CI runs) turns `enable_uring` on and runs the
/// union suite and these tests with `STRATA_TEST_TRANSPORT=io_uring`, and restores the setting.
#[test]
fn scripts_test_runs_the_io_uring_pass() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let script = std::fs::read_to_string(root.join("scripts/test")).unwrap();
    for needed in [
        "STRATA_TEST_TRANSPORT=io_uring cargo test --test union --test uring",
        "echo Y > \"$uring\"",
        "trap 'echo \"$was\" > \"$uring\"' EXIT",
    ] {
        assert!(script.contains(needed), "scripts/test lacks {needed:?}");
    }
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(ci.contains("./scripts/test"), ".ci/run does not run scripts/test");
}

/// Each thread of `pid`: its name and its `/proc/PID/task/TID` directory.
fn threads(pid: i32) -> Vec<(String, PathBuf)> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap().flatten();
    tasks
        .map(|t| (std::fs::read_to_string(t.path().join("comm")).unwrap_or_default().trim().to_string(), t.path()))
        .collect()
}

/// The scheduling policy of each `fuser-uring-*` thread of `pid` (`/proc/…/stat` field 41:
/// 0 SCHED_OTHER, 5 SCHED_IDLE).
fn ring_policies(pid: i32) -> Vec<(String, u32)> {
    let rings = threads(pid).into_iter().filter(|(comm, _)| comm.starts_with("fuser-uring"));
    rings
        .map(|(comm, dir)| {
            let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
            let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
            (comm, after.split_whitespace().nth(41 - 3).and_then(|f| f.parse().ok()).unwrap_or(u32::MAX))
        })
        .collect()
}

/// While the machine is otherwise idle the ring threads may run as `SCHED_IDLE` (a woken caller
/// then stays on its CPU); with every CPU wanted by other tasks they must not: they go back to
/// `SCHED_OTHER`, and requests made from each CPU in turn are served at once, not left behind
/// busy tasks.
#[test]
fn root_uring_ring_threads_yield_to_nothing_on_a_busy_machine() {
    let _alone = heavy();
    let test = "root_uring_ring_threads_yield_to_nothing_on_a_busy_machine";
    if !require_io_uring(test) {
        return;
    }
    let t = tmp();
    let d = start(t.path());
    let stop = Arc::new(AtomicBool::new(false));
    let hogs: Vec<_> = cpus()
        .into_iter()
        .map(|cpu| {
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut one = rustix::thread::CpuSet::new();
                one.set(cpu);
                let _ = rustix::thread::sched_setaffinity(None, &one);
                let mut x = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(50));
    let res = rounds_on_each_cpu(&d.mnt, 100).recv_timeout(Duration::from_secs(60));
    let policies = ring_policies(d.pid().as_raw_nonzero().get());
    stop.store(true, Ordering::Relaxed);
    for h in hogs {
        h.join().unwrap();
    }
    match res {
        Ok(res) => res.unwrap(),
        Err(_) => panic!("requests behind CPU-bound tasks did not finish in 60 s"),
    }
    assert!(!policies.is_empty(), "no ring thread found");
    for (name, policy) in &policies {
        assert_eq!(*policy, 0, "{name} is not SCHED_OTHER with every CPU busy: {policies:?}");
    }
    drop(d);
}

/// A filesystem of one file, `/x`, that answers every LOOKUP and GETATTR from a thread of its
/// own: the reply is committed to the ring by a thread that is not the ring's.
struct LateReplies;

fn late_attr(ino: u64) -> fuser::FileAttr {
    let t = std::time::UNIX_EPOCH;
    fuser::FileAttr {
        ino: fuser::INodeNo(ino),
        size: if ino == 1 { 0 } else { 1 },
        blocks: 0,
        atime: t,
        mtime: t,
        ctime: t,
        crtime: t,
        kind: if ino == 1 { fuser::FileType::Directory } else { fuser::FileType::RegularFile },
        perm: if ino == 1 { 0o755 } else { 0o644 },
        nlink: 1,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: 4096,
        flags: 0,
    }
}

impl fuser::Filesystem for LateReplies {
    fn lookup(&self, _req: &fuser::Request, parent: fuser::INodeNo, name: &std::ffi::OsStr, reply: fuser::ReplyEntry) {
        let found = parent.0 == 1 && name == "x";
        std::thread::spawn(move || {
            if found {
                // No caching: every stat of /x comes back as a LOOKUP.
                reply.entry(&Duration::ZERO, &late_attr(2), fuser::Generation(0));
            } else {
                reply.error(fuser::Errno::ENOENT);
            }
        });
    }

    fn getattr(
        &self,
        _req: &fuser::Request,
        ino: fuser::INodeNo,
        _fh: Option<fuser::FileHandle>,
        reply: fuser::ReplyAttr,
    ) {
        std::thread::spawn(move || reply.attr(&Duration::ZERO, &late_attr(ino.0)));
    }
}

/// Replies made on another thread than the ring's: committed under the queue's lock while the
/// ring's thread waits, none lost (every stat answers, from each CPU's queue, within a bound).
#[test]
fn root_uring_replies_from_another_thread_reach_the_caller() {
    let test = "root_uring_replies_from_another_thread_reach_the_caller";
    if !require_io_uring(test) {
        return;
    }
    let t = tmp();
    let mnt = t.path().join("m");
    std::fs::create_dir_all(&mnt).unwrap();
    let mut cfg = fuser::Config::default();
    cfg.io_uring = fuser::IoUringMode::Required;
    cfg.n_threads = Some(1);
    let session = fuser::Session::new(LateReplies, &mnt, &cfg).unwrap().spawn().unwrap();
    let target = mnt.join("x");
    let rx = on_each_cpu(300, move |_, _| {
        let m = std::fs::metadata(&target).map_err(|e| format!("stat: {e}"))?;
        if m.len() != 1 { Err(format!("size {}", m.len())) } else { Ok(()) }
    });
    let res = rx.recv_timeout(Duration::from_secs(60));
    let on_ring = !ring_policies(std::process::id() as i32).is_empty();
    match res {
        Ok(res) => res.unwrap(),
        Err(_) => panic!("stats answered from other threads did not finish in 60 s (a reply lost?)"),
    }
    assert!(on_ring, "the session serves no io_uring queue");
    session.umount_and_join().unwrap();
}

/// The `/dev/fuse` reader threads of daemon `pid` (not the rings'): (name, voluntary switches).
fn dev_fuse_readers(pid: i32) -> Vec<(String, u64)> {
    let readers = threads(pid).into_iter().filter(|(c, _)| c.starts_with("fuser-") && !c.starts_with("fuser-uring"));
    readers
        .map(|(comm, dir)| {
            let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
            let switches = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:"));
            (comm, switches.and_then(|v| v.trim().parse().ok()).unwrap_or(u64::MAX))
        })
        .collect()
}

/// While the rings serve the requests, `/dev/fuse` carries FORGETs: every removed file sends
/// one. One reader is left for them, and it is not woken once per FORGET (a context switch per
/// removed file) but rests after one so the next arrive together as a BATCH_FORGET. The files'
/// removal, and the daemon's answers after it, are checked too.
#[test]
fn root_uring_forgets_of_removed_files_wake_the_dev_fuse_reader_in_batches() {
    let _alone = heavy();
    let test = "root_uring_forgets_of_removed_files_wake_the_dev_fuse_reader_in_batches";
    if !require_io_uring(test) {
        return;
    }
    const N: usize = 400;
    let t = tmp();
    let d = start(t.path());
    let dir = d.mnt.join("doomed");
    std::fs::create_dir(&dir).unwrap();
    for i in 0..N {
        std::fs::write(dir.join(format!("n{i}")), "x").unwrap();
    }
    let pid = d.pid().as_raw_nonzero().get();
    let before = dev_fuse_readers(pid);
    assert_eq!(before.len(), 1, "one /dev/fuse reader beside the rings: {before:?}");
    for i in 0..N {
        std::fs::remove_file(dir.join(format!("n{i}"))).unwrap();
    }
    // The last FORGETs reach the reader within its rest.
    std::thread::sleep(Duration::from_millis(100));
    let after = dev_fuse_readers(pid);
    let woken = after[0].1.saturating_sub(before[0].1);
    assert!(woken < (N / 4) as u64, "the /dev/fuse reader was woken {woken} times for {N} removed files");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
    assert_eq!(std::fs::read_to_string(d.mnt.join("f3")).unwrap(), "f3");
    drop(d);
}
