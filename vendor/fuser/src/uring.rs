//! FUSE over io_uring (Linux 6.14+, `FUSE_OVER_IO_URING`).
//!
//! After INIT granted the flag, the session starts one ring and one thread per possible CPU,
//! pinned to that CPU. Each thread registers `DEPTH` entries of its queue with
//! `FUSE_IO_URING_CMD_REGISTER`: a 128-byte `IORING_OP_URING_CMD` SQE on the `/dev/fuse` fd,
//! `fuse_uring_cmd_req` in the SQE's command area, and an iovec pair (the entry's
//! `fuse_uring_req_header` and its payload buffer). The kernel completes an entry's command when
//! it hands it a request made on that CPU; the thread serves it inline and answers with
//! `FUSE_IO_URING_CMD_COMMIT_AND_FETCH`, which commits the reply and waits for the next request
//! in one command. Requests the kernel keeps on `/dev/fuse` (FORGET, INTERRUPT, notification
//! replies) are still read there, by one thread that rests after a FORGET (see `session`).
//!
//! Each ring is single-issuer with deferred task work (`IORING_SETUP_SINGLE_ISSUER |
//! DEFER_TASKRUN`): created disabled, it is enabled by the thread that serves it, the only one
//! that ever submits to it, and the kernel's work for it (handing over a request) runs when that
//! thread waits instead of interrupting it.
//!
//! Layout of a request in an entry (kernel `fs/fuse/dev_uring.c`): the `fuse_in_header` at the
//! start of `in_out`, the operation's fixed-size argument in `op_in`, the rest (names, data) in
//! the payload buffer, its length in `ring_ent_in_out.payload_sz`. fuser's parser wants one
//! `/dev/fuse`-style buffer, so the three parts are copied into a per-thread buffer first (the
//! header's `len` counts all of them, which gives the size of the `op_in` part). A reply is the
//! other way round: the `fuse_out_header` in `in_out`, everything after it in the payload buffer.
//!
//! Replies made on another thread (a filesystem that answers later) are queued by that thread
//! (every push to a ring's submission queue holds the queue's lock) but submitted by the ring's
//! own thread, woken through an eventfd that its ring always has a read pending on: a command
//! belongs to the task that submits it, and the kernel cancels a task's commands when it exits,
//! so a FETCH submitted by a short-lived replying thread would be cancelled with it (the
//! requests then given to that entry fail with ECANCELED).
//!
//! While the machine is otherwise idle the serving threads run as `SCHED_IDLE`, so that a caller
//! woken by a reply stays on its CPU (see `placement`).
//!
//! Teardown: when the connection goes (unmount, abort, the daemon killed) the kernel completes
//! every waiting command with an error and fails every later commit; a thread ends when none of
//! its entries is left with the kernel.

use std::io;
use std::os::fd::AsRawFd;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::thread::ThreadId;

use io_uring::IoUring;
use io_uring::cqueue;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types;
use log::debug;
use log::error;
use log::warn;
use parking_lot::Mutex;

use crate::Filesystem;
use crate::channel::Channel;
use crate::channel::ChannelSender;
use crate::ll;
use crate::ll::Operation;
use crate::ll::fuse_abi as abi;
use crate::placement;
use crate::placement::Placement;
use crate::reply::ReplyEmpty;
use crate::reply::ReplyRaw;
use crate::request::RequestWithSender;
use crate::session::SessionEventLoop;

/// `enum fuse_uring_cmd` (include/uapi/linux/fuse.h).
const CMD_REGISTER: u32 = 1;
const CMD_COMMIT_AND_FETCH: u32 = 2;
/// `user_data` of the read pending on a queue's eventfd (entries use their index).
const WAKE: u64 = u64::MAX;

/// Entries per queue: requests a CPU's thread can hold at once. The thread serves them one at a
/// time; the others are requests made on that CPU while it works.
const DEPTH: usize = 8;

/// Sizes of `fuse_uring_req_header`'s two fixed areas (`FUSE_URING_IN_OUT_HEADER_SZ`,
/// `FUSE_URING_OP_IN_OUT_SZ`).
const IN_OUT_SZ: usize = 128;
const OP_IN_SZ: usize = 128;

