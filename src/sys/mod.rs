//! Every system call Strata makes on layer content goes through here.
//!
//! Layer content is reached only through file descriptors: a path inside a layer is opened with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to the layer's root fd, and a single
//! name is then operated on relative to its parent fd (`*at` calls, `O_NOFOLLOW`). Nothing here
//! follows a symlink stored in a layer. This module (with `mount`) holds the crate's `unsafe`.

pub mod copy;
pub mod creds;
pub mod daemon;
pub mod fd;
pub mod fdpass;
pub mod freeze;
pub mod heap;
pub mod lock;
pub mod mount;
pub mod mountfd;
pub mod ns;
pub mod pty;
pub mod spawn;
pub mod xattr;

pub use rustix::io::Errno;

/// Result of a syscall wrapper: the errno is kept as is, so the FUSE layer can answer with it.
pub type Result<T> = std::result::Result<T, Errno>;

/// Converts a `std::io::Error` into an errno (`EIO` when it carries none).
pub fn errno_of(e: &std::io::Error) -> Errno {
    Errno::from_io_error(e).unwrap_or(Errno::IO)
}
