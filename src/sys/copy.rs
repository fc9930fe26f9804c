//! Copying a file's data: reflink (`FICLONE`), else `copy_file_range`, else a read/write loop,
//! skipping holes (`SEEK_DATA`/`SEEK_HOLE`) in the last two.

use std::fs::File;
use std::os::unix::fs::FileExt;

use rustix::fs::SeekFrom;

use super::{Errno, Result};

/// How a file's data was (or must be) copied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// `ioctl(FICLONE)`: the destination shares the source's extents (O(1)).
    Reflink,
    /// `copy_file_range`: the kernel copies, possibly offloaded.
    CopyFileRange,
    /// `pread`/`pwrite` through a buffer.
    ReadWrite,
}

impl Strategy {
    /// The name used in output and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Reflink => "reflink",
            Strategy::CopyFileRange => "copy_file_range",
            Strategy::ReadWrite => "read/write",
        }
    }
}

/// Whether a file of `size` bytes occupying `blocks` 512-byte blocks may have holes.
pub fn may_be_sparse(size: i64, blocks: i64) -> bool {
    blocks.saturating_mul(512) < size
}

/// Errors after which a cheaper strategy may still work.
fn unsupported(e: Errno) -> bool {
    matches!(e, Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::BADF | Errno::PERM | Errno::NOTTY)
}

/// Copies `len` bytes of `src` into the empty file `dst`, trying strategies from `first` down.
///
/// `dst` ends up exactly `len` bytes long; holes of `src` stay holes when the strategy allows it
/// (`sparse`: the source may have holes — a file whose blocks cover its size has none, and is
/// copied without looking for them). `between` is called after each chunk (tests inject
/// failures through it).
pub fn copy_data(
    src: &File,
    dst: &File,
    len: u64,
    first: Strategy,
    sparse: bool,
    between: &mut dyn FnMut() -> Result<()>,
) -> Result<Strategy> {
    if first == Strategy::Reflink && len > 0 {
        match rustix::fs::ioctl_ficlone(dst, src) {
            Ok(()) => return Ok(Strategy::Reflink),
            Err(e) if unsupported(e) => {}
            Err(e) => return Err(e),
        }
    }
    let mut strategy = if first == Strategy::ReadWrite { Strategy::ReadWrite } else { Strategy::CopyFileRange };
    let mut pos = 0u64;
    if !sparse {
        pos = copy_range(src, dst, 0, len, &mut strategy, between)?;
    }
    while sparse && pos < len {
        let start = match rustix::fs::seek(src, SeekFrom::Data(pos)) {
            Ok(p) => p,
            Err(Errno::NXIO) => break,                        // only a hole is left
            Err(Errno::INVAL) | Err(Errno::OPNOTSUPP) => pos, // no hole support: copy all
            Err(e) => return Err(e),
        };
        if start >= len {
            break;
        }
        let end = match rustix::fs::seek(src, SeekFrom::Hole(start)) {
            Ok(p) => p.min(len),
            Err(_) => len,
        };
        pos = copy_range(src, dst, start, end, &mut strategy, between)?;
        if pos < end {
            break; // the source shrank under us
        }
    }
    // A hole at the end (or a source that shrank) leaves the copy short: extend it.
    if pos < len {
        rustix::fs::ftruncate(dst, len)?;
    }
    Ok(strategy)
}

/// Copies `start..end`; returns where it stopped (before `end` only if the source ended).
fn copy_range(
    src: &File,
    dst: &File,
    mut start: u64,
    end: u64,
    strategy: &mut Strategy,
    between: &mut dyn FnMut() -> Result<()>,
) -> Result<u64> {
    const CHUNK: u64 = 8 << 20;
    let mut buf = Vec::new();
    while start < end {
        let want = (end - start).min(CHUNK) as usize;
        if *strategy == Strategy::CopyFileRange {
            let (mut off_in, mut off_out) = (start, start);
            match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
                Ok(0) => return Ok(start), // source shrank under us
                Ok(n) => {
                    start += n as u64;
                    between()?;
                    continue;
                }
                Err(e) if unsupported(e) => *strategy = Strategy::ReadWrite,
                Err(e) => return Err(e),
            }
        }
        buf.resize(want.min(1 << 20), 0);
        let n = src.read_at(&mut buf, start).map_err(|e| super::errno_of(&e))?;
        if n == 0 {
            return Ok(start);
        }
        dst.write_all_at(&buf[..n], start).map_err(|e| super::errno_of(&e))?;
        start += n as u64;
        between()?;
    }
    Ok(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    fn copy(src: &File, strategy: Strategy) -> (Vec<u8>, u64) {
        let len = src.metadata().unwrap().len();
        let meta = src.metadata().unwrap();
        let sparse = may_be_sparse(meta.size() as i64, meta.blocks() as i64);
        let dst = tempfile::tempfile().unwrap();
        copy_data(src, &dst, len, strategy, sparse, &mut || Ok(())).unwrap();
        let mut out = vec![0u8; len as usize];
        dst.read_exact_at(&mut out, 0).unwrap();
        (out, dst.metadata().unwrap().blocks())
    }

    #[test]
    fn holes_stay_holes_and_dense_files_copy_whole() {
        let sparse = tempfile::tempfile().unwrap();
        sparse.write_all_at(b"head", 0).unwrap();
        sparse.write_all_at(b"tail", 64 << 20).unwrap();
        sparse.set_len(128 << 20).unwrap(); // a hole at the end too
        for s in [Strategy::CopyFileRange, Strategy::ReadWrite] {
            let (data, blocks) = copy(&sparse, s);
            assert_eq!(data.len(), 128 << 20);
            assert_eq!((&data[..4], &data[64 << 20..(64 << 20) + 4]), (&b"head"[..], &b"tail"[..]));
            assert!(blocks < 1024, "{s:?}: holes kept ({blocks} blocks)");
        }
        let dense = tempfile::tempfile().unwrap();
        let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        dense.write_all_at(&content, 0).unwrap();
        for s in [Strategy::Reflink, Strategy::CopyFileRange, Strategy::ReadWrite] {
            assert_eq!(copy(&dense, s).0, content, "{s:?}");
        }
        let empty = tempfile::tempfile().unwrap();
        assert!(copy(&empty, Strategy::CopyFileRange).0.is_empty());
    }
}