/// `struct fuse_uring_ent_in_out`.
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct EntInOut {
    flags: u64,
    /// The request's `unique`, to be given back in the commit.
    commit_id: u64,
    /// Bytes used in the payload buffer (request or reply).
    payload_sz: u32,
    padding: u32,
    reserved: u64,
}

/// `struct fuse_uring_req_header`: the first buffer of an entry.
#[repr(C)]
struct ReqHeader {
    in_out: [u8; IN_OUT_SZ],
    op_in: [u8; OP_IN_SZ],
    ent: EntInOut,
}

/// `struct fuse_uring_cmd_req`, in the SQE's command area.
#[repr(C)]
#[derive(Default)]
struct CmdReq {
    flags: u64,
    commit_id: u64,
    qid: u16,
    padding: [u8; 6],
}

const _: () = assert!(size_of::<ReqHeader>() == 288);
const _: () = assert!(size_of::<CmdReq>() == 24);

/// Which transport a session serves requests on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Every request is read from `/dev/fuse`.
    DevFuse,
    /// Requests go through one io_uring queue per CPU (`queues` of them).
    IoUring {
        /// Number of queues (one per possible CPU).
        queues: usize,
    },
}

impl std::fmt::Display for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::DevFuse => write!(f, "/dev/fuse"),
            Transport::IoUring { queues: 1 } => write!(f, "io_uring (1 queue)"),
            Transport::IoUring { queues } => write!(f, "io_uring ({queues} queues)"),
        }
    }
}

/// Whether a session asks the kernel for the io_uring transport.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IoUringMode {
    /// Never: every request is read from `/dev/fuse`.
    #[default]
    Off,
    /// When the kernel offers it at INIT.
    Auto,
    /// Always: the session fails at INIT (or when its queues cannot be registered) if the kernel
    /// cannot.
    Required,
}

/// The sizes the kernel checks an entry's buffers against, known after INIT.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RingParams {
    /// Queues the kernel expects: one per possible CPU.
    pub(crate) queues: usize,
    /// Payload buffer size: at least the kernel's `max(FUSE_MIN_READ_BUFFER, max_write,
    /// max_pages * PAGE_SIZE)`.
    pub(crate) payload: usize,
}

/// Number of possible CPUs (the kernel makes one queue for each; every one must be registered
/// before the kernel uses the ring).
pub(crate) fn possible_cpus() -> io::Result<usize> {
    let list = std::fs::read_to_string("/sys/devices/system/cpu/possible")?;
    let mut max = None;
    for range in list.trim().split(',') {
        let last = range.rsplit('-').next().unwrap_or(range);
        let n: usize = last
            .parse()
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "bad CPU list"))?;
        max = max.max(Some(n));
    }
    max.map(|m| m + 1)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "empty CPU list"))
}

/// One registered entry: its two buffers, written by the kernel and by the thread that owns
/// the entry between the command's completion and its next commit, so reached through raw
/// pointers only (allocated here, freed on drop).
struct Entry {
    header: *mut ReqHeader,
    /// `payload_len` bytes, zeroed by the allocator (untouched pages cost no memory).
    payload: *mut u8,
    payload_len: usize,
    iov: Box<[libc::iovec; 2]>,
}

impl Entry {
    fn new(payload_len: usize) -> Entry {
        let header = Box::into_raw(Box::new(ReqHeader {
            in_out: [0; IN_OUT_SZ],
            op_in: [0; OP_IN_SZ],
            ent: EntInOut::default(),
        }));
        let payload = Box::into_raw(vec![0u8; payload_len].into_boxed_slice()).cast::<u8>();
        let iov = Box::new([
            libc::iovec {
                iov_base: header.cast(),
                iov_len: size_of::<ReqHeader>(),
            },
            libc::iovec {
                iov_base: payload.cast(),
                iov_len: payload_len,
            },
        ]);
        Entry {
            header,
            payload,
            payload_len,
            iov,
        }
    }
}

