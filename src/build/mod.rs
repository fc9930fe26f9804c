//! `strata build`: images from a Dockerfile, layer by layer, with a cache.
//!
//! - [`parser`] and [`args`]: the Dockerfile as BuildKit parses it (directives, continuations,
//!   heredocs, JSON and shell forms).
//! - [`shell`]: word expansion (`$VAR`, `${VAR:-x}`, quotes, escapes).
//! - [`remote`]: the files `ADD URL` fetches.
//! - [`base`]: the image FROM names, from the store or pulled from its registry.
pub mod args;
pub mod base;
pub mod cache;
pub mod config;
pub mod context;
pub mod dockerignore;
pub mod executor;
pub mod files;
pub mod merged;
pub mod parser;
pub mod remote;
pub mod shell;
pub mod sums;
