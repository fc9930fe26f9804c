//! The heap policy of a process that serves a mount for a long time (`strata mount`'s daemon, a
//! container's monitor): glibc's `malloc` thresholds fixed at their defaults.
//!
//! glibc moves two thresholds as a process runs: when a block it had mapped on its own is freed,
//! the mapping threshold rises to that block's size (up to 32 MiB) and the trim threshold to
//! twice that, for the rest of the process's life. One freed 16 MiB block (the size of a FUSE
//! request buffer) is enough: from then on every block under 16 MiB is carved from the heap
//! arenas, and an arena gives memory back only once 32 MiB at its top are free. A daemon's
//! resident memory then follows the most its threads ever held at once plus the fragmentation
//! around its long-lived nodes, and never comes down. With the thresholds fixed, big transient
//! blocks (directory listings, read replies) get mappings of their own, returned when freed,
//! and an arena is trimmed once 128 KiB at its top are free.

/// Blocks of this size or more get a mapping of their own (glibc's default).
pub const MMAP_THRESHOLD: usize = 128 * 1024;

/// Free memory at the top of an arena beyond this is given back (glibc's default).
pub const TRIM_THRESHOLD: usize = 128 * 1024;

/// Fixes `malloc`'s thresholds for the whole process (nothing where the C library is not glibc).
pub fn keep_trimmed() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallopt` only sets allocator parameters, under the allocator's own locks.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD as libc::c_int);
        libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD as libc::c_int);
    }
}

/// Gives back to the kernel the free memory of every arena, the pages between blocks in use
/// included (the fragmentation a long-lived daemon's nodes leave); returns whether any was
/// (nothing where the C library is not glibc). Takes each arena's lock for a moment: call it
/// from a thread of its own, now and then.
pub fn trim() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `malloc_trim` only walks the allocator's free lists under its own locks.
    return unsafe { libc::malloc_trim(0) } == 1;
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// Bytes of the blocks `malloc` has mapped on their own and not yet freed (glibc only), for
/// tests and memory figures.
pub fn mapped_bytes() -> Option<usize> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: `mallinfo2` only reads the allocator's counters.
    return Some(unsafe { libc::mallinfo2() }.hblkhd);
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    None
}
