//! An fsx-style data checker: random reads, writes, truncates, fsyncs and reopens on a few
//! files, every byte read compared with an in-memory model of what the file must hold. One
//! thread per file; no mmap. Used by `scripts/soak` on a Strata mount.
//!
//!     fsx DIR [--threads N] [--seconds S] [--seed N] [--max-size BYTES] [--lower] [--prepare]
//!
//! `--prepare` writes each thread's starting file into DIR (a lower layer, before mounting) and
//! exits; `--lower` then starts from that content on the mount instead of an empty file, so the
//! first write, truncate or reopen-for-write of each file copies it up. With `--lower` each
//! thread works through a series of such files (`fsx-T-K`, K counting up to `--files`),
//! so copy-up stays in the loop for the whole run.
//!
//! Exits 0 when every byte matched, 1 with the last operations printed at the first mismatch or
//! error.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// xorshift64*: deterministic, so a failing seed replays.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next() % n }
    }
}

#[derive(Clone)]
struct Opts {
    dir: PathBuf,
    threads: usize,
    seconds: u64,
    seed: u64,
    max_size: u64,
    lower: bool,
    prepare: bool,
    files: usize,
}

fn parse_args() -> Result<Opts, String> {
    let mut args = std::env::args().skip(1);
    let mut o = Opts {
        dir: PathBuf::new(),
        threads: 4,
        seconds: 60,
        seed: 1,
        max_size: 256 << 10,
        lower: false,
        prepare: false,
        files: 1,
    };
    let mut dir = None;
    while let Some(a) = args.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            args.next().and_then(|v| v.parse().ok()).ok_or(format!("{name} needs a number"))
        };
        match a.as_str() {
            "--threads" => o.threads = num("--threads")? as usize,
            "--seconds" => o.seconds = num("--seconds")?,
            "--seed" => o.seed = num("--seed")?,
            "--max-size" => o.max_size = num("--max-size")?.max(1),
            "--files" => o.files = num("--files")?.max(1) as usize,
            "--lower" => o.lower = true,
            "--prepare" => o.prepare = true,
            s if !s.starts_with('-') && dir.is_none() => dir = Some(PathBuf::from(s)),
            s => return Err(format!("unknown argument {s:?}")),
        }
    }
    o.dir = dir.ok_or(
        "usage: fsx DIR [--threads N] [--seconds S] [--seed N] [--max-size B] [--files N] [--lower] [--prepare]",
    )?;
    Ok(o)
}

/// The content a prepared lower file starts with.
fn initial(seed: u64, thread: usize, k: usize, max_size: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed ^ ((thread as u64) << 32) ^ (k as u64) ^ 0x5157);
    let len = rng.below(max_size / 2) as usize;
    (0..len).map(|_| rng.next() as u8).collect()
}

fn path_of(o: &Opts, thread: usize, k: usize) -> PathBuf {
    if o.lower { o.dir.join(format!("fsx-{thread}-{k}")) } else { o.dir.join(format!("fsx-{thread}")) }
}

/// Operation counts of one thread.
#[derive(Default, Clone, Copy)]
struct Counts {
    reads: u64,
    writes: u64,
    truncates: u64,
    fsyncs: u64,
    reopens: u64,
    files: u64,
    bytes_checked: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.reads += o.reads;
        self.writes += o.writes;
        self.truncates += o.truncates;
        self.fsyncs += o.fsyncs;
        self.reopens += o.reopens;
        self.files += o.files;
        self.bytes_checked += o.bytes_checked;
    }
}

/// One thread's file and its model.
struct Worker<'o> {
    o: &'o Opts,
    rng: Rng,
    path: PathBuf,
    file: File,
    model: Vec<u8>,
    log: VecDeque<String>,
    counts: Counts,
}

impl Worker<'_> {
    fn note(&mut self, s: String) {
        if self.log.len() == 32 {
            self.log.pop_front();
        }
        self.log.push_back(s);
    }

    fn fail(&self, what: String) -> String {
        let mut s = format!("{}: {what}\nlast operations:\n", self.path.display());
        for l in &self.log {
            s.push_str("  ");
            s.push_str(l);
            s.push('\n');
        }
        s
    }

    fn open(path: &Path, create: bool) -> std::io::Result<File> {
        OpenOptions::new().read(true).write(true).create(create).truncate(create).open(path)
    }

    fn check_range(&mut self, off: u64, len: usize) -> Result<(), String> {
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            match self.file.read_at(&mut buf[got..], off + got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(self.fail(format!("read {len} at {off}: {e}"))),
            }
        }
        let end = (off as usize + len).min(self.model.len());
        let want = if (off as usize) < end { &self.model[off as usize..end] } else { &[][..] };
        if got != want.len() {
            return Err(self.fail(format!("read {len} at {off}: got {got} bytes, model has {}", want.len())));
        }
        if let Some(i) = (0..got).find(|&i| buf[i] != want[i]) {
            return Err(self.fail(format!(
                "byte {} differs: read {:#04x}, model {:#04x} (read {len} at {off})",
                off + i as u64,
                buf[i],
                want[i]
            )));
        }
        self.counts.bytes_checked += got as u64;
        Ok(())
    }

    fn check_size(&mut self) -> Result<(), String> {
        let by_fd = self.file.metadata().map_err(|e| self.fail(format!("fstat: {e}")))?.len();
        let by_path = std::fs::metadata(&self.path).map_err(|e| self.fail(format!("stat: {e}")))?.len();
        if by_fd != self.model.len() as u64 || by_path != by_fd {
            return Err(self.fail(format!("size: fstat {by_fd}, stat {by_path}, model {}", self.model.len())));
        }
        Ok(())
    }

    fn check_all(&mut self) -> Result<(), String> {
        self.check_size()?;
        let len = self.model.len();
        self.check_range(0, len + 17)
    }

    fn step(&mut self) -> Result<(), String> {
        let max = self.o.max_size;
        match self.rng.below(100) {
            0..=39 => {
                let off = self.rng.below(self.model.len() as u64 + 4096);
                let len = 1 + self.rng.below(64 << 10) as usize;
                self.note(format!("read {len} at {off}"));
                self.counts.reads += 1;
                self.check_range(off, len)
            }
            40..=79 => {
                let off = self.rng.below(max);
                let len = 1 + self.rng.below((64 << 10).min(max - off)) as usize;
                let data: Vec<u8> = (0..len).map(|_| self.rng.next() as u8).collect();
                self.note(format!("write {len} at {off}"));
                self.file.write_all_at(&data, off).map_err(|e| self.fail(format!("write {len} at {off}: {e}")))?;
                let end = off as usize + len;
                if self.model.len() < end {
                    self.model.resize(end, 0);
                }
                self.model[off as usize..end].copy_from_slice(&data);
                self.counts.writes += 1;
                Ok(())
            }
            80..=89 => {
                let size = self.rng.below(max);
                self.note(format!("truncate to {size}"));
                self.file.set_len(size).map_err(|e| self.fail(format!("truncate to {size}: {e}")))?;
                self.model.resize(size as usize, 0);
                self.counts.truncates += 1;
                self.check_size()
            }
            90..=93 => {
                self.note("fsync".into());
                self.file.sync_all().map_err(|e| self.fail(format!("fsync: {e}")))?;
                self.counts.fsyncs += 1;
                Ok(())
            }
            _ => {
                self.note("close, reopen, verify all".into());
                self.file = Self::open(&self.path, false).map_err(|e| self.fail(format!("reopen: {e}")))?;
                self.counts.reopens += 1;
                self.check_all()
            }
        }
    }
}

