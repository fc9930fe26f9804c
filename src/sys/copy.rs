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

/// Errors after which a cheaper strategy may still work.
fn unsupported(e: Errno) -> bool {
    matches!(e, Errno::OPNOTSUPP | Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::BADF | Errno::PERM | Errno::NOTTY)
}

/// Copies `len` bytes of `src` into the empty file `dst`, trying strategies from `first` down.
///
/// `dst` ends up exactly `len` bytes long; holes of `src` stay holes when the strategy allows it.
/// `between` is called after each chunk (tests inject failures through it).
pub fn copy_data(
    src: &File,
    dst: &File,
    len: u64,
    first: Strategy,
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
    while pos < len {
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
        copy_range(src, dst, start, end, &mut strategy, between)?;
        pos = end;
    }
    rustix::fs::ftruncate(dst, len)?;
    Ok(strategy)
}

fn copy_range(
    src: &File,
    dst: &File,
    mut start: u64,
    end: u64,
    strategy: &mut Strategy,
    between: &mut dyn FnMut() -> Result<()>,
) -> Result<()> {
    const CHUNK: u64 = 8 << 20;
    let mut buf = Vec::new();
    while start < end {
        let want = (end - start).min(CHUNK) as usize;
        if *strategy == Strategy::CopyFileRange {
            let (mut off_in, mut off_out) = (start, start);
            match rustix::fs::copy_file_range(src, Some(&mut off_in), dst, Some(&mut off_out), want) {
                Ok(0) => return Ok(()), // source shrank under us
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
            return Ok(());
        }
        dst.write_all_at(&buf[..n], start).map_err(|e| super::errno_of(&e))?;
        start += n as u64;
        between()?;
    }
    Ok(())
}
