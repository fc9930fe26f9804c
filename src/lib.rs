//! Strata: a union filesystem in userspace with kernel-overlayfs semantics, and an image tool
//! built around it.
//!
//! - [`sys`]: the only place with raw syscalls (fd-relative layer access, xattrs, data copies).
//! - [`fs`]: the union filesystem core and its FUSE adapter.
//! - [`cli`]: the `strata` command line.

pub mod cli;
pub mod fs;
pub mod sys;
