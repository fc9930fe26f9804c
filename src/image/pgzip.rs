//! Parallel gzip for layer blobs (as pigz and Go's pgzip do): the input is cut into 1 MiB
//! blocks, each deflated on a worker thread with the previous block's last 32 KiB as its
//! dictionary and ended with a sync flush, and the pieces are written in order as one ordinary
//! gzip member that every gzip reader accepts. The output depends only on the input, not on
//! thread timing, so the same layer tar always gives the same blob.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use flate2::{Compress, Compression, FlushCompress, Status};

/// Bytes of input per block.
const BLOCK: usize = 1 << 20;
/// Window deflate can refer back to: the dictionary carried into the next block.
const WINDOW: usize = 32 << 10;
/// The gzip header: no name, no mtime (reproducible), OS unknown.
const HEADER: [u8; 10] = [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];

/// One block to deflate: its index, its data, the dictionary, whether it ends the stream.
struct Job {
    idx: u64,
    data: Arc<Vec<u8>>,
    dict: Option<Arc<Vec<u8>>>,
    last: bool,
}

/// A gzip writer that deflates on `threads` workers.
pub struct ParGzEncoder<W: Write> {
    inner: Option<W>,
    buf: Vec<u8>,
    prev: Option<Arc<Vec<u8>>>,
    crc: crc32fast::Hasher,
    total: u64,
    next_in: u64,
    next_out: u64,
    done: BTreeMap<u64, io::Result<Vec<u8>>>,
    jobs: Option<Sender<Job>>,
    results: Receiver<(u64, io::Result<Vec<u8>>)>,
    workers: Vec<JoinHandle<()>>,
    max_in_flight: u64,
    /// The first error met: every later call returns it. After one, the blocks in flight no
    /// longer line up with what was written (a tar writer that failed still writes its end when
    /// it is dropped, and waiting for the lost block would hang).
    failed: Option<(io::ErrorKind, String)>,
}

impl<W: Write> ParGzEncoder<W> {
    /// A writer into `inner` at `level`, deflating on `threads` workers (at least one).
    pub fn new(mut inner: W, level: Compression, threads: usize) -> io::Result<ParGzEncoder<W>> {
        inner.write_all(&HEADER)?;
        let threads = threads.max(1);
        let (jobs, job_rx) = channel::<Job>();
        let (res_tx, results) = channel();
        let job_rx = Arc::new(Mutex::new(job_rx));
        let workers = (0..threads)
            .map(|_| {
                let (rx, tx) = (job_rx.clone(), res_tx.clone());
                std::thread::spawn(move || worker(&rx, &tx, level))
            })
            .collect();
        Ok(ParGzEncoder {
            inner: Some(inner),
            buf: Vec::with_capacity(BLOCK),
            prev: None,
            crc: crc32fast::Hasher::new(),
            total: 0,
            next_in: 0,
            next_out: 0,
            done: BTreeMap::new(),
            jobs: Some(jobs),
            results,
            workers,
            max_in_flight: 2 * threads as u64 + 1,
            failed: None,
        })
    }

    /// Runs `step` unless an earlier step failed; remembers its failure.
    fn guarded<T>(&mut self, step: impl FnOnce(&mut Self) -> io::Result<T>) -> io::Result<T> {
        if let Some((kind, msg)) = &self.failed {
            return Err(io::Error::new(*kind, format!("an earlier write failed: {msg}")));
        }
        let r = step(self);
        if let Err(e) = &r {
            self.failed = Some((e.kind(), e.to_string()));
        }
        r
    }

    /// Hands the buffered block to the workers.
    fn submit(&mut self, last: bool) -> io::Result<()> {
        let data = Arc::new(std::mem::replace(&mut self.buf, Vec::with_capacity(BLOCK)));
        let dict = self.prev.take();
        self.prev = (!data.is_empty()).then(|| Arc::new(data[data.len().saturating_sub(WINDOW)..].to_vec()));
        let job = Job { idx: self.next_in, data, dict, last };
        self.next_in += 1;
        let sent = self.jobs.as_ref().map(|j| j.send(job).is_ok()).unwrap_or(false);
        if !sent {
            return Err(io::Error::other("the compression workers stopped"));
        }
        Ok(())
    }

    /// Writes finished blocks in order until at most `keep` are in flight.
    fn drain(&mut self, keep: u64) -> io::Result<()> {
        while self.next_in - self.next_out > keep {
            if let Some(piece) = self.done.remove(&self.next_out) {
                let inner = self.inner.as_mut().ok_or_else(|| io::Error::other("finished"))?;
                inner.write_all(&piece?)?;
                self.next_out += 1;
                continue;
            }
            let (idx, piece) = self.results.recv().map_err(|_| io::Error::other("the compression workers stopped"))?;
            self.done.insert(idx, piece);
        }
        Ok(())
    }

