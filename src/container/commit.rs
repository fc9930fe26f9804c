//! A container's changes as a new image, as `docker commit` makes it: the container frozen
//! while its upper dir is read (if it runs and pausing is asked), what it wrote flushed (its
//! mount's page cache, then the upper dir's filesystem), the layer planned against the image's
//! layers and written with a progress line, then the new config and manifest stored. An upper
//! dir without changes commits an empty layer (a tar with no entries), as docker does, so `-c`
//! changes alone make a new image.

use std::os::fd::AsFd;
use std::path::Path;

use anyhow::Context;

use crate::image::commit::{self, Options};
use crate::image::diff;
use crate::image::digest::Digest;
use crate::image::lower::Lowers;
use crate::image::pack::Roots;
use crate::image::progress::Progress;
use crate::image::reference::Name;
use crate::image::source::Compression;
use crate::image::store::{Image, WriteLock};
use crate::sys::{fd, freeze, lock, mount};

/// The container being committed, as its record and its image give it.
pub struct Source<'a> {
    /// Its name (the progress line's label).
    pub name: &'a str,
    /// Its writable layer.
    pub upper: &'a Path,
    /// Where its rootfs is mounted while it runs.
    pub merged: &'a Path,
    /// The host pid of its PID 1, if it runs.
    pub running_pid: Option<i32>,
    /// Its image.
    pub image: &'a Image,
    /// The image's layers, top first.
    pub lowers: &'a Lowers,
}

/// How to commit.
pub struct Request<'a> {
    /// Freeze a running container while its upper dir is read.
    pub pause: bool,
    /// Compression of the new layer.
    pub compression: Compression,
    /// Where the layer's progress line goes.
    pub progress: Progress,
    /// What the new image says about itself.
    pub options: Options,
    /// Its name (none: untagged).
    pub name: Option<&'a Name>,
}

/// Commits `c` into the store `lock` holds; returns the new image's id.
pub fn commit(lock: &WriteLock<'_>, c: &Source<'_>, req: &Request<'_>) -> anyhow::Result<Digest> {
    let frozen = match c.running_pid.filter(|_| req.pause) {
        Some(pid) => Some(freeze::freeze(pid).with_context(|| format!("pausing container {}", c.name))?),
        None => None,
    };
    if let Some(f) = &frozen {
        log::debug!("container {} paused ({})", c.name, f.describe());
    }
    let layer = write_layer(lock, c, req)?;
    drop(frozen);
    Ok(commit::finish_image(lock, c.image, &layer, &req.options, req.name)?)
}

/// Syncs the container's upper dir, plans the layer and writes it, with a progress line.
fn write_layer(lock: &WriteLock<'_>, c: &Source<'_>, req: &Request<'_>) -> anyhow::Result<commit::Layer> {
    let upper = fd::open_user_dir(c.upper).with_context(|| format!("opening {}", c.upper.display()))?;
    sync(c.merged, c.upper);
    let plan = diff::plan(c.upper, c.lowers)?;
    let roots = Roots { upper: upper.as_fd(), lowers: c.lowers };
    let bar = req.progress.task(c.name, plan.bytes, "Committing");
    let layer = commit::write_layer(lock, &plan, &roots, req.compression, &mut |n| bar.inc(n));
    match &layer {
        Ok(l) => bar.done(&format!("Committed layer {}", l.blob.digest.short())),
        Err(_) => bar.failed(),
    }
    Ok(layer?)
}

/// Flushes what the container wrote: the mount's page cache (if it is mounted), then the upper
/// dir's filesystem.
fn sync(merged: &Path, upper: &Path) {
    let dirs = if mount::is_mount_point(merged) { vec![merged, upper] } else { vec![upper] };
    for dir in dirs {
        let synced = std::fs::File::open(dir)
            .map_err(|e| crate::sys::errno_of(&e))
            .and_then(|d| lock::sync_filesystem(d.as_fd()));
        if let Err(e) = synced {
            log::warn!("syncing {}: {e}", dir.display());
        }
    }
}