impl Drop for Entry {
    fn drop(&mut self) {
        // SAFETY: both were made by `Box::into_raw` in `new`, with these sizes; the ring (and
        // so the kernel's use of them) ends before its queue's entries are dropped.
        unsafe {
            drop(Box::from_raw(self.header));
            drop(Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                self.payload,
                self.payload_len,
            )));
        }
    }
}

/// A CPU's queue: its ring and entries.
pub(crate) struct Queue {
    qid: u16,
    fd: RawFd,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
    /// Held for every access to the submission queue (replies may come from any thread).
    sq: Mutex<()>,
    /// Written by a thread that queued a commit, to make the serving thread submit it.
    wake: std::os::fd::OwnedFd,
    /// Where the pending read of `wake` puts its count (written by the kernel).
    wake_buf: Box<std::cell::UnsafeCell<u64>>,
    entries: Box<[Entry]>,
    /// The thread that serves this queue; commits made on it are flushed by its loop.
    server: OnceLock<ThreadId>,
    /// Keeps the `/dev/fuse` fd open as long as the ring may use it.
    _ch: Channel,
}

// SAFETY: the entries' buffers are shared with the kernel and written by one thread at a time
// (the entry's owner between completion and commit, see `RingReply`); the submission queue is
// only touched under `sq`, the completion queue only by the serving thread.
unsafe impl Send for Queue {}
unsafe impl Sync for Queue {}

