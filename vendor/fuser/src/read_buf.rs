use std::io;
use std::ptr::NonNull;

use crate::session::MAX_WRITE_SIZE;

/// Size of the buffer for reading a request from the kernel. Since the kernel may send
/// up to `MAX_WRITE_SIZE` bytes in a write request, we use that value plus some extra space.
const BUFFER_SIZE: usize = MAX_WRITE_SIZE + 4096;

/// The buffer a session reads requests from the kernel into: an anonymous mapping of its own,
/// page aligned (so aligned for `fuse_in_header`), whose pages are only made as requests
/// reach them.
///
/// It is mapped rather than taken from the heap on purpose. glibc's `malloc` serves a 16 MiB
/// block by `mmap`, and freeing such a block (the handshake's buffer, freed once the session
/// starts) makes it raise its thresholds for good: every later block under 16 MiB comes from
/// the heap, and the heap is trimmed only when 32 MiB at its top are free. A long-lived
/// daemon's resident memory then only grows, by whatever its threads once held at a time.
/// A mapping of its own leaves the allocator's thresholds where they were.
#[derive(Debug)]
pub(crate) struct FuseReadBuf {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the buffer owns its mapping, as a `Vec<u8>` owns its memory.
unsafe impl Send for FuseReadBuf {}

impl FuseReadBuf {
    /// Maps a new buffer of the default size.
    pub(crate) fn new() -> io::Result<Self> {
        // SAFETY: a fresh private anonymous mapping, aliasing nothing.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                BUFFER_SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr =
            NonNull::new(ptr.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Self {
            ptr,
            len: BUFFER_SIZE,
        })
    }

    /// Returns the whole buffer (page aligned, so aligned for `fuse_in_header`).
    pub(crate) fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: the mapping is `len` bytes, readable and writable, owned by `self`, and
        // zero-filled when made.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for FuseReadBuf {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `new`, which nothing borrows any more.
        unsafe {
            libc::munmap(self.ptr.as_ptr().cast(), self.len);
        }
    }
}
