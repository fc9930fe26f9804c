//! The one pass over a layer blob, as a pipeline of threads: the caller's thread reads the blob
//! and stores it (hashing it), one thread decompresses it, one hashes the tar (the diff_id),
//! one unpacks it. Each passes [`Chunk`]s of bytes to the next through a bounded channel, so no
//! stage waits on another's system calls or CPU work: a layer takes as long as its slowest
//! stage, not the sum of them all, and a pull of several layers keeps every core busy.
//!
//! A link carries the stream in order: full chunks, then either its end (the sender is
//! dropped) or one error at the place where the stream broke, which the receiving stage reads
//! exactly where a single-threaded reader would have met it. A stage whose receiver hung up
//! (a later stage failed) stops early, except the first: the whole blob is always read, so that
//! its digest and size decide first. Emptied chunks go back to a [`Pool`] to be filled again.

use std::io::{self, BufRead, Read, Write};
use std::os::fd::BorrowedFd;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread::{self, Scope, ScopedJoinHandle};

use parking_lot::Mutex;

use super::digest::{Algorithm, Digest, Hasher};
use super::source::{Compression, sniff};
use super::unpack::{self, UnpackError, Unpacked};

/// Bytes per chunk.
pub const CHUNK: usize = 256 << 10;
/// Chunks in flight on one link (besides the one each end holds).
const DEPTH: usize = 8;
/// Bytes of files written between two syncs of the filesystem while unpacking.
const WRITEBACK_EVERY: u64 = 128 << 20;
/// Emptied chunks kept for reuse.
const SPARE: usize = 32;

/// A buffer of [`CHUNK`] bytes of which the first `len` hold data.
pub struct Chunk {
    buf: Box<[u8]>,
    len: usize,
}

impl Chunk {
    /// The data.
    pub fn bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Reads from `r` until the chunk is full or `r` is at its end; returns how many bytes came
    /// (0 only at the end). What was read before an error stays in the chunk.
    pub fn fill(&mut self, r: &mut (impl Read + ?Sized)) -> io::Result<usize> {
        let start = self.len;
        while self.len < self.buf.len() {
            match r.read(&mut self.buf[self.len..]) {
                Ok(0) => break,
                Ok(n) => self.len += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(self.len - start)
    }

    /// Whether it holds no data.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Emptied chunks, shared by the links of one import.
#[derive(Default)]
pub struct Pool(Mutex<Vec<Box<[u8]>>>);

impl Pool {
    /// An empty chunk: a reused one, or a new one.
    pub fn chunk(&self) -> Chunk {
        let buf = self.0.lock().pop().unwrap_or_else(|| vec![0u8; CHUNK].into_boxed_slice());
        Chunk { buf, len: 0 }
    }

    fn put(&self, c: Chunk) {
        let mut spare = self.0.lock();
        if spare.len() < SPARE {
            spare.push(c.buf);
        }
    }
}

/// A bounded link between two stages.
pub fn link(pool: &Pool) -> (Sender<'_>, Drain<'_>) {
    let (tx, rx) = sync_channel(DEPTH);
    (Sender { tx, pool }, Drain { rx, pool, cur: None, pos: 0, done: false })
}

/// The sending end of a link; dropping it ends the stream.
pub struct Sender<'p> {
    tx: SyncSender<io::Result<Chunk>>,
    pool: &'p Pool,
}

impl Sender<'_> {
    /// An empty chunk to fill.
    pub fn chunk(&self) -> Chunk {
        self.pool.chunk()
    }

    /// Passes a chunk on; `false` when the receiver hung up (then nothing more is wanted).
    pub fn send(&self, c: Chunk) -> bool {
        if c.is_empty() {
            self.pool.put(c);
            return true;
        }
        self.tx.send(Ok(c)).is_ok()
    }

    /// Ends the stream with an error, which the receiver reads after the chunks sent before.
    pub fn fail(self, e: io::Error) {
        let _ = self.tx.send(Err(e));
    }
}

/// The receiving end of a link: chunk by chunk ([`Drain::next_chunk`]) or as a reader.
/// Dropping it tells the sender that nothing more is wanted.
pub struct Drain<'p> {
    rx: Receiver<io::Result<Chunk>>,
    pool: &'p Pool,
    /// The chunk being read, and how much of it was.
    cur: Option<Chunk>,
    pos: usize,
    /// The end or an error was met: nothing more comes.
    done: bool,
}

impl<'p> Drain<'p> {
    /// The next chunk, `None` at the end of the stream (after an error too).
    pub fn next_chunk(&mut self) -> Option<io::Result<Chunk>> {
        if let Some(c) = self.cur.take() {
            self.pool.put(c);
        }
        if self.done {
            return None;
        }
        match self.rx.recv() {
            Ok(Ok(c)) => Some(Ok(c)),
            Ok(Err(e)) => {
                self.done = true;
                Some(Err(e))
            }
            Err(_) => {
                self.done = true;
                None
            }
        }
    }