impl Queue {
    fn new(qid: u16, ch: Channel, payload: usize) -> io::Result<Queue> {
        // At most one commit per entry and the read of `wake` are ever queued at once.
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .setup_cqsize(4 * DEPTH as u32)
            .setup_single_issuer()
            .setup_defer_taskrun()
            .setup_r_disabled()
            .build(2 * DEPTH as u32)?;
        // SAFETY: eventfd takes no pointers; a non-negative result is a new fd we own.
        let wake = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if wake < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Queue {
            qid,
            fd: std::os::fd::AsFd::as_fd(&ch).as_raw_fd(),
            ring,
            sq: Mutex::new(()),
            // SAFETY: `wake` was just returned by eventfd and is owned by nothing else.
            wake: unsafe { std::os::fd::FromRawFd::from_raw_fd(wake) },
            wake_buf: Box::new(std::cell::UnsafeCell::new(0)),
            entries: (0..DEPTH).map(|_| Entry::new(payload)).collect(),
            server: OnceLock::new(),
            _ch: ch,
        })
    }

    fn sqe(&self, cmd_op: u32, idx: usize, commit_id: u64) -> squeue::Entry128 {
        let req = CmdReq {
            commit_id,
            qid: self.qid,
            ..CmdReq::default()
        };
        let mut cmd = [0u8; 80];
        cmd[0..8].copy_from_slice(&req.flags.to_ne_bytes());
        cmd[8..16].copy_from_slice(&req.commit_id.to_ne_bytes());
        cmd[16..18].copy_from_slice(&req.qid.to_ne_bytes());
        let mut sqe = opcode::UringCmd80::new(types::Fd(self.fd), cmd_op)
            .cmd(cmd)
            .addr(Some(self.entries[idx].iov.as_ptr() as u64))
            .build()
            .user_data(idx as u64);
        if cmd_op == CMD_REGISTER {
            // `len` of a REGISTER is the iovec count (header, payload).
            sqe = set_len(sqe, 2);
        }
        sqe
    }

    /// Queues a command for the serving thread to submit (its loop submits before it waits);
    /// from any other thread, wakes it to do so (see the module's notes).
    fn push(&self, sqe: &squeue::Entry128) -> io::Result<()> {
        let on_server = self.server.get() == Some(&std::thread::current().id());
        {
            let _sq = self.sq.lock();
            // SAFETY: the submission queue is only accessed under `sq`; it has room for a
            // commit per entry and the read of `wake`, all that is ever queued at once.
            unsafe { self.ring.submission_shared().push(sqe) }
                .map_err(|_| io::Error::other("io_uring submission queue full"))?;
        }
        if !on_server {
            let one = 1u64.to_ne_bytes();
            // SAFETY: writes 8 bytes from a live buffer to an eventfd we own.
            if unsafe { libc::write(self.wake.as_raw_fd(), one.as_ptr().cast(), 8) } != 8 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Queues the read of `wake` that wakes the serving thread (serving thread only).
    fn arm_wake(&self) -> io::Result<()> {
        let sqe = opcode::Read::new(
            types::Fd(self.wake.as_raw_fd()),
            self.wake_buf.get().cast::<u8>(),
            8,
        )
        .build()
        .user_data(WAKE);
        self.push(&squeue::Entry128::from(sqe))
    }

    fn flush(&self) -> io::Result<()> {
        let _sq = self.sq.lock();
        self.ring.submit()?;
        Ok(())
    }

    /// Copies entry `idx`'s request into `buf` as `/dev/fuse` would have delivered it; returns
    /// its length.
    ///
    /// # Safety
    /// The entry's command has completed with a request and not been committed since.
    unsafe fn read_request(&self, idx: usize, buf: &mut [u8]) -> Result<usize, String> {
        let ent = &self.entries[idx];
        // SAFETY: the kernel is done writing this entry (caller's contract).
        let header = unsafe { &*ent.header };
        let hsize = size_of::<abi::fuse_in_header>();
        let len = u32::from_ne_bytes(header.in_out[0..4].try_into().unwrap_or_default()) as usize;
        let payload = header.ent.payload_sz as usize;
        let op_in = len
            .checked_sub(hsize + payload)
            .filter(|&n| n <= OP_IN_SZ && payload <= ent.payload_len && len <= buf.len())
            .ok_or_else(|| format!("bad ring request: len {len}, payload {payload}"))?;
        buf[..hsize].copy_from_slice(&header.in_out[..hsize]);
        buf[hsize..hsize + op_in].copy_from_slice(&header.op_in[..op_in]);
        // SAFETY: `payload` bytes of the payload buffer were written by the kernel, which does
        // not touch them until the commit.
        let data = unsafe { std::slice::from_raw_parts(ent.payload, payload) };
        buf[hsize + op_in..len].copy_from_slice(data);
        Ok(len)
    }
}

/// Sets an SQE's `len` field (the io-uring crate's `UringCmd80` leaves it 0).
fn set_len(sqe: squeue::Entry128, len: u32) -> squeue::Entry128 {
    // SAFETY: `Entry128` is `#[repr(C)]` of a 64-byte `io_uring_sqe` and 64 bytes of command;
    // `len` sits at byte 24 of the SQE in every kernel ABI.
    unsafe {
        let mut raw: [u8; 128] = std::mem::transmute(sqe);
        raw[24..28].copy_from_slice(&len.to_ne_bytes());
        std::mem::transmute(raw)
    }
}

/// The reply path for a request taken from a ring entry: the owner of entry `idx` until the
/// commit (one reply per request, as fuser's `ReplyRaw` guarantees).
#[derive(Clone)]
pub(crate) struct RingReply {
    pub(crate) queue: Arc<Queue>,
    pub(crate) idx: usize,
    pub(crate) commit_id: u64,
    /// For passthrough backing ids, which are made on `/dev/fuse`.
    pub(crate) ch: ChannelSender,
}

impl std::fmt::Debug for RingReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RingReply(q{} e{})", self.queue.qid, self.idx)
    }
}

