//! `strata commit [OPTIONS] CONTAINER [REPO[:TAG]]`: a container's changes as a new image, as
//! `docker commit` makes it; prints the new image id.
//!
//! A running container is frozen while its upper dir is read (`--pause`, on by default), and
//! its upper dir synced first. An upper dir without changes commits an empty layer (a tar with
//! no entries), as docker does, so `-c` changes alone make a new image.

use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;

use super::container_ref::{self, Opened};
use super::store_root::open_store;
use crate::image::commit::{self, Options};
use crate::image::diff;
use crate::image::pack::Roots;
use crate::image::progress::{Progress, ProgressMode};
use crate::image::reference::Name;
use crate::image::source::Compression;
use crate::sys::{fd, freeze, lock, mount};

/// Arguments of `strata commit`.
#[derive(clap::Args, Debug)]
pub struct CommitArgs {
    /// Author of the new image ("Name <email>").
    #[arg(short = 'a', long)]
    author: Option<String>,
    /// Commit message (the history entry's comment).
    #[arg(short = 'm', long)]
    message: Option<String>,
    /// Apply a Dockerfile instruction to the image config: CMD, ENTRYPOINT, ENV, WORKDIR,
    /// EXPOSE, LABEL, USER, VOLUME (repeatable).
    #[arg(short = 'c', long = "change", value_name = "INSTRUCTION")]
    changes: Vec<String>,
    /// Pause the container while committing (`--pause=false` to leave it running).
    #[arg(short = 'p', long, default_value_t = true, action = clap::ArgAction::Set, num_args = 0..=1,
          default_missing_value = "true", require_equals = true)]
    pause: bool,
    /// Compression of the new layer.
    #[arg(long, value_enum, default_value_t)]
    compression: Compression,
    /// Progress of the layer being written: live on a terminal (auto), final line (plain), none.
    #[arg(long, value_enum, default_value_t)]
    progress: ProgressMode,
    /// The container: its name, id, or a unique prefix of its id.
    #[arg(value_name = "CONTAINER")]
    container: String,
    /// Name for the new image (none: untagged).
    #[arg(value_name = "REPO[:TAG]")]
    name: Option<String>,
}

/// Commits, prints the new image id.
pub fn run(a: CommitArgs, root: &Path) -> anyhow::Result<ExitCode> {
    let name = a.name.as_deref().map(Name::parse).transpose()?;
    let store = open_store(root)?;
    let store_lock = store.write()?;
    let c = container_ref::open(&store, &a.container)?;
    let frozen = match c.record.running_pid().filter(|_| a.pause) {
        Some(pid) => Some(freeze::freeze(pid).with_context(|| format!("pausing container {}", c.record.name))?),
        None => None,
    };
    if let Some(f) = &frozen {
        log::debug!("container {} paused ({})", c.record.name, f.describe());
    }
    let layer = write_layer(&store_lock, &c, &a)?;
    drop(frozen);
    let opts = Options {
        author: a.author.clone(),
        message: a.message.clone(),
        changes: a.changes.clone(),
        created_by: created_by(&c.record.command),
        config: None,
        compression: a.compression,
    };
    let id = commit::finish_image(&store_lock, &c.image, &layer, &opts, name.as_ref())?;
    println!("{id}");
    Ok(ExitCode::SUCCESS)
}

/// Syncs the container's upper dir, plans the layer and writes it, with a progress line.
fn write_layer(
    store_lock: &crate::image::store::WriteLock<'_>,
    c: &Opened,
    a: &CommitArgs,
) -> anyhow::Result<commit::Layer> {
    let upper_dir = c.record.upper();
    let upper = fd::open_user_dir(&upper_dir).with_context(|| format!("opening {}", upper_dir.display()))?;
    sync(&c.record.merged(), &upper_dir);
    let plan = diff::plan(&upper_dir, &c.lowers)?;
    let roots = Roots { upper: upper.as_fd(), lowers: &c.lowers };
    let bar = Progress::on_stderr(a.progress).task(&c.record.name, plan.bytes, "Committing");
    let layer = commit::write_layer(store_lock, &plan, &roots, a.compression, &mut |n| bar.inc(n));
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

/// The history's `created_by`: the container's command, as docker shows it.
fn created_by(command: &[String]) -> String {
    if command.is_empty() { "strata commit".into() } else { command.join(" ") }
}