    /// Gives an emptied chunk back for reuse.
    pub fn recycle(&self, c: Chunk) {
        self.pool.put(c);
    }

    /// Reads the rest of the stream, dropping it; an error in it is returned.
    pub fn finish(&mut self) -> io::Result<()> {
        while let Some(c) = self.next_chunk() {
            self.pool.put(c?);
        }
        Ok(())
    }
}

impl BufRead for Drain<'_> {
    fn fill_buf(&mut self) -> io::Result<&[u8]> {
        while self.cur.as_ref().is_none_or(|c| self.pos >= c.len) {
            match self.next_chunk() {
                Some(c) => {
                    self.cur = Some(c?);
                    self.pos = 0;
                }
                None => return Ok(&[]),
            }
        }
        Ok(self.cur.as_ref().map(|c| &c.bytes()[self.pos..]).unwrap_or_default())
    }

    fn consume(&mut self, n: usize) {
        self.pos += n;
    }
}

impl Read for Drain<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let avail = self.fill_buf()?;
        let n = avail.len().min(buf.len());
        buf[..n].copy_from_slice(&avail[..n]);
        self.consume(n);
        Ok(n)
    }
}

/// Where and how to unpack the tar.
#[derive(Clone, Copy)]
pub struct UnpackTo<'f> {
    /// The layer dir, open for reading.
    pub root: BorrowedFd<'f>,
    /// How.
    pub opts: unpack::Options,
}

/// What one pass over a layer blob found, before any check.
pub struct Outcome {
    /// Reading the blob or storing it failed (the bytes read before are stored).
    pub blob: io::Result<()>,
    /// What the tar was, or why it could not be read or unpacked.
    pub tar: Result<Tar, UnpackError>,
}

/// A layer tar read to its end.
pub struct Tar {
    /// How the blob was compressed.
    pub compression: Compression,
    /// The tar's digest.
    pub diff_id: Digest,
    /// What unpacking made ([`Unpacked::default`] when not unpacked).
    pub unpacked: Unpacked,
}

/// Reads the whole blob from `source` into `blob`, decompressing it, hashing the tar with
/// `algorithm` and unpacking it (when `unpack_to` says where) on other threads meanwhile.
pub fn run(
    source: &mut dyn Read,
    blob: &mut impl Write,
    algorithm: Algorithm,
    unpack_to: Option<UnpackTo<'_>>,
) -> Outcome {
    let pool = Pool::default();
    thread::scope(|s| {
        let (blob_out, compressed) = link(&pool);
        let (inflate_out, tar) = link(&pool);
        let (hash_out, unpacker) = match unpack_to {
            Some(to) => {
                let (out, input) = link(&pool);
                (Some(out), Some(spawn(s, "unpack", move || unpack_all(input, to))))
            }
            None => (None, None),
        };
        let inflater = spawn(s, "inflate", move || inflate(compressed, inflate_out));
        let hasher = spawn(s, "hash-tar", move || hash(tar, hash_out, algorithm));
        let blob_result = store(source, blob, &pool, blob_out);
        Outcome { blob: blob_result, tar: settle(inflater, hasher, unpacker) }
    })
}

type Handle<'s, T> = io::Result<ScopedJoinHandle<'s, T>>;

/// Waits for the other stages; the error that counts is the one met first in the stream, which
/// the last stage read (the unpacker's, else the hasher's), or a stage that did not run.
fn settle(
    inflater: Handle<'_, Option<Compression>>,
    hasher: Handle<'_, io::Result<Option<Digest>>>,
    unpacker: Option<Handle<'_, Result<Unpacked, UnpackError>>>,
) -> Result<Tar, UnpackError> {
    let unpacked = match unpacker {
        Some(u) => u.and_then(join).map_err(UnpackError::Read)??,
        None => Unpacked::default(),
    };
    let compression = inflater.and_then(join).map_err(UnpackError::Read)?.unwrap_or_default();
    let diff_id = hasher
        .and_then(join)
        .and_then(|r| r)
        .map_err(UnpackError::Read)?
        .ok_or_else(|| UnpackError::Read(io::Error::other("the layer tar was not read to its end")))?;
    Ok(Tar { compression, diff_id, unpacked })
}

fn spawn<'s, T: Send + 's>(s: &'s Scope<'s, '_>, name: &str, f: impl FnOnce() -> T + Send + 's) -> Handle<'s, T> {
    thread::Builder::new().name(name.to_string()).spawn_scoped(s, f)
}