impl RingReply {
    /// Writes the reply (`fuse_out_header` first, then its arguments) into the entry and
    /// commits it.
    pub(crate) fn send(&self, data: &[io::IoSlice<'_>]) -> io::Result<()> {
        let ent = &self.queue.entries[self.idx];
        let hsize = size_of::<abi::fuse_out_header>();
        let total: usize = data.iter().map(|s| s.len()).sum();
        let (Some(first), true) = (data.first(), total - hsize.min(total) <= ent.payload_len)
        else {
            return Err(io::Error::other("reply does not fit the ring entry"));
        };
        if first.len() < hsize {
            return Err(io::Error::other("reply without a header"));
        }
        // SAFETY: this reply owns the entry until the commit below (see `Queue`'s invariant);
        // the kernel reads it only after the commit.
        unsafe {
            let header = &mut *ent.header;
            header.in_out[..hsize].copy_from_slice(&first[..hsize]);
            let mut at = ent.payload;
            let mut put = |s: &[u8]| {
                std::ptr::copy_nonoverlapping(s.as_ptr(), at, s.len());
                at = at.add(s.len());
            };
            put(&first[hsize..]);
            for s in &data[1..] {
                put(s);
            }
            header.ent.payload_sz = (total - hsize) as u32;
        }
        let sqe = self
            .queue
            .sqe(CMD_COMMIT_AND_FETCH, self.idx, self.commit_id);
        self.queue.push(&sqe)
    }
}

/// Starts the queues' threads; returns once every queue has registered its entries (or failed
/// to), with the threads to join.
pub(crate) fn start<FS: Filesystem>(
    params: RingParams,
    ch: &Channel,
    template: &SessionEventLoop<FS>,
) -> io::Result<Vec<JoinHandle<io::Result<()>>>> {
    let (tx, rx) = mpsc::channel();
    let mut threads = Vec::with_capacity(params.queues);
    let placement = Arc::new(Placement::new());
    for qid in 0..params.queues {
        let queue = Arc::new(Queue::new(qid as u16, ch.clone(), params.payload)?);
        let el = SessionEventLoop {
            thread_name: format!("fuser-uring-{qid}"),
            ch: ch.clone(),
            filesystem: template.filesystem.clone(),
            allowed: template.allowed,
            session_owner: template.session_owner,
            pace_forgets: false,
        };
        let tx = tx.clone();
        let payload = params.payload;
        let placement = placement.clone();
        threads.push(
            std::thread::Builder::new()
                .name(el.thread_name.clone())
                .spawn(move || serve(queue, el, payload, &placement, tx))?,
        );
    }
    drop(tx);
    let mut failed = None;
    for res in rx.iter().take(params.queues) {
        if let Err(e) = res {
            failed.get_or_insert(e);
        }
    }
    match failed {
        None => Ok(threads),
        Some(e) => {
            // The kernel has fallen back to /dev/fuse; the registered queues end at unmount.
            warn!("io_uring queues not registered: {e}");
            Err(e)
        }
    }
}

/// A queue's thread: pin, register, then serve until no entry is left with the kernel.
fn serve<FS: Filesystem>(
    queue: Arc<Queue>,
    el: SessionEventLoop<FS>,
    payload: usize,
    placement: &Placement,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<()> {
    pin_to_cpu(queue.qid as usize);
    let mut idle = false;
    let _ = queue.server.set(std::thread::current().id());
    let mut done = match queue.ring.submitter().register_enable_rings().and_then(|()| register(&queue)) {
        Ok(early) => {
            let _ = ready.send(Ok(()));
            early
        }
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    // One request in `/dev/fuse` form; u64 words keep the header aligned.
    let mut words = vec![0u64; (size_of::<abi::fuse_in_header>() + OP_IN_SZ + payload) / 8 + 1];
    let mut live = DEPTH;
    loop {
        for (idx, res) in done.drain(..) {
            if idx as u64 == WAKE {
                // Another thread queued a commit: submitted by the wait below, with the read
                // queued again (not when the ring is going: then it fails).
                if res >= 0 {
                    queue.arm_wake()?;
                }
                continue;
            }
            if res < 0 {
                live -= 1;
                retire(&queue, idx, res);
                continue;
            }
            // SAFETY: entry `idx` completed with a request; nothing commits it before
            // `handle` does.
            unsafe { handle(&queue, &el, idx, bytes(&mut words)) };
        }
        if live == 0 {
            break;
        }
        // The commit of the replies just made happens in the wait below: the policy chosen here
        // decides where the woken callers run (see `placement`).
        let wanted = placement.idle_wanted();
        if wanted != idle && placement::set_idle(wanted).is_ok() {
            idle = wanted;
        }
        match queue.ring.submitter().submit_and_wait(1) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINTR) => {}
            Err(e) => return Err(e),
        }
        completions(&queue, &mut done);
    }
    debug!("io_uring queue {} ends", queue.qid);
    Ok(())
}

fn bytes(words: &mut [u64]) -> &mut [u8] {
    // SAFETY: any u64 slice is a valid byte slice of eight times its length.
    unsafe { std::slice::from_raw_parts_mut(words.as_mut_ptr().cast(), words.len() * 8) }
}

/// Registers every entry of `queue`; an error the kernel returns at once (a bad buffer, the
/// connection gone, io_uring turned off) fails it. Returns the completions already there: a
/// REGISTER that succeeded stays pending until a request comes, which may be at once.
fn register(queue: &Queue) -> io::Result<Vec<(usize, i32)>> {
    for idx in 0..DEPTH {
        queue.push(&queue.sqe(CMD_REGISTER, idx, 0))?;
    }
    queue.arm_wake()?;
    queue.flush()?;
    let mut early = Vec::with_capacity(DEPTH + 1);
    completions(queue, &mut early);
    match early.iter().find(|(_, res)| *res < 0) {
        Some((_, res)) => Err(io::Error::from_raw_os_error(-res)),
        None => Ok(early),
    }
}

/// Appends the completions there are to `done`: (entry, result). The serving thread reuses one
/// list, so serving a request allocates nothing here.
fn completions(queue: &Queue, done: &mut Vec<(usize, i32)>) {
    // SAFETY: only the serving thread reads the completion queue.
    done.extend(unsafe { queue.ring.completion_shared() }.map(|c| (c.user_data() as usize, c.result())));
}

/// Serves the request of entry `idx`.
///
/// # Safety
/// As `Queue::read_request`.
unsafe fn handle<FS: Filesystem>(
    queue: &Arc<Queue>,
    el: &SessionEventLoop<FS>,
    idx: usize,
    buf: &mut [u8],
) {
    // SAFETY: caller's contract.
    let commit_id = unsafe { (*queue.entries[idx].header).ent.commit_id };
    let reply = ring_reply(queue, idx, commit_id, &el.ch);
    // SAFETY: caller's contract.
    let req = match unsafe { queue.read_request(idx, buf) } {
        Ok(len) => RequestWithSender::new_ring(reply.clone(), &buf[..len]),
        Err(e) => {
            error!("{e}");
            None
        }
    };
    let Some(req) = req else {
        // Unparseable: an error reply still gives the entry back to the kernel.
        let _ = reply.send(&[io::IoSlice::new(&error_header(commit_id, libc::EIO))]);
        return;
    };
    if let Ok(Operation::Destroy(_)) = req.request.operation() {
        req.reply::<ReplyEmpty>().ok();
    } else {
        req.dispatch(el);
    }
    // Every ring request must be answered, or its entry never comes back.
    if !req.replied() {
        req.reply::<ReplyRaw>().error(ll::Errno::ENOSYS);
    }
}

fn ring_reply(queue: &Arc<Queue>, idx: usize, commit_id: u64, ch: &Channel) -> RingReply {
    RingReply {
        queue: queue.clone(),
        idx,
        commit_id,
        ch: ch.sender(),
    }
}

fn error_header(unique: u64, errno: i32) -> [u8; 16] {
    let mut h = [0u8; 16];
    h[0..4].copy_from_slice(&16u32.to_ne_bytes());
    h[4..8].copy_from_slice(&(-errno).to_ne_bytes());
    h[8..16].copy_from_slice(&unique.to_ne_bytes());
    h
}

/// An entry the kernel gave back with an error: the connection is going (`ENOTCONN`,
/// `ECONNABORTED`, `ENODEV`), or something is wrong.
fn retire(queue: &Queue, idx: usize, res: i32) {
    match -res {
        libc::ENOTCONN | libc::ECONNABORTED | libc::ENODEV => {
            debug!("io_uring queue {} entry {idx}: connection gone", queue.qid)
        }
        e => error!(
            "io_uring queue {} entry {idx}: {}",
            queue.qid,
            io::Error::from_raw_os_error(e)
        ),
    }
}

fn pin_to_cpu(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET stays within it (checked bound);
    // sched_setaffinity only reads it.
    let res = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * size_of::<libc::cpu_set_t>() {
            return;
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
    };
    if res != 0 {
        debug!(
            "pinning io_uring queue {cpu}: {}",
            io::Error::last_os_error()
        );
    }
}
