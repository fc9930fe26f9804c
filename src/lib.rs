//! Strata: a union filesystem in userspace with kernel-overlayfs semantics, and an image tool
//! built around it.
//!
//! - [`sys`]: the only place with raw syscalls (fd-relative layer access, xattrs, data copies).
//! - [`fs`]: the union filesystem core and its FUSE adapter.
//! - [`image`]: the image store (import, unpack, names) behind `strata load`, `images`, ...
//! - [`registry`]: OCI distribution registries: references, credentials, pull, push.
//! - [`explain`]: where each path of an image or container comes from, and what each layer did.
//! - [`container`]: containers (`strata run`, `ps`, `exec`, `stop`, `start`, `rm`, `logs`).
//! - [`build`]: `strata build`: Dockerfiles parsed, expanded and built into images.
//! - [`cli`]: the `strata` command line.

pub mod build;
pub mod cli;
pub mod container;
pub mod explain;
pub mod fs;
pub mod image;
pub mod registry;
pub mod sys;