fn join<T>(h: ScopedJoinHandle<'_, T>) -> io::Result<T> {
    h.join().map_err(|_| io::Error::other("a thread of the layer import panicked"))
}

/// The first stage: the whole blob into `blob`, passed on while the next stage wants it.
fn store(source: &mut dyn Read, blob: &mut impl Write, pool: &Pool, out: Sender<'_>) -> io::Result<()> {
    let mut out = Some(out);
    loop {
        let mut c = pool.chunk();
        let filled = c.fill(source);
        blob.write_all(c.bytes())?;
        if filled? == 0 {
            return Ok(());
        }
        match &out {
            Some(o) => {
                if !o.send(c) {
                    out = None;
                }
            }
            None => pool.put(c),
        }
    }
}

/// Decompresses the blob (gzip, zstd or none, told by its first bytes).
fn inflate(input: Drain<'_>, out: Sender<'_>) -> Option<Compression> {
    let (mut tar, compression) = match sniff(input) {
        Ok(t) => t,
        Err(e) => {
            out.fail(e);
            return None;
        }
    };
    loop {
        let mut c = out.chunk();
        match c.fill(&mut tar) {
            Ok(0) => break,
            Ok(_) => {
                if !out.send(c) {
                    break;
                }
            }
            Err(e) => {
                out.send(c);
                out.fail(e);
                break;
            }
        }
    }
    Some(compression)
}

/// Hashes the tar, passing it on to `out` if given; `None` when it stopped before the end (the
/// unpacker failed, or met the error passed on to it).
fn hash(mut input: Drain<'_>, out: Option<Sender<'_>>, algorithm: Algorithm) -> io::Result<Option<Digest>> {
    let mut hasher = Hasher::new(algorithm);
    while let Some(c) = input.next_chunk() {
        match (c, &out) {
            (Ok(c), Some(o)) => {
                hasher.update(c.bytes());
                if !o.send(c) {
                    return Ok(None);
                }
            }
            (Ok(c), None) => {
                hasher.update(c.bytes());
                input.recycle(c);
            }
            (Err(e), Some(_)) => {
                if let Some(o) = out {
                    o.fail(e);
                }
                return Ok(None);
            }
            (Err(e), None) => return Err(e),
        }
    }
    Ok(Some(hasher.finish()))
}

/// Unpacks the tar, then reads what follows its end (so the hasher sees it all). Every
/// [`WRITEBACK_EVERY`] bytes of files written, another thread syncs the filesystem, so that the
/// disk works while the rest is unpacked rather than all during the store's final sync.
fn unpack_all(mut input: Drain<'_>, to: UnpackTo<'_>) -> Result<Unpacked, UnpackError> {
    let (kick, kicked) = sync_channel::<()>(1);
    let unpacked = thread::scope(|s| {
        let writeback = spawn(s, "writeback", move || {
            for () in kicked {
                // Only a head start: the store's own sync reports what failed.
                let _ = rustix::fs::syncfs(to.root);
            }
        });
        let mut pending = 0;
        let unpacked = unpack::unpack_to(&mut input, to.root, to.opts, &mut |_, size| {
            pending += size;
            // While the last sync runs, the next waits.
            if pending >= WRITEBACK_EVERY && kick.try_send(()).is_ok() {
                pending = 0;
            }
        });
        drop(kick);
        if let Ok(w) = writeback {
            let _ = w.join();
        }
        unpacked
    })?;
    input.finish().map_err(UnpackError::Read)?;
    Ok(unpacked)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_carries_the_stream_in_order_then_its_error() {
        let pool = Pool::default();
        let (tx, mut rx) = link(&pool);
        let data: Vec<u8> = (0..3 * CHUNK + 100).map(|i| (i % 251) as u8).collect();
        let got = std::thread::scope(|s| {
            let reader = s.spawn(move || {
                let mut got = Vec::new();
                let err = rx.read_to_end(&mut got).err();
                (got, err)
            });
            let mut src = &data[..];
            loop {
                let mut c = tx.chunk();
                if c.fill(&mut src).unwrap() == 0 {
                    break;
                }
                assert!(tx.send(c));
            }
            tx.fail(io::Error::other("cut"));
            reader.join().unwrap()
        });
        assert_eq!(got.0, data);
        assert_eq!(got.1.map(|e| e.to_string()).as_deref(), Some("cut"));
    }

    #[test]
    fn a_sender_learns_that_its_receiver_hung_up() {
        let pool = Pool::default();
        let (tx, rx) = link(&pool);
        drop(rx);
        let mut c = tx.chunk();
        c.fill(&mut &b"x"[..]).unwrap();
        assert!(!tx.send(c));
    }
}