    /// Ends the stream (final block, CRC and length) and returns the inner writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.guarded(|e| {
            e.submit(true)?;
            e.drain(0)
        })?;
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
        let mut inner = self.inner.take().ok_or_else(|| io::Error::other("finished twice"))?;
        inner.write_all(&self.crc.clone().finalize().to_le_bytes())?;
        inner.write_all(&(self.total as u32).to_le_bytes())?;
        Ok(inner)
    }
}

impl<W: Write> Write for ParGzEncoder<W> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.guarded(|e| {
            let n = data.len().min(BLOCK - e.buf.len());
            e.buf.extend_from_slice(&data[..n]);
            e.crc.update(&data[..n]);
            e.total += n as u64;
            if e.buf.len() == BLOCK {
                e.submit(false)?;
                let keep = e.max_in_flight;
                e.drain(keep)?;
            }
            Ok(n)
        })
    }

    /// Writes what is finished; a partial block stays buffered (a flush point would change the
    /// output's bytes with the caller's flush pattern).
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<W: Write> Drop for ParGzEncoder<W> {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn worker(jobs: &Mutex<Receiver<Job>>, results: &Sender<(u64, io::Result<Vec<u8>>)>, level: Compression) {
    loop {
        let job = match jobs.lock() {
            Ok(rx) => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => return,
        };
        if results.send((job.idx, deflate_block(&job, level))).is_err() {
            return;
        }
    }
}

/// Raw deflate of one block: sync-flushed (byte aligned, not final) unless it is the last.
fn deflate_block(job: &Job, level: Compression) -> io::Result<Vec<u8>> {
    let mut c = Compress::new(level, false);
    if let Some(d) = &job.dict {
        c.set_dictionary(d).map_err(io::Error::other)?;
    }
    let flush = if job.last { FlushCompress::Finish } else { FlushCompress::Sync };
    let mut out = Vec::with_capacity(job.data.len() / 2 + 1024);
    loop {
        let consumed = c.total_in() as usize;
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(64 << 10));
        }
        let status = c.compress_vec(&job.data[consumed..], &mut out, flush).map_err(io::Error::other)?;
        let all_in = c.total_in() as usize == job.data.len();
        match status {
            Status::StreamEnd => return Ok(out),
            // A sync flush is complete when all input is taken and room was left over.
            _ if !job.last && all_in && out.capacity() > out.len() => return Ok(out),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn roundtrip(data: &[u8], threads: usize) -> Vec<u8> {
        let mut enc = ParGzEncoder::new(Vec::new(), Compression::default(), threads).unwrap();
        for chunk in data.chunks(100_003) {
            enc.write_all(chunk).unwrap();
        }
        let gz = enc.finish().unwrap();
        let mut back = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut back).unwrap();
        assert_eq!(back, data);
        gz
    }

    /// Takes the gzip header, then fails every write.
    struct FailsAfterHeader(usize);

    impl Write for FailsAfterHeader {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0 += 1;
            if self.0 > 1 { Err(io::Error::from_raw_os_error(libc::EIO)) } else { Ok(data.len()) }
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn after_a_failed_write_every_call_fails_at_once_instead_of_waiting_for_a_lost_block() {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut enc = ParGzEncoder::new(FailsAfterHeader(0), Compression::fast(), 2).unwrap();
            let block = vec![1u8; BLOCK];
            // The first finished block's write fails, a few blocks in.
            let first = (0..10).map(|_| enc.write_all(&block)).find(|r| r.is_err());
            assert!(first.is_some_and(|r| r.unwrap_err().raw_os_error() == Some(libc::EIO)));
            // What a tar writer dropped after the error does: write its end, then finish.
            let again = enc.write_all(&block).unwrap_err();
            assert!(again.to_string().contains("an earlier write failed"), "{again}");
            assert!(enc.finish().is_err());
            tx.send(()).unwrap();
        });
        rx.recv_timeout(std::time::Duration::from_secs(20)).expect("the encoder hung after a failed write");
    }

    #[test]
    fn output_is_one_gzip_member_and_independent_of_thread_count() {
        let mut data = Vec::new();
        for i in 0..600_000u32 {
            data.extend_from_slice(format!("line {} of a layer {}\n", i, i % 97).as_bytes());
        }
        let one = roundtrip(&data, 1);
        assert_eq!(one, roundtrip(&data, 3), "the same bytes whatever the thread count");
        assert!(one.len() < data.len() / 4, "compresses: {} of {}", one.len(), data.len());
        assert_eq!(roundtrip(b"", 2).len(), 20);
        roundtrip(&vec![7u8; BLOCK], 2);
    }
}
