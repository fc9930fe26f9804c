//! Strata explains itself: where each path of an image or container comes from, what every layer
//! changed, and pictures of the stack (issue 7, "Explain").
//!
//! The analysis reads Strata's own store read-only and follows SEMANTICS.md exactly:
//! - [`stack`]: the layers of an image (and a container's upper dir) as in-memory trees, with
//!   every whiteout and opaque form read by [`crate::fs::whiteout`].
//! - [`merge`]: the merged view, built by applying layers bottom-up; every entry keeps the
//!   versions it shadows, every deleted name the whiteout that hides it.
//! - [`find`]: what the view says about one path (shown, deleted, hidden by an ancestor).
//! - [`stats`]: per layer: added / modified / deleted / opaque entries, size, wasted bytes;
//!   and the image's efficiency.
//! - [`copyup`]: why an entry of a container's upper layer is there (copy-up, new, renamed).
//! - [`target`]: an image or container named on the command line, opened as a stack.
//! - [`container`]: a tiny reader of container records (`ROOT/containers/ID/`).
//! - [`render`]: plain-text explanations, annotated trees, and SVG/HTML pictures.

pub mod container;
pub mod copyup;
pub mod find;
pub mod merge;
pub mod render;
pub mod stack;
pub mod stats;
pub mod target;

use std::path::PathBuf;

use crate::image::store::StoreError;
use crate::sys::Errno;

/// What went wrong while explaining; each names the path, layer or container at fault.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    /// A layer dir could not be read.
    #[error("layer {layer}: {path}: {op}: {errno}")]
    Layer {
        /// The layer (its label: `1`..`N` bottom-up, or `upper`).
        layer: String,
        /// The path inside the layer.
        path: PathBuf,
        /// What was being done.
        op: &'static str,
        /// The error.
        errno: Errno,
    },
    /// The image store could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A layer of the image is not unpacked in the store.
    #[error("image {image}: layer {diff_id} is not in the store")]
    MissingLayer {
        /// The image as named.
        image: String,
        /// The layer's diff_id.
        diff_id: String,
    },
    /// A container record could not be read.
    #[error("container {path}: {reason}")]
    Container {
        /// The record's file or dir.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A name matches several containers.
    #[error("container reference {0:?} is ambiguous: it matches several containers")]
    AmbiguousContainer(String),
    /// No layer of that label.
    #[error("no layer {0:?} (give a number from the LAYER column, or `upper`)")]
    NoSuchLayer(String),
}

/// Result of explain operations.
pub type Result<T> = std::result::Result<T, ExplainError>;