fn run_thread(o: &Opts, t: usize, stop: &AtomicBool) -> Result<Counts, String> {
    let mut total = Counts::default();
    let end = Instant::now() + Duration::from_secs(o.seconds);
    let mut rng = Rng::new(o.seed.wrapping_add(t as u64 * 7919));
    let mut k = 0;
    loop {
        let path = path_of(o, t, k);
        let (file, model) = if o.lower {
            let model = initial(o.seed, t, k, o.max_size);
            // Opened read-only first: the file is still the lower one, as a reader sees it.
            let ro = File::open(&path).map_err(|e| format!("{}: open: {e}", path.display()))?;
            let mut w = Worker {
                o,
                rng: rng.clone(),
                path: path.clone(),
                file: ro,
                model,
                log: VecDeque::new(),
                counts: Counts::default(),
            };
            w.check_all()?;
            let rw = Worker::open(&path, false).map_err(|e| w.fail(format!("open for writing: {e}")))?;
            (rw, w.model)
        } else {
            let f = Worker::open(&path, true).map_err(|e| format!("{}: create: {e}", path.display()))?;
            (f, Vec::new())
        };
        let mut w = Worker { o, rng, path, file, model, log: VecDeque::new(), counts: Counts::default() };
        w.counts.files = 1;
        // With lower files, each gets a share of the run; the last one takes what is left.
        let share = if o.lower && k + 1 < o.files { 500 } else { u64::MAX };
        let mut n = 0;
        while n < share && Instant::now() < end && !stop.load(Ordering::Relaxed) {
            w.step()?;
            n += 1;
        }
        w.check_all()?;
        drop(w.file);
        std::fs::remove_file(&w.path).map_err(|e| format!("{}: unlink: {e}", w.path.display()))?;
        total.add(&w.counts);
        rng = w.rng;
        k += 1;
        if !o.lower || k == o.files || Instant::now() >= end || stop.load(Ordering::Relaxed) {
            // Lower files never reached are left for the caller to see (they are unchanged).
            return Ok(total);
        }
    }
}

fn prepare(o: &Opts) -> Result<(), String> {
    std::fs::create_dir_all(&o.dir).map_err(|e| format!("{}: {e}", o.dir.display()))?;
    for t in 0..o.threads {
        for k in 0..o.files {
            let p = path_of(o, t, k);
            std::fs::write(&p, initial(o.seed, t, k, o.max_size)).map_err(|e| format!("{}: {e}", p.display()))?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("fsx: {e}");
            return ExitCode::from(2);
        }
    };
    if o.prepare {
        let mut o = o;
        o.lower = true;
        return match prepare(&o) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("fsx: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let start = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let results: Vec<Result<Counts, String>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..o.threads)
            .map(|t| {
                let (o, stop) = (&o, stop.clone());
                s.spawn(move || {
                    let r = run_thread(o, t, &stop);
                    if r.is_err() {
                        stop.store(true, Ordering::Relaxed);
                    }
                    r
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("thread panicked".into()))).collect()
    });
    let mut total = Counts::default();
    let mut failed = false;
    for r in results {
        match r {
            Ok(c) => total.add(&c),
            Err(e) => {
                eprintln!("fsx: {e}");
                failed = true;
            }
        }
    }
    let ops = total.reads + total.writes + total.truncates + total.fsyncs + total.reopens;
    println!(
        "fsx {}: {} threads, {:.0}s, {ops} ops ({} reads, {} writes, {} truncates, {} fsyncs, {} reopens), \
         {} files, {} MiB verified{}",
        o.dir.display(),
        o.threads,
        start.elapsed().as_secs_f64(),
        total.reads,
        total.writes,
        total.truncates,
        total.fsyncs,
        total.reopens,
        total.files,
        total.bytes_checked >> 20,
        if failed { ", FAILED" } else { "" }
    );
    if failed { ExitCode::FAILURE } else { ExitCode::SUCCESS }
}
